// The `iidm` command line: parsing lives here, at the edge; the library never sees flags.
#include <functional>
#include <iostream>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "core/runtime.h"

int main(int argc, char** argv) {
  CLI::App app{"iidm: diffusion-based semantic image synthesis (IIDM, SDM, sparse layouts)"};
  app.require_subcommand(1);
  // Global options may also follow the sub-command: `iidm check DIR --threads 1`.
  app.fallthrough();
  iidm::cli::CommonOptions common;
  app.add_option("--threads", common.threads, "CPU threads (default: $IIDM_THREADS, else the number of cores)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--device", common.device, "Device: cpu, cuda, cuda:N")->capture_default_str();

  const std::vector<std::pair<std::string, std::function<int()>>> commands{
      {"check", iidm::cli::add_check_command(app, common)},
      {"generate", iidm::cli::add_generate_command(app, common)},
      {"batch", iidm::cli::add_batch_command(app, common)},
      {"average", iidm::cli::add_average_command(app, common)},
      {"make-data", iidm::cli::add_make_data_command(app, common)},
      {"train-autoencoder", iidm::cli::add_train_autoencoder_command(app, common)},
      {"train-unet", iidm::cli::add_train_unet_command(app, common)},
      {"distill", iidm::cli::add_distill_command(app, common)},
      {"train-segmenter", iidm::cli::add_train_segmenter_command(app, common)},
      {"evaluate", iidm::cli::add_evaluate_command(app, common)},
      {"score", iidm::cli::add_score_command(app, common)},
      {"ablate", iidm::cli::add_ablate_command(app, common)},
      {"bench", iidm::cli::add_bench_command(app, common)},
      {"serve", iidm::cli::add_serve_command(app, common)},
  };

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    iidm::configure_threads(common.threads);
    for (const auto& [name, run] : commands)
      if (app.got_subcommand(name)) return run();
  } catch (const iidm::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << "\n";
    return 1;
  }
  return 1;
}

// The `iidm` command line: parsing lives here, at the edge; the library never sees flags.
#include <iostream>

#include "cli/commands.h"
#include "core/error.h"
#include "core/runtime.h"

int main(int argc, char** argv) {
  CLI::App app{"iidm: diffusion-based semantic image synthesis (IIDM, SDM, sparse layouts)"};
  app.require_subcommand(1);
  iidm::cli::CommonOptions common;
  app.add_option("--threads", common.threads, "CPU threads (default: $IIDM_THREADS, else the number of cores)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--device", common.device, "Device: cpu, cuda, cuda:N")->capture_default_str();

  auto check = iidm::cli::add_check_command(app, common);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    iidm::configure_threads(common.threads);
    if (app.got_subcommand("check")) return check();
  } catch (const iidm::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << "\n";
    return 1;
  }
  return 1;
}

// `iidm ablate`: runs every variant of a variants file (a name plus the generation flags it
// changes) over a validation set with the same seeds, scores each with the code of `iidm score`,
// and writes OUT/results.{json,csv,md} and OUT/grid.png; tools/ablate.sh adds the charts and the
// HTML report. A rerun makes only missing images (a killed run loses nothing finished).
#include <algorithm>
#include <optional>

#include "cli/generation_options.h"
#include "cli/metrics_options.h"
#include "core/process_stats.h"
#include "core/progress.h"
#include "core/runtime.h"
#include "pipeline/ablation.h"

namespace iidm::cli {

namespace {
// The base options with one variant's flags applied, parsed by the same bindings as `generate`.
GenerationOptions apply_flags(const GenerationOptions& base, const std::string& name, std::vector<std::string> flags,
                              const std::string& out_dir) {
  for (auto& f : flags)
    for (size_t at = f.find("{out}"); at != std::string::npos; at = f.find("{out}")) f.replace(at, 5, out_dir);
  GenerationOptions options = base;
  CLI::App parser("variant " + name);
  options.add_to(&parser);
  for (auto* option : parser.get_options()) option->required(false);  // the base already has them
  std::reverse(flags.begin(), flags.end());                           // CLI11 parses a reversed vector
  try {
    parser.parse(flags);
  } catch (const CLI::ParseError& e) {
    fail("variant '{}': {}", name, e.what());
  }
  return options;
}
}  // namespace

std::function<int()> add_ablate_command(CLI::App& app, const CommonOptions& common) {
  auto* cmd = app.add_subcommand("ablate",
                                 "Run and score every variant of a variants file on a validation set; "
                                 "writes OUT/results.{json,csv,md} and OUT/grid.png");
  struct Args {
    GenerationOptions gen;
    MetricsOptions metrics;
    AblationData data;
    AblationOptions options;
    std::string variants;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--variants", a->variants, "Variants file (configs/ablation/*.json)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--data", a->data.root, "Validation set in the competition layout (imgs/ + labels/)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--out", a->options.out_dir, "Output folder")->required();
  cmd->add_option("--count", a->data.count, "Items (the first N by name; 0: all)")->capture_default_str();
  cmd->add_option("--reference-offset", a->data.reference_offset, "Item i takes item i+K's image as its reference")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--batch-size", a->options.batch_size, "Images generated together")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--grid-examples", a->options.grid_examples, "Rows of grid.png")->capture_default_str();
  cmd->add_option("--diversity-maps", a->options.diversity_maps, "Label maps sampled several times (0: none)")
      ->capture_default_str();
  cmd->add_option("--diversity-samples", a->options.diversity_samples, "Samples per such map")
      ->check(CLI::Range(2, 64))
      ->capture_default_str();
  a->gen.add_to(cmd);
  a->metrics.add_to(cmd, false);
  return [a, &common]() {
    const VariantsFile file = VariantsFile::from_file(a->variants);
    std::vector<AblationVariant> variants;
    for (const auto& [name, note, flags] : file.variants) {
      const GenerationOptions g = apply_flags(a->gen, name, flags, a->options.out_dir);
      AblationVariant v;
      v.name = name;
      v.flags = flags;
      v.files = g.files;
      v.files.validate();
      v.pipeline = g.pipeline_options(common, /*announce=*/false);
      v.stages = g.stages();
      v.seed = g.seed;
      v.description = describe(v.stages);
      if (v.files.unets.size() > 1) v.description += fmt::format(" | ensemble of {} U-Nets", v.files.unets.size());
      variants.push_back(v);
    }
    const torch::Device device = parse_device(common.device);
    auto segmenter = a->metrics.load_segmenter(device);
    auto features = a->metrics.load_features(device);
    auto lpips = a->metrics.load_lpips(device);
    a->options.score = a->metrics.score_options(a->gen.ignore_label, "");

    std::optional<ProgressBar> bar;
    AblationCallbacks callbacks;
    callbacks.on_plan = [&](int64_t total, int64_t done) {
      fmt::print(stderr, "{} variants, {} images ({} already made)\n", variants.size(), total, done);
      bar.emplace("ablation", total, done);
    };
    std::string current;
    callbacks.on_variant = [&](const std::string& name) { current = name; };
    callbacks.on_image = [&](int64_t done) { bar->update(done, current); };
    const auto results =
        run_ablation(variants, a->data, a->options, {segmenter.get(), features.get(), lpips.get()}, callbacks);
    if (bar) bar->finish();
    const std::string machine =
        fmt::format("{}, {} threads, {}", cpu_model_name(), torch::get_num_threads(),
                    precision_name(a->gen.pipeline_options(common, /*announce=*/false).precision));
    write_ablation_results(results, a->data, a->options, machine);
    fmt::print("wrote {0}/results.md, {0}/results.csv, {0}/results.json, {0}/grid.png\n", a->options.out_dir);
    bool ok = true;
    for (const auto& r : results) ok = ok && r.score.failures.empty();
    return ok ? 0 : 1;
  };
}

}  // namespace iidm::cli

// `iidm batch`: the competition layout. A folder of label PNGs + label_to_img.json (label file ->
// reference image) + the reference folder -> <label stem>.jpg for every label. Resumable (finished
// outputs are skipped; files appear atomically), shardable (every shard computes whole batches, so
// any sharding reproduces the single run byte for byte), bad items reported while the rest goes on.
#include <filesystem>

#include "cli/generation_options.h"
#include "core/progress.h"
#include "pipeline/runner.h"

namespace iidm::cli {
namespace fs = std::filesystem;

std::function<int()> add_batch_command(CLI::App& app, const CommonOptions& common) {
  auto* cmd = app.add_subcommand("batch",
                                 "Competition-style batch run: labels folder + label_to_img.json + references -> "
                                 "<label stem>.jpg, resumable and shardable");
  struct Args {
    GenerationOptions gen;
    std::string labels, json, refs, out, size = "512x384", shard, ext = "jpg";
    int batch_size = 1;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--labels", args->labels, "Folder of label PNGs")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--json", args->json, "label_to_img.json (default: inside --labels)");
  cmd->add_option("--refs", args->refs, "Folder of reference images named in the JSON (e.g. train/imgs)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--out", args->out, "Output folder")->required();
  cmd->add_option("--size", args->size, "Output WxH")->capture_default_str();
  cmd->add_option("--batch-size", args->batch_size, "Images per forward")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--shard", args->shard,
                  "Shard i/N (0-based); default from SLURM_ARRAY_TASK_ID/COUNT or RANK/WORLD_SIZE");
  cmd->add_option("--ext", args->ext, "Output format: jpg or png")->capture_default_str();
  args->gen.add_to(cmd);
  cmd->footer(
      "Outputs: OUT/<stem>.<ext>; OUT/failures[-i-of-N].tsv (name, reason); OUT/summary[-i-of-N].json.\n"
      "Exit status: 0 if every item of this shard was produced, 1 otherwise.");

  return [args, &common]() {
    const ImageSize size = parse_size(args->size);
    RunOptions options;
    options.out_dir = args->out;
    options.extension = args->ext;
    options.width = size.width;
    options.height = size.height;
    options.batch_size = args->batch_size;
    options.shard = args->shard.empty() ? Shard::from_environment() : Shard::parse(args->shard);
    options.seed = args->gen.seed;
    options.stages = args->gen.stages();
    options.validate();  // before the models load
    const std::string json = args->json.empty() ? (fs::path(args->labels) / "label_to_img.json").string() : args->json;
    const ItemListing listing = list_competition_items(args->labels, json, args->refs);

    Pipeline pipeline = Pipeline::load(args->gen.files, args->gen.pipeline_options(common));
    GenerationRunner runner(pipeline, options);
    ProgressBar bar("images", 0);
    RunCallbacks callbacks;
    callbacks.on_plan = [&](const RunPlan& plan) {
      fmt::print(stderr,
                 "shard {}/{}: {} labels, {} invalid, {} batches here, {} images to make, {} already done; {}\n",
                 options.shard.index, options.shard.count, plan.items, plan.invalid + listing.orphans.size(),
                 plan.batches, plan.to_make, plan.already_done, describe(options.stages));
      bar.reset(plan.to_make);
    };
    callbacks.on_image = [&](int64_t made, int64_t) { bar.update(made); };
    const RunSummary summary = runner.run(listing.items, listing.orphans, callbacks);
    bar.finish();
    for (const auto& f : summary.failures) fmt::print(stderr, "failed: {}: {}\n", f.name, f.reason);
    fmt::print("{} produced, {} already done, {} failed; {:.1f} s\n", summary.produced, summary.plan.already_done,
               summary.failures.size(), summary.seconds);
    return summary.ok() ? 0 : 1;
  };
}

}  // namespace iidm::cli

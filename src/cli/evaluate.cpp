// `iidm evaluate`: how well a model follows masks and references, on a labelled held-out set. It
// generates the image of every item's mask with ANOTHER item's image as the style reference (a
// GenerationRunner run into OUT/images, so a killed run resumes where it stopped), then scores the
// written images with the code of `iidm score` (mask accuracy, mIoU, style similarity, FID/KID
// against the set's own images, the competition score), and adds the segmenter's accuracy on the
// ground-truth images (its own quality: the ceiling of mask accuracy).
#include <chrono>
#include <filesystem>
#include <optional>

#include "cli/generation_options.h"
#include "cli/metrics_options.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/image.h"
#include "core/progress.h"
#include "core/runtime.h"
#include "data/dataset.h"
#include "metrics/segmentation.h"
#include "pipeline/runner.h"

namespace iidm::cli {
namespace fs = std::filesystem;
using torch::Tensor;

std::function<int()> add_evaluate_command(CLI::App& app, const CommonOptions& common) {
  auto* cmd = app.add_subcommand("evaluate",
                                 "Mask accuracy (via a segmenter) and reference colour correlation of a "
                                 "model on a labelled held-out set; writes OUT/metrics.json");
  struct Args {
    GenerationOptions gen;
    MetricsOptions metrics;
    std::string data, out;
    int count = 50, batch_size = 4, reference_offset = 1;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--data", a->data, "Held-out set in the competition layout (imgs/ + labels/)")->required();
  cmd->add_option("--out", a->out, "Output folder (images/ and metrics.json)")->required();
  cmd->add_option("--count", a->count, "Number of items (the first N by name)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--batch-size", a->batch_size, "Images generated together")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--reference-offset", a->reference_offset, "Item i takes item i+K's image as its reference")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  a->gen.add_to(cmd);
  a->metrics.add_to(cmd, false);
  return [a, &common]() {
    const auto start_time = std::chrono::steady_clock::now();
    auto pairs = list_landscape_pairs(a->data);
    if (static_cast<int>(pairs.size()) < a->count)
      fail("{}: has {} items, --count asks for {}", a->data, pairs.size(), a->count);
    pairs.resize(static_cast<size_t>(a->count));
    const int N = a->count;
    if (N < 2) fail("evaluate: needs at least 2 items (references come from other items)");
    const int offset = a->reference_offset % N;
    if (offset == 0) fail("--reference-offset must not be a multiple of --count");

    const std::vector<Stage> stages = a->gen.stages();
    const PipelineOptions options = a->gen.pipeline_options(common);
    auto segmenter = a->metrics.load_segmenter(options.device);
    auto features = a->metrics.load_features(options.device);
    const int num_classes = segmenter->num_classes() > 0 ? segmenter->num_classes() : 256;
    std::vector<Tensor> images, labels;
    for (const auto& p : pairs) {
      Sample s = load_sample(p, 0, 0, false, num_classes, a->gen.ignore_label);
      if (!images.empty() && s.image.sizes() != images[0].sizes())
        fail("{}: {}x{}, but the set's first image is {}x{} (evaluate needs one size)", p.image, s.image.size(2),
             s.image.size(1), images[0].size(2), images[0].size(1));
      images.push_back(s.image);
      labels.push_back(s.labels);
    }

    // Generation is a run of the library's runner into OUT/images: a rerun makes only what is missing.
    const fs::path image_dir = fs::path(a->out) / "images";
    RunOptions run;
    run.out_dir = image_dir.string();
    run.extension = "png";
    run.width = static_cast<int>(images[0].size(2));
    run.height = static_cast<int>(images[0].size(1));
    run.batch_size = a->batch_size;
    run.seed = a->gen.seed;
    run.stages = stages;
    std::vector<RunItem> items;
    for (int i = 0; i < N; ++i) items.push_back({pairs[i].stem, pairs[i].labels, pairs[(i + offset) % N].image, ""});
    Pipeline pipeline = Pipeline::load(a->gen.files, options);
    GenerationRunner runner(pipeline, run);
    std::optional<ProgressBar> bar;  // only when there is something to make
    RunCallbacks callbacks;
    callbacks.on_plan = [&](const RunPlan& plan) {
      if (!plan.to_make) return;
      fmt::print(stderr, "generating {} of {} images: {}\n", plan.to_make, N, describe(stages));
      bar.emplace("generating", plan.to_make);
    };
    callbacks.on_image = [&](int64_t made, int64_t) { bar->update(made); };
    const RunSummary generation = runner.run(items, {}, callbacks);
    if (bar) bar->finish();
    if (!generation.ok())
      fail("evaluate: {} of {} images could not be generated (first: {}: {}); see {}", generation.failures.size(), N,
           generation.failures[0].name, generation.failures[0].reason, generation.failures_path);
    // The written images (8-bit, exactly as a resumed run reads them back), scored as `score` does.
    std::vector<ScoreItem> score_items;
    for (int i = 0; i < N; ++i)
      score_items.push_back(
          {pairs[i].stem, runner.output_path(pairs[i].stem), pairs[i].labels, pairs[(i + offset) % N].image});
    ScoreOptions score_options =
        a->metrics.score_options(a->gen.ignore_label, (fs::path(a->out) / "real-stats.safetensors").string());
    score_options.real_dir = (fs::path(a->data) / "imgs").string();
    const ScoreReport report = score_images(score_items, *segmenter, features.get(), score_options);
    ConfusionMatrix ground_truth(num_classes, a->gen.ignore_label);
    for (int i = 0; i < N; ++i) ground_truth.add(segmenter->predict(images[i].unsqueeze(0))[0], labels[i]);

    Json result = report.to_json();
    result["summary"]["items"] = N;
    result["summary"]["segmenter_accuracy_on_ground_truth"] = ground_truth.pixel_accuracy();
    result["summary"]["stages"] = describe(stages);
    write_file_atomic((fs::path(a->out) / "metrics.json").string(), result.dump(1) + "\n");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
    fmt::print("{} held-out items ({:.0f} s); segmenter pixel accuracy on the ground truth {:.4f}\n", N, seconds,
               ground_truth.pixel_accuracy());
    print_score_summary(report);
    return report.failures.empty() ? 0 : 1;
  };
}

}  // namespace iidm::cli

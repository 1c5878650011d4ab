// `iidm evaluate`: how well a model follows masks and references, on a labelled held-out set.
// For every item: the segmenter's pixel accuracy on the ground-truth image (the segmenter's own
// quality), the image generated from the item's mask with ANOTHER item's image as the style
// reference, its mask accuracy (segment it, compare with the mask) and its colour-histogram
// correlation to the given reference versus an unrelated one. Generated images are kept in
// OUT/images (a GenerationRunner run, with its failures and summary files), so a killed run
// resumes where it stopped.
#include <chrono>
#include <filesystem>
#include <optional>

#include "cli/generation_options.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/image.h"
#include "core/progress.h"
#include "core/runtime.h"
#include "core/seed.h"
#include "data/dataset.h"
#include "metrics/histogram.h"
#include "pipeline/runner.h"
#include "segmentation/segmenter.h"

namespace iidm::cli {
namespace fs = std::filesystem;
using torch::Tensor;

std::function<int()> add_evaluate_command(CLI::App& app, const CommonOptions& common) {
  auto* cmd = app.add_subcommand("evaluate",
                                 "Mask accuracy (via a segmenter) and reference colour correlation of a "
                                 "model on a labelled held-out set; writes OUT/metrics.json");
  struct Args {
    GenerationOptions gen;
    std::string data, segmenter, segmenter_config, out;
    int count = 50, batch_size = 4, reference_offset = 1;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--data", a->data, "Held-out set in the competition layout (imgs/ + labels/)")->required();
  cmd->add_option("--segmenter", a->segmenter, "Segmenter weights")->required()->check(CLI::ExistingFile);
  cmd->add_option("--segmenter-config", a->segmenter_config, "Segmenter config")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", a->out, "Output folder (images/ and metrics.json)")->required();
  cmd->add_option("--count", a->count, "Number of items (the first N by name)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--batch-size", a->batch_size, "Images generated together")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--reference-offset", a->reference_offset,
                  "Item i takes item i+K's image as its reference; the unrelated one is item i+N/2")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  a->gen.add_to(cmd);
  return [a, &common]() {
    const auto start_time = std::chrono::steady_clock::now();
    auto pairs = list_landscape_pairs(a->data);
    if (static_cast<int>(pairs.size()) < a->count)
      fail("{}: has {} items, --count asks for {}", a->data, pairs.size(), a->count);
    pairs.resize(static_cast<size_t>(a->count));
    const int N = a->count;
    if (N < 3) fail("evaluate: needs at least 3 items (reference and unrelated reference come from other items)");
    const int offset = a->reference_offset % N, unrelated_offset = N / 2 == offset ? N / 2 + 1 : N / 2;
    if (offset == 0) fail("--reference-offset must not be a multiple of --count");

    const std::vector<Stage> stages = a->gen.stages();
    const PipelineOptions options = a->gen.pipeline_options(common);
    Segmenter segmenter = load_segmenter(a->segmenter_config, a->segmenter, options.device);
    const int num_classes = segmenter->config().num_classes;
    std::vector<Tensor> images, labels;
    for (const auto& p : pairs) {
      Sample s = load_sample(p, 0, 0, false, num_classes, a->gen.ignore_label);
      if (!images.empty() && s.image.sizes() != images[0].sizes())
        fail("{}: {}x{}, but the set's first image is {}x{} (evaluate needs one size)", p.image, s.image.size(2),
             s.image.size(1), images[0].size(2), images[0].size(1));
      images.push_back(s.image);
      labels.push_back(s.labels);
    }
    auto segment = [&](const Tensor& image) {
      return segmenter->predict(image.unsqueeze(0).to(options.device))[0].cpu();
    };

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
    // Score what was written (8-bit), exactly as a resumed run reads it back.
    std::vector<Tensor> generated;
    for (int i = 0; i < N; ++i) generated.push_back(read_image(runner.output_path(pairs[i].stem))[0]);

    Json per_item = Json::array();
    double seg_sum = 0, mask_sum = 0, given_sum = 0, unrelated_sum = 0;
    int closer = 0;
    for (int i = 0; i < N; ++i) {
      const double seg_acc = pixel_accuracy(segment(images[i]), labels[i], a->gen.ignore_label);
      const double mask_acc = pixel_accuracy(segment(generated[i]), labels[i], a->gen.ignore_label);
      const double given = color_histogram_correlation(generated[i], images[(i + offset) % N]);
      const double unrelated = color_histogram_correlation(generated[i], images[(i + unrelated_offset) % N]);
      seg_sum += seg_acc, mask_sum += mask_acc, given_sum += given, unrelated_sum += unrelated;
      closer += given > unrelated;
      per_item.push_back({{"name", pairs[i].stem},
                          {"reference", pairs[(i + offset) % N].stem},
                          {"unrelated", pairs[(i + unrelated_offset) % N].stem},
                          {"segmenter_accuracy", seg_acc},
                          {"mask_accuracy", mask_acc},
                          {"hist_corr_reference", given},
                          {"hist_corr_unrelated", unrelated}});
    }
    Json summary{{"items", N},
                 {"segmenter_accuracy_on_ground_truth", seg_sum / N},
                 {"mask_accuracy", mask_sum / N},
                 {"hist_corr_reference", given_sum / N},
                 {"hist_corr_unrelated", unrelated_sum / N},
                 {"share_closer_to_reference", static_cast<double>(closer) / N},
                 {"stages", describe(stages)}};
    write_file_atomic((fs::path(a->out) / "metrics.json").string(),
                      Json{{"summary", summary}, {"items", per_item}}.dump(1) + "\n");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
    fmt::print("{} held-out items ({:.0f} s)\n", N, seconds);
    fmt::print("  segmenter pixel accuracy on ground truth: {:.4f}\n", seg_sum / N);
    fmt::print("  mask accuracy of generated images:        {:.4f}\n", mask_sum / N);
    fmt::print(
        "  colour-histogram correlation: given reference {:.4f}, unrelated {:.4f} (closer to the given one in {}/{})\n",
        given_sum / N, unrelated_sum / N, closer, N);
    return 0;
  };
}

}  // namespace iidm::cli

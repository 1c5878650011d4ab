// `iidm evaluate`: how well a model follows masks and references, on a labelled held-out set.
// For every item: the segmenter's pixel accuracy on the ground-truth image (the segmenter's own
// quality), the image generated from the item's mask with ANOTHER item's image as the style
// reference, its mask accuracy (segment it, compare with the mask) and its colour-histogram
// correlation to the given reference versus an unrelated one. Generated images are kept in
// OUT/images, so a killed run resumes where it stopped.
#include <chrono>
#include <filesystem>

#include "cli/generation_options.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/image.h"
#include "core/progress.h"
#include "core/runtime.h"
#include "data/dataset.h"
#include "metrics/histogram.h"
#include "segmentation/segmenter.h"

namespace iidm::cli {
namespace fs = std::filesystem;
using torch::Tensor;

std::function<int()> add_evaluate_command(CLI::App& app, const CommonOptions& common) {
  auto* cmd = app.add_subcommand("evaluate", "Mask accuracy (via a segmenter) and reference colour correlation of a "
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
  cmd->add_option("--count", a->count, "Number of items (the first N by name)")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--batch-size", a->batch_size, "Images generated together")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--reference-offset", a->reference_offset,
                  "Item i takes item i+K's image as its reference; the unrelated one is item i+N/2")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  a->gen.add_to(cmd);
  return [a, &common]() {
    const auto start_time = std::chrono::steady_clock::now();
    auto pairs = list_landscape_pairs(a->data);
    if (static_cast<int>(pairs.size()) < a->count) fail("{}: has {} items, --count asks for {}", a->data, pairs.size(), a->count);
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
    auto segment = [&](const Tensor& image) { return segmenter->predict(image.unsqueeze(0).to(options.device))[0].cpu(); };

    const fs::path image_dir = fs::path(a->out) / "images";
    fs::create_directories(image_dir);
    std::vector<Tensor> generated(static_cast<size_t>(N));
    std::vector<int> todo;
    for (int i = 0; i < N; ++i) {
      const fs::path path = image_dir / (pairs[i].stem + ".png");
      if (fs::exists(path))
        generated[i] = read_image(path.string())[0];
      else
        todo.push_back(i);
    }
    if (!todo.empty()) {
      Pipeline pipeline = Pipeline::load(a->gen.files, options);
      fmt::print(stderr, "generating {} of {} images: {}\n", todo.size(), N, describe(stages));
      ProgressBar bar("generating", static_cast<int64_t>(todo.size()));
      int64_t done = 0;
      for (size_t b = 0; b < todo.size(); b += static_cast<size_t>(a->batch_size)) {
        std::vector<GenerationItem> items;
        for (size_t k = b; k < std::min(todo.size(), b + static_cast<size_t>(a->batch_size)); ++k) {
          const int i = todo[k];
          GenerationItem item;
          item.name = pairs[i].stem;
          item.labels = labels[i];
          item.start = images[(i + offset) % N];
          item.seed = derive_seed(a->gen.seed, item.name);
          items.push_back(item);
        }
        GenerationResult result = pipeline.generate(items, stages);
        for (size_t k = 0; k < items.size(); ++k) {
          const int i = todo[b + k];
          write_image((image_dir / (pairs[i].stem + ".png")).string(), result.images[static_cast<int64_t>(k)]);
          // Score what was written (8-bit), exactly as a resumed run reads it back.
          generated[i] = read_image((image_dir / (pairs[i].stem + ".png")).string())[0];
        }
        done += static_cast<int64_t>(items.size());
        bar.update(done);
      }
      bar.finish();
    }

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
      per_item.push_back({{"name", pairs[i].stem}, {"reference", pairs[(i + offset) % N].stem},
                          {"unrelated", pairs[(i + unrelated_offset) % N].stem}, {"segmenter_accuracy", seg_acc},
                          {"mask_accuracy", mask_acc}, {"hist_corr_reference", given}, {"hist_corr_unrelated", unrelated}});
    }
    Json summary{{"items", N},
                 {"segmenter_accuracy_on_ground_truth", seg_sum / N},
                 {"mask_accuracy", mask_sum / N},
                 {"hist_corr_reference", given_sum / N},
                 {"hist_corr_unrelated", unrelated_sum / N},
                 {"share_closer_to_reference", static_cast<double>(closer) / N},
                 {"stages", describe(stages)}};
    write_file_atomic((fs::path(a->out) / "metrics.json").string(), Json{{"summary", summary}, {"items", per_item}}.dump(1) + "\n");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
    fmt::print("{} held-out items ({:.0f} s)\n", N, seconds);
    fmt::print("  segmenter pixel accuracy on ground truth: {:.4f}\n", seg_sum / N);
    fmt::print("  mask accuracy of generated images:        {:.4f}\n", mask_sum / N);
    fmt::print("  colour-histogram correlation: given reference {:.4f}, unrelated {:.4f} (closer to the given one in {}/{})\n",
               given_sum / N, unrelated_sum / N, closer, N);
    return 0;
  };
}

}  // namespace iidm::cli

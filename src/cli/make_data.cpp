// `iidm make-data`: procedural landscapes in the competition layout (imgs/*.jpg + labels/*.png),
// and optionally a test split (labels + label_to_img.json naming references from a train split).
#include <fmt/format.h>

#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>

#include "cli/commands.h"
#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "data/landscape.h"

namespace iidm::cli {
namespace fs = std::filesystem;

namespace {
void write_encoded(const std::string& path, const cv::Mat& image, const std::vector<int>& params = {}) {
  std::vector<uchar> bytes;
  if (!cv::imencode(fs::path(path).extension().string(), image, bytes, params)) fail("{}: cannot encode", path);
  write_file_atomic(path, std::string(bytes.begin(), bytes.end()));
}
}  // namespace

std::function<int()> add_make_data_command(CLI::App& app, const CommonOptions&) {
  auto* cmd = app.add_subcommand("make-data",
                                 "Write procedural landscapes (images + exact label maps, 29 classes) "
                                 "in the competition layout; deterministic by seed, resumable");
  struct Args {
    std::string out, size = "512x384", references_from;
    int count = 100, first = 0;
    uint64_t seed = 0;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--out", a->out, "Output folder (gets imgs/ and labels/)")->required();
  cmd->add_option("--count", a->count, "Number of scenes")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--first", a->first, "Index of the first scene (names are 5-digit indices)")->capture_default_str();
  cmd->add_option("--size", a->size, "WIDTHxHEIGHT")->capture_default_str();
  cmd->add_option("--seed", a->seed, "Data seed")->capture_default_str();
  cmd->add_option("--references-from", a->references_from,
                  "Make a test split: write labels/ only, plus label_to_img.json naming a random image of this "
                  "train split's imgs/ as each label's style reference");
  return [a]() {
    const ImageSize size = parse_size(a->size, 16);
    const int W = size.width, H = size.height;
    const bool test_split = !a->references_from.empty();
    std::vector<std::string> references;
    if (test_split) {
      const fs::path imgs = fs::path(a->references_from) / "imgs";
      if (!fs::is_directory(imgs)) fail("--references-from {}: no imgs/ folder", a->references_from);
      for (const auto& e : fs::directory_iterator(imgs)) references.push_back(e.path().filename().string());
      std::sort(references.begin(), references.end());
      if (references.empty()) fail("--references-from {}: imgs/ is empty", a->references_from);
    } else {
      fs::create_directories(fs::path(a->out) / "imgs");
    }
    fs::create_directories(fs::path(a->out) / "labels");
    Json mapping = Json::object();
    std::mt19937_64 pick(a->seed ^ 0x5bd1e995ull);
    ProgressBar bar("scenes", a->count);
    for (int i = 0; i < a->count; ++i) {
      const std::string stem = fmt::format("{:05}", a->first + i);
      const std::string label_path = (fs::path(a->out) / "labels" / (stem + ".png")).string();
      const std::string image_path = (fs::path(a->out) / "imgs" / (stem + ".jpg")).string();
      if (test_split) mapping[stem + ".png"] = references[pick() % references.size()];
      const bool done = fs::exists(label_path) && (test_split || fs::exists(image_path));
      if (!done) {
        // Test scenes draw from a different seed stream than train scenes of the same index.
        const uint64_t scene_seed =
            a->seed * 1000003ull + static_cast<uint64_t>(a->first + i) + (test_split ? (1ull << 40) : 0);
        Landscape scene = generate_landscape(scene_seed, W, H);
        if (!test_split) {
          cv::Mat bgr;
          cv::cvtColor(scene.image, bgr, cv::COLOR_RGB2BGR);
          write_encoded(image_path, bgr, {cv::IMWRITE_JPEG_QUALITY, 95});
        }
        write_encoded(label_path, scene.labels);
      }
      bar.update(i + 1);
    }
    bar.finish();
    if (test_split)
      write_file_atomic((fs::path(a->out) / "labels" / "label_to_img.json").string(), mapping.dump(1) + "\n");
    fmt::print("{} scenes in {}\n", a->count, a->out);
    return 0;
  };
}

}  // namespace iidm::cli

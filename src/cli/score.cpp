// `iidm score`: measures a folder of images that already exist — a competition submission, or any
// tool's outputs — without generating anything: mask accuracy and mIoU, style similarity, FID and
// KID against real images, the competition score. Writes one metrics.json; exit code 1 when an
// item could not be scored (each is named; the rest is scored).
#include <filesystem>
#include <optional>

#include "cli/metrics_options.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/runtime.h"

namespace iidm::cli {
namespace fs = std::filesystem;

std::function<int()> add_score_command(CLI::App& app, const CommonOptions& common) {
  auto* cmd = app.add_subcommand("score",
                                 "Score a folder of existing images: mask accuracy, mIoU, style similarity, "
                                 "FID/KID, the competition score; writes --out (JSON)");
  struct Args {
    MetricsOptions metrics;
    std::string images, labels, json, refs, out;
    int64_t ignore_label = 255;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--images", a->images, "The images to score: <label stem>.jpg|.png")->required();
  cmd->add_option("--labels", a->labels, "Their label maps (*.png); one item per map")->required();
  cmd->add_option("--json", a->json, "label_to_img.json naming each map's style reference (needs --refs)");
  cmd->add_option("--refs", a->refs, "Folder of the references --json names");
  cmd->add_option("--out", a->out, "metrics.json to write")->required();
  cmd->add_option("--ignore-label", a->ignore_label, "Unlabelled pixels' value")->capture_default_str();
  a->metrics.add_to(cmd, true);
  return [a, &common]() {
    const torch::Device device = parse_device(common.device);
    const ScoreListing listing = list_score_items(a->images, a->labels, a->json, a->refs);
    auto segmenter = a->metrics.load_segmenter(device);
    auto features = a->metrics.real_dir.empty() ? nullptr : a->metrics.load_features(device);
    // The output's folder also holds the real images' feature cache, so it is made first.
    if (!fs::path(a->out).parent_path().empty()) fs::create_directories(fs::path(a->out).parent_path());
    const std::string cache = (fs::path(a->out).parent_path() / "real-stats.safetensors").string();
    std::optional<ProgressBar> bar;
    if (!listing.items.empty()) bar.emplace("scoring", static_cast<int64_t>(listing.items.size()));
    ScoreReport report =
        score_images(listing.items, *segmenter, features.get(), a->metrics.score_options(a->ignore_label, cache),
                     [&](int64_t done, int64_t) { bar->update(done); });
    if (bar) bar->finish();
    report.failures.insert(report.failures.begin(), listing.failures.begin(), listing.failures.end());
    write_file_atomic(a->out, report.to_json().dump(1) + "\n");
    print_score_summary(report);
    fmt::print("wrote {}\n", a->out);
    return report.failures.empty() ? 0 : 1;
  };
}

}  // namespace iidm::cli

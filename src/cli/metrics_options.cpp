#include "cli/metrics_options.h"

#include "core/error.h"

namespace iidm::cli {

void MetricsOptions::add_to(CLI::App* cmd, bool real_flag) {
  cmd->add_option("--segmenter", segmenter, "Bundled segmenter weights (with --segmenter-config)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--segmenter-config", segmenter_config, "Bundled segmenter config")->check(CLI::ExistingFile);
  cmd->add_option("--segmenter-torchscript", segmenter_torchscript,
                  "A TorchScript segmenter instead: forward([N,3,H,W] RGB in [0,1]) -> logits [N,C,h,w]")
      ->check(CLI::ExistingFile);
  cmd->add_option("--features", features,
                  "TorchScript feature network for FID/KID (e.g. pytorch-fid's Inception from "
                  "tools/export_inception.py); default: the bundled segmenter's features, labelled as such")
      ->check(CLI::ExistingFile);
  cmd->add_option("--features-size", features_size, "Side the images are resized to for --features (bilinear)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--lpips", lpips, "TorchScript LPIPS for diversity: forward(x, y in [-1,1]) -> [N] distances")
      ->check(CLI::ExistingFile);
  if (real_flag)
    cmd->add_option("--real", real_dir, "Folder of real images for FID/KID")->check(CLI::ExistingDirectory);
  cmd->add_option("--real-stats", real_stats,
                  "Cache file of the real images' features (reused while network, size and folder match)");
  cmd->add_option("--kid-subsets", kid_subsets, "KID subsets")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--kid-subset-size", kid_subset_size, "KID subset size (capped at the set sizes)")
      ->check(CLI::Range(2, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--score-batch", batch_size, "Images per network call when scoring")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

std::unique_ptr<SegmentationNetwork> MetricsOptions::load_segmenter(const torch::Device& device) const {
  const bool bundled = !segmenter.empty() || !segmenter_config.empty();
  if (bundled && !segmenter_torchscript.empty())
    fail("give either --segmenter with --segmenter-config, or --segmenter-torchscript, not both");
  if (!segmenter_torchscript.empty()) return load_torchscript_segmenter(segmenter_torchscript, device);
  if (segmenter.empty() || segmenter_config.empty())
    fail(
        "mask accuracy needs a segmenter: --segmenter W --segmenter-config C (e.g. models/demo/segmenter.*), "
        "or --segmenter-torchscript F");
  return load_bundled_segmenter(segmenter_config, segmenter, device);
}

std::unique_ptr<FeatureNetwork> MetricsOptions::load_features(const torch::Device& device) const {
  if (!features.empty()) return load_torchscript_features(features, features_size, device);
  if (!segmenter.empty() && !segmenter_config.empty())
    return load_segmenter_features(segmenter_config, segmenter, device);
  return nullptr;
}

std::unique_ptr<DistanceNetwork> MetricsOptions::load_lpips(const torch::Device& device) const {
  return lpips.empty() ? nullptr : load_torchscript_distance(lpips, device);
}

ScoreOptions MetricsOptions::score_options(int64_t ignore_label, const std::string& stats_cache_default) const {
  ScoreOptions o;
  o.ignore_label = ignore_label;
  o.batch_size = batch_size;
  o.real_dir = real_dir;
  o.real_stats_cache = real_stats.empty() ? stats_cache_default : real_stats;
  o.kid_subsets = kid_subsets;
  o.kid_subset_size = kid_subset_size;
  return o;
}

void print_score_summary(const ScoreReport& r) {
  fmt::print("{} images scored, {} failed\n", r.items.size(), r.failures.size());
  for (const auto& f : r.failures) fmt::print("  failed: {}: {}\n", f.name, f.reason);
  fmt::print("  mask accuracy {:.4f} (pixels overall {:.4f}), mIoU {:.4f}  [{}]\n", r.mask_accuracy, r.pixel_accuracy,
             r.miou, r.segmenter);
  if (r.style)
    fmt::print("  style similarity {:.4f}, margin over other references {:+.4f}, closest to own reference {:.0f}%\n",
               r.style->mean_own, r.style->mean_margin, 100 * r.style->closest_share);
  if (r.fid)
    fmt::print("  FID {:.3f}, KID {:.5f} ± {:.5f} ({} real images; features: {})\n", *r.fid, r.kid->mean, r.kid->stddev,
               r.real_images, r.features);
  if (r.competition)
    fmt::print("  competition score {:.4f} = mask {:.4f} x (style term {:.4f} + FID term {:.4f}; aesthetic omitted)\n",
               r.competition->score, r.competition->mask_accuracy, r.competition->style_term, r.competition->fid_term);
  for (const auto& n : r.notes) fmt::print("  note: {}\n", n);
}

}  // namespace iidm::cli

#pragma once
// Flags shared by `score`, `evaluate` and `ablate`: the networks the measures look through and the
// real images FID/KID compare against. Bound to CLI11 here; src/metrics only sees structs.
#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "cli/commands.h"
#include "metrics/networks.h"
#include "metrics/score.h"

namespace iidm::cli {

struct MetricsOptions {
  std::string segmenter, segmenter_config, segmenter_torchscript;
  std::string features, lpips;
  int features_size = 299;
  std::string real_dir, real_stats;
  int kid_subsets = 100, kid_subset_size = 1000;
  int batch_size = 8;

  // `real_flag`: whether the command takes --real (evaluate/ablate use the data set's own images).
  void add_to(CLI::App* cmd, bool real_flag);
  // The bundled segmenter (--segmenter + --segmenter-config) or a TorchScript one; exactly one.
  std::unique_ptr<SegmentationNetwork> load_segmenter(const torch::Device& device) const;
  // --features, else the bundled segmenter's pooled features (labelled as such), else none.
  std::unique_ptr<FeatureNetwork> load_features(const torch::Device& device) const;
  std::unique_ptr<DistanceNetwork> load_lpips(const torch::Device& device) const;  // null without --lpips
  // `stats_cache_default`: the cache file when --real-stats is not given.
  ScoreOptions score_options(int64_t ignore_label, const std::string& stats_cache_default) const;
};

// Prints the report's summary as readable lines on stdout.
void print_score_summary(const ScoreReport& report);

}  // namespace iidm::cli

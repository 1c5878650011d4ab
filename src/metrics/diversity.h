#pragma once
// Diversity: how different several samples of one label map are from each other, as the mean
// distance over all pairs of samples of a map, averaged over maps. With an LPIPS network
// (TorchScript, metrics/networks.h) the distance is LPIPS; without one it is the pixel-space RMS
// difference on the [0, 1] scale (0 = identical, 1 = black vs white everywhere), stated as such.
#include <torch/types.h>

#include <string>
#include <vector>

#include "metrics/networks.h"

namespace iidm {

struct DiversityResult {
  double mean = 0;
  std::string measure;  // "lpips" or "pixel-rms"
  int groups = 0, pairs = 0;
};

// groups[g]: samples [3, H, W] in [-1, 1] of one label map; groups of fewer than 2 are skipped.
DiversityResult sample_diversity(const std::vector<std::vector<torch::Tensor>>& groups,
                                 DistanceNetwork* lpips = nullptr);

}  // namespace iidm

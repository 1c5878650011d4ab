#include "metrics/diversity.h"

#include <torch/torch.h>

#include "core/error.h"

namespace iidm {

DiversityResult sample_diversity(const std::vector<std::vector<torch::Tensor>>& groups, DistanceNetwork* lpips) {
  DiversityResult result;
  result.measure = lpips ? "lpips" : "pixel-rms";
  double total = 0;
  for (const auto& group : groups) {
    if (group.size() < 2) continue;
    double sum = 0;
    int pairs = 0;
    for (size_t i = 0; i < group.size(); ++i)
      for (size_t j = i + 1; j < group.size(); ++j) {
        if (group[i].sizes() != group[j].sizes())
          fail("diversity: samples of one map differ in size ({} vs {})", fmt::join(group[i].sizes(), "x"),
               fmt::join(group[j].sizes(), "x"));
        const torch::Tensor a = group[i].to(torch::kFloat64), b = group[j].to(torch::kFloat64);
        sum += lpips ? lpips->distance(a.unsqueeze(0), b.unsqueeze(0))[0].item<double>()
                     : ((a - b) / 2).square().mean().sqrt().item<double>();
        ++pairs;
      }
    total += sum / pairs;
    result.pairs += pairs;
    ++result.groups;
  }
  if (result.groups) result.mean = total / result.groups;
  return result;
}

}  // namespace iidm

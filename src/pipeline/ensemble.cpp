#include "pipeline/ensemble.h"

#include <torch/torch.h>

#include "core/error.h"
#include "core/safetensors.h"

namespace iidm {

void average_checkpoints(const std::vector<std::string>& inputs, std::vector<double> weights,
                         const std::string& output) {
  if (inputs.size() < 2) fail("average: need at least two checkpoints, got {}", inputs.size());
  if (weights.empty()) weights.assign(inputs.size(), 1.0);
  if (weights.size() != inputs.size()) fail("average: {} weights for {} checkpoints", weights.size(), inputs.size());
  double total = 0;
  for (double w : weights) {
    if (!(w >= 0) || !std::isfinite(w)) fail("average: weights must be finite and non-negative, got {}", w);
    total += w;
  }
  if (!(total > 0)) fail("average: the weights sum to zero");

  std::vector<SafeTensorsFile> files;
  for (const auto& path : inputs) files.push_back(SafeTensorsFile::open(path));
  const SafeTensorsFile& first = files.front();
  for (size_t i = 1; i < files.size(); ++i) {
    for (const auto& name : first.names())
      if (!files[i].contains(name)) fail("average: {} has no tensor '{}' (present in {})", inputs[i], name, inputs[0]);
    for (const auto& name : files[i].names())
      if (!first.contains(name)) fail("average: {} has tensor '{}' missing from {}", inputs[i], name, inputs[0]);
  }
  std::vector<std::pair<std::string, torch::Tensor>> result;
  for (const auto& name : first.names()) {
    const auto& ref = first.entry(name);
    torch::Tensor base = first.tensor(name);
    for (size_t i = 1; i < files.size(); ++i) {
      const auto& e = files[i].entry(name);
      if (e.shape != ref.shape)
        fail("average: tensor '{}' has shape [{}] in {} but [{}] in {}", name, fmt::join(e.shape, ","), inputs[i],
             fmt::join(ref.shape, ","), inputs[0]);
    }
    if (!base.is_floating_point()) {
      for (size_t i = 1; i < files.size(); ++i)
        if (!torch::equal(files[i].tensor(name), base))
          fail("average: integer tensor '{}' differs between {} and {}", name, inputs[0], inputs[i]);
      result.emplace_back(name, base.clone());
      continue;
    }
    torch::Tensor sum = torch::zeros(base.sizes(), torch::kFloat64);
    for (size_t i = 0; i < files.size(); ++i) sum += (weights[i] / total) * files[i].tensor(name).to(torch::kFloat64);
    result.emplace_back(name, sum.to(torch::kFloat32));
  }
  std::map<std::string, std::string> metadata{{"iidm_average_of", std::to_string(inputs.size()) + " checkpoints"}};
  save_safetensors(output, result, metadata);
}

}  // namespace iidm

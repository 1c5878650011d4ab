#include "core/norm.h"

namespace iidm {
namespace F = torch::nn::functional;

torch::Tensor group_norm_f32(torch::nn::GroupNorm& norm, const torch::Tensor& x) {
  if (x.scalar_type() == torch::kFloat32 && (!norm->weight.defined() || norm->weight.scalar_type() == torch::kFloat32))
    return norm->forward(x);
  const auto& o = norm->options;
  auto options = F::GroupNormFuncOptions(o.num_groups()).eps(o.eps());
  if (norm->weight.defined()) options.weight(norm->weight.to(torch::kFloat32)).bias(norm->bias.to(torch::kFloat32));
  return F::group_norm(x.to(torch::kFloat32), options).to(x.scalar_type());
}

}  // namespace iidm

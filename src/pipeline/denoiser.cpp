#include "pipeline/denoiser.h"

#include "core/error.h"
#include "diffusion/guidance.h"

namespace iidm {
using torch::Tensor;

Denoiser::Denoiser(std::vector<EnsembleMember> members, GuidanceOptions guidance, int64_t prediction_channels)
    : members_(std::move(members)), guidance_(guidance), prediction_channels_(prediction_channels) {
  if (members_.empty()) fail("denoiser: no model given");
  double total = 0;
  for (const auto& m : members_) {
    if (!m.model) fail("denoiser: an ensemble member has no model");
    if (!(m.weight >= 0)) fail("denoiser: ensemble weights must be non-negative, got {}", m.weight);
    total += m.weight;
  }
  if (!(total > 0)) fail("denoiser: ensemble weights sum to zero");
  for (auto& m : members_) m.weight /= total;
  if (!std::isfinite(guidance_.scale) || guidance_.scale < 0)
    fail("denoiser: guidance scale must be finite and >= 0 (1 = conditional only), got {}", guidance_.scale);
}

int Denoiser::forwards_per_call() const {
  const int per_member = guidance_.scale == 1.0 ? 1 : 2;
  return per_member * static_cast<int>(members_.size());
}

Tensor Denoiser::run_member(EnsembleMember& member, const Tensor& x, const Tensor& t, const Tensor& y) {
  auto& model = member.model;
  // s = 1 needs no unconditional pass (and s = 0 no conditional one).
  if (guidance_.scale == 1.0) return model->forward(x, t, y);
  if (guidance_.scale == 0.0) return model->forward(x, t, torch::zeros_like(y));
  Tensor cond, uncond;
  if (guidance_.batched) {
    // One forward of batch 2N: the pair shares weights loads and fills the cores better.
    Tensor out = model->forward(torch::cat({x, x}), torch::cat({t, t}), torch::cat({y, torch::zeros_like(y)}));
    auto halves = out.chunk(2, 0);
    cond = halves[0];
    uncond = halves[1];
  } else {
    cond = model->forward(x, t, y);
    uncond = model->forward(x, t, torch::zeros_like(y));
  }
  return apply_guidance(cond, uncond, guidance_.scale, prediction_channels_);
}

Tensor Denoiser::operator()(const Tensor& x, const Tensor& model_t, const Tensor& y) {
  torch::NoGradGuard no_grad;
  Tensor out;
  for (auto& member : members_) {
    Tensor o = run_member(member, x, model_t, y);
    out = out.defined() ? out + member.weight * o : (members_.size() == 1 ? o : member.weight * o);
  }
  return out;
}

ModelFn Denoiser::bind(Tensor y) {
  return [this, y = std::move(y)](const Tensor& x, const Tensor& t) { return (*this)(x, t, y); };
}

}  // namespace iidm

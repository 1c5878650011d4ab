#pragma once
// The denoiser callback the samplers see: one or several U-Nets sharing a latent space, combined
// with classifier-free guidance (cond and uncond in one batched forward) and a weighted
// per-step ensemble. Samplers stay ignorant of all of it.
#include <torch/torch.h>

#include <vector>

#include "diffusion/gaussian_diffusion.h"
#include "unet/unet.h"

namespace iidm {

struct EnsembleMember {
  UNetModel model{nullptr};
  double weight = 1.0;
};

struct GuidanceOptions {
  double scale = 1.0;   // s >= 0; 1 = conditional only (one pass), 0 = unconditional only (guidance.h)
  bool batched = true;  // cond and uncond in one forward of batch 2N (false: two passes, as the references)
};

class Denoiser {
 public:
  // `prediction_channels`: the first C output channels are the eps/x0 prediction that guidance
  // acts on (the rest, a learned variance, comes from the conditional pass).
  Denoiser(std::vector<EnsembleMember> members, GuidanceOptions guidance, int64_t prediction_channels);

  // Raw (guided, ensembled) output for x [N, C, H, W], model timesteps [N], labels y [N, L, H, W].
  torch::Tensor operator()(const torch::Tensor& x, const torch::Tensor& model_t, const torch::Tensor& y);
  // The ModelFn for a fixed label map.
  ModelFn bind(torch::Tensor y);

  // U-Net forwards per image per call (guidance doubles it; each ensemble member adds one set).
  int forwards_per_call() const;

 private:
  torch::Tensor run_member(EnsembleMember& member, const torch::Tensor& x, const torch::Tensor& t,
                           const torch::Tensor& y);

  std::vector<EnsembleMember> members_;
  GuidanceOptions guidance_;
  int64_t prediction_channels_;
};

}  // namespace iidm

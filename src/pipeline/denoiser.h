#pragma once
// The denoiser callback the samplers see: one or several U-Nets sharing a latent space, combined
// with classifier-free guidance (one encoder pass shared by cond and uncond, whose decoder passes
// run as one batch) and a weighted per-step ensemble. Samplers stay ignorant of all of it.
#include <torch/torch.h>

#include <memory>
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
  bool batched = true;  // cond and uncond decoded in one pass of batch 2N (false: two passes)
};

// The SPADE caches (unet.h) of one label map: per ensemble member, for the conditional pass, the
// unconditional (all-zero map) pass and the batched pair. A Pipeline keeps one per batch, so every
// step and every round of the same map reuses them; they are freed with it.
class ConditioningCache {
 public:
  int64_t bytes() const;  // what the cached maps hold now
  int64_t peak_bytes() const { return peak_bytes_; }

 private:
  friend class Denoiser;
  struct Member {
    SpadeCache cond, uncond, pair;
  };
  // The maps a pass uses, built once per label map: y itself, its all-zero twin, the pair.
  void bind(const torch::Tensor& y, size_t members);
  void note_size();

  torch::Tensor y_, zeros_, pair_;
  int64_t y_version_ = -1;
  std::vector<Member> members_;
  int64_t peak_bytes_ = 0;
};

class Denoiser {
 public:
  // `prediction_channels`: the first C output channels are the eps/x0 prediction that guidance
  // acts on (the rest, a learned variance, comes from the conditional pass). With `cache`, SPADE's
  // maps are computed on the first call for a label map and reused on later ones.
  Denoiser(std::vector<EnsembleMember> members, GuidanceOptions guidance, int64_t prediction_channels,
           std::shared_ptr<ConditioningCache> cache = nullptr);

  // Raw (guided, ensembled) output for x [N, C, H, W], model timesteps [N], labels y [N, L, H, W].
  torch::Tensor operator()(const torch::Tensor& x, const torch::Tensor& model_t, const torch::Tensor& y);
  // The ModelFn for a fixed label map.
  ModelFn bind(torch::Tensor y);

  // U-Net forwards per image per call (guidance doubles it; each ensemble member adds one set).
  int forwards_per_call() const;

 private:
  torch::Tensor run_member(size_t index, const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& y);

  std::vector<EnsembleMember> members_;
  GuidanceOptions guidance_;
  int64_t prediction_channels_;
  std::shared_ptr<ConditioningCache> cache_;
};

}  // namespace iidm

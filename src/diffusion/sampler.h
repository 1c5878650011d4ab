#pragma once
// Samplers walk a respaced chain from `first_index` down to 0. They see the network only through
// a ModelFn (guidance, ensembling and editing live there or in the hooks below), one algorithm per
// file: ddpm.cpp (ancestral), ddim.cpp, dpm_solver.cpp (DPM-Solver++ 2M).
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>

#include "diffusion/gaussian_diffusion.h"

namespace iidm {

struct StepResult {
  torch::Tensor sample, pred_xstart;
};

struct SampleOptions {
  int first_index = -1;       // respaced index of the first step; -1 = K-1 (start from pure noise)
  bool clip_denoised = true;  // clamp x0 predictions to [-1, 1] (pixel space; not for latents)
  double eta = 0.0;           // DDIM only: 0 is deterministic, 1 is DDPM-like
  // CPU generators for the step noise: none (global RNG), one for the whole batch, or one per
  // batch item, so an image's noise does not depend on which other images share its batch.
  std::vector<at::Generator> generators;
  // Applied to each x0 prediction before clipping.
  std::function<torch::Tensor(const torch::Tensor&)> denoised_fn;
  // Called after each step with the new sample; may return a replacement (editing uses it to
  // put the known region back). index is the step just taken.
  std::function<torch::Tensor(const torch::Tensor& sample, int index)> after_step;
  std::function<void(int done, int total)> on_progress;
};

// The samplers, parsed once at the edge (configs, flags) and passed as this type.
enum class SamplerKind { kDdpm, kDdim, kDpmSolver2M };
// "ddpm" | "ddim" | "dpm++2m" (or "dpmpp2m"); throws iidm::Error listing the choices.
SamplerKind parse_sampler(const std::string& name);
std::string to_string(SamplerKind kind);

// Whether x0 predictions are clamped to [-1, 1]: right for pixels, wrong for VQ/KL latents (IIDM
// samples its latents unclipped). kAuto decides by the space the model denoises in.
enum class ClipDenoised { kAuto, kAlways, kNever };
// "auto" | "true" | "false"
ClipDenoised parse_clip_denoised(const std::string& text);
std::string to_string(ClipDenoised clip);
// The one place kAuto is resolved: pixel-space models clip, latent-space models do not.
bool resolve_clip_denoised(ClipDenoised clip, bool latent_space);

class Sampler {
 public:
  virtual ~Sampler() = default;
  virtual std::string name() const = 0;
  // Runs the chain from x (at first_index) to index 0 and returns x_0.
  virtual torch::Tensor sample(const GaussianDiffusion& diffusion, const ModelFn& model, torch::Tensor x,
                               const SampleOptions& options) const = 0;
};

std::unique_ptr<Sampler> make_sampler(SamplerKind kind);
// parse_sampler + make_sampler, for tools and tests that name a sampler.
std::unique_ptr<Sampler> make_sampler(const std::string& name);

// Standard normal noise shaped like `like`, drawn on CPU generators (see SampleOptions) and moved
// to like's device and dtype, so a seed reproduces the same numbers on any device.
torch::Tensor randn_like_on_cpu(const torch::Tensor& like, const std::vector<at::Generator>& generators);

// Single steps, exposed for tests and for samplers built on them. `noise` may be undefined when
// the step adds none.
StepResult ddpm_step(const GaussianDiffusion& diffusion, const ModelFn& model, const torch::Tensor& x,
                     const torch::Tensor& index, bool clip_denoised, const torch::Tensor& noise,
                     const std::function<torch::Tensor(const torch::Tensor&)>& denoised_fn = {},
                     PMeanVariance* out = nullptr);
StepResult ddim_step(const GaussianDiffusion& diffusion, const ModelFn& model, const torch::Tensor& x,
                     const torch::Tensor& index, bool clip_denoised, double eta, const torch::Tensor& noise,
                     const std::function<torch::Tensor(const torch::Tensor&)>& denoised_fn = {});

}  // namespace iidm

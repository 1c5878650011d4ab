// Ancestral sampling (Ho et al. 2020; guided-diffusion's p_sample).
#include "diffusion/sampler.h"

namespace iidm {
using torch::Tensor;

StepResult ddpm_step(const GaussianDiffusion& diffusion, const ModelFn& model, const Tensor& x, const Tensor& index,
                     bool clip_denoised, const Tensor& noise, const std::function<Tensor(const Tensor&)>& denoised_fn,
                     PMeanVariance* out) {
  PMeanVariance p =
      diffusion.p_mean_variance(diffusion.call_model(model, x, index), x, index, clip_denoised, denoised_fn);
  // No noise is added at index 0.
  Tensor nonzero = (index != 0).to(x.dtype()).view({-1, 1, 1, 1}).to(x.device());
  Tensor sample = noise.defined() ? p.mean + nonzero * torch::exp(0.5 * p.log_variance) * noise : p.mean;
  if (out) *out = p;
  return {sample, p.pred_xstart};
}

namespace {
class DDPMSampler : public Sampler {
 public:
  std::string name() const override { return "ddpm"; }
  Tensor sample(const GaussianDiffusion& diffusion, const ModelFn& model, Tensor x,
                const SampleOptions& o) const override {
    const int first = o.first_index < 0 ? diffusion.num_steps() - 1 : o.first_index;
    TORCH_CHECK(first < diffusion.num_steps(), "ddpm: first index ", first, " beyond the chain of ",
                diffusion.num_steps());
    torch::NoGradGuard no_grad;
    for (int i = first; i >= 0; --i) {
      Tensor index = torch::full({x.size(0)}, i, torch::kInt64);
      Tensor noise = i > 0 ? randn_like_on_cpu(x, o.generators) : Tensor();
      x = ddpm_step(diffusion, model, x, index, o.clip_denoised, noise, o.denoised_fn).sample;
      if (o.after_step) x = o.after_step(x, i);
      if (o.on_progress) o.on_progress(first - i + 1, first + 1);
    }
    return x;
  }
};
}  // namespace

std::unique_ptr<Sampler> make_ddpm_sampler() { return std::make_unique<DDPMSampler>(); }

}  // namespace iidm

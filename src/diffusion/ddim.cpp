// DDIM (Song et al. 2021, eq. 12; guided-diffusion's ddim_sample).
#include "diffusion/sampler.h"

namespace iidm {
using torch::Tensor;

StepResult ddim_step(const GaussianDiffusion& diffusion, const ModelFn& model, const Tensor& x, const Tensor& index,
                     bool clip_denoised, double eta, const Tensor& noise,
                     const std::function<Tensor(const Tensor&)>& denoised_fn) {
  PMeanVariance p =
      diffusion.p_mean_variance(diffusion.call_model(model, x, index), x, index, clip_denoised, denoised_fn);
  // Re-derive eps from the (possibly clipped) x0 prediction, as the reference does.
  Tensor eps = diffusion.predict_eps_from_xstart(x, index, p.pred_xstart);
  Tensor alpha_bar = diffusion.extract(diffusion.t_alphas_cumprod, index, x);
  Tensor alpha_bar_prev = diffusion.extract(diffusion.t_alphas_cumprod_prev, index, x);
  Tensor sigma =
      eta * torch::sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * torch::sqrt(1 - alpha_bar / alpha_bar_prev);
  Tensor mean = p.pred_xstart * torch::sqrt(alpha_bar_prev) + torch::sqrt(1 - alpha_bar_prev - sigma.pow(2)) * eps;
  if (eta != 0.0 && noise.defined()) {
    Tensor nonzero = (index != 0).to(x.dtype()).view({-1, 1, 1, 1}).to(x.device());
    mean = mean + nonzero * sigma * noise;
  }
  return {mean, p.pred_xstart};
}

namespace {
class DDIMSampler : public Sampler {
 public:
  std::string name() const override { return "ddim"; }
  Tensor sample(const GaussianDiffusion& diffusion, const ModelFn& model, Tensor x,
                const SampleOptions& o) const override {
    const int first = o.first_index < 0 ? diffusion.num_steps() - 1 : o.first_index;
    TORCH_CHECK(first < diffusion.num_steps(), "ddim: first index ", first, " beyond the chain of ",
                diffusion.num_steps());
    torch::NoGradGuard no_grad;
    for (int i = first; i >= 0; --i) {
      Tensor index = torch::full({x.size(0)}, i, torch::kInt64);
      Tensor noise = (o.eta != 0.0 && i > 0) ? randn_like_on_cpu(x, o.generators) : Tensor();
      x = ddim_step(diffusion, model, x, index, o.clip_denoised, o.eta, noise, o.denoised_fn).sample;
      if (o.after_step) x = o.after_step(x, i);
      if (o.on_progress) o.on_progress(first - i + 1, first + 1);
    }
    return x;
  }
};
}  // namespace

std::unique_ptr<Sampler> make_ddim_sampler() { return std::make_unique<DDIMSampler>(); }

}  // namespace iidm

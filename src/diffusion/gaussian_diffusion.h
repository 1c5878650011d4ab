#pragma once
// guided-diffusion's GaussianDiffusion / SpacedDiffusion: the float64 tables of a (respaced)
// chain and the formulas on them. Positions in the respaced chain are "indices" 0..K-1; the model
// is called with the original timesteps timestep_map[index]. Samplers (sampler.h) and training
// (losses) are built on these formulas and see the network only as a ModelFn.
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "core/config.h"

namespace iidm {

enum class MeanType { kEpsilon, kStartX, kPreviousX };
enum class VarType { kFixedSmall, kFixedLarge, kLearned, kLearnedRange };
enum class LossKind { kMse, kRescaledMse, kKl, kRescaledKl };

// create_gaussian_diffusion's arguments.
struct DiffusionConfig {
  int steps = 1000;
  std::string noise_schedule = "linear";              // linear | cosine | ldm_linear
  double linear_start = 0.0015, linear_end = 0.0195;  // ldm_linear only
  std::string timestep_respacing;                     // "" (all), "ddimN", "a,b,c"
  bool learn_sigma = true;
  bool sigma_small = false;
  bool predict_xstart = false;
  bool rescale_timesteps = false;
  bool use_kl = false;
  bool rescale_learned_sigmas = false;  // SDM's and IIDM's default

  // The JSON keys (core/config.h).
  template <class Self, class Field>
  static void fields(Self& c, Field&& field) {
    field("steps", c.steps);
    field("noise_schedule", c.noise_schedule);
    field("linear_start", c.linear_start, written_if(c.noise_schedule == "ldm_linear"));
    field("linear_end", c.linear_end, written_if(c.noise_schedule == "ldm_linear"));
    field("timestep_respacing", c.timestep_respacing);
    field("learn_sigma", c.learn_sigma);
    field("sigma_small", c.sigma_small);
    field("predict_xstart", c.predict_xstart);
    field("rescale_timesteps", c.rescale_timesteps);
    field("use_kl", c.use_kl);
    field("rescale_learned_sigmas", c.rescale_learned_sigmas);
  }

  MeanType mean_type() const { return predict_xstart ? MeanType::kStartX : MeanType::kEpsilon; }
  VarType var_type() const {
    return learn_sigma ? VarType::kLearnedRange : (sigma_small ? VarType::kFixedSmall : VarType::kFixedLarge);
  }
  LossKind loss_kind() const {
    return use_kl ? LossKind::kRescaledKl : (rescale_learned_sigmas ? LossKind::kRescaledMse : LossKind::kMse);
  }
  void validate() const;
  static DiffusionConfig from_json(ConfigReader& reader);
  Json to_json() const;
};

// The network as the diffusion sees it: x_t and the model timesteps [N] -> raw output
// [N, C or 2C, ...] (epsilon or x0, then the variance channels when learned). Guidance and
// ensembling live inside this callback.
using ModelFn = std::function<torch::Tensor(const torch::Tensor& x, const torch::Tensor& model_t)>;

struct Posterior {
  torch::Tensor mean, variance, log_variance;
};
struct PMeanVariance {
  torch::Tensor mean, variance, log_variance, pred_xstart;
};
struct LossTerms {
  torch::Tensor mse, vb, loss;  // [N] each; vb undefined when the variance is fixed
};

class GaussianDiffusion {
 public:
  explicit GaussianDiffusion(const DiffusionConfig& config);
  const DiffusionConfig& config() const { return config_; }

  int num_steps() const { return static_cast<int>(betas_.size()); }  // K, respaced length
  int original_num_steps() const { return config_.steps; }
  const std::vector<int64_t>& timestep_map() const { return timestep_map_; }
  const std::vector<double>& betas() const { return betas_; }
  const std::vector<double>& alphas_cumprod() const { return alphas_cumprod_; }
  const std::vector<double>& alphas_cumprod_prev() const { return alphas_cumprod_prev_; }
  const std::vector<double>& posterior_log_variance_clipped() const { return posterior_log_variance_clipped_; }

  // Respaced indices [N] (int64) -> what the model is called with (timestep_map, optionally
  // rescaled to 0..1000 as float).
  torch::Tensor model_timesteps(const torch::Tensor& index) const;
  // Calls `model` at respaced indices.
  torch::Tensor call_model(const ModelFn& model, const torch::Tensor& x, const torch::Tensor& index) const;

  torch::Tensor q_sample(const torch::Tensor& x_start, const torch::Tensor& index, const torch::Tensor& noise) const;
  Posterior q_posterior(const torch::Tensor& x_start, const torch::Tensor& x_t, const torch::Tensor& index) const;
  // p(x_{t-1} | x_t) from a model output. `denoised_fn` (optional) maps the x0 prediction before
  // clipping.
  PMeanVariance p_mean_variance(const torch::Tensor& model_output, const torch::Tensor& x, const torch::Tensor& index,
                                bool clip_denoised,
                                const std::function<torch::Tensor(const torch::Tensor&)>& denoised_fn = {}) const;
  torch::Tensor predict_xstart_from_eps(const torch::Tensor& x_t, const torch::Tensor& index,
                                        const torch::Tensor& eps) const;
  torch::Tensor predict_eps_from_xstart(const torch::Tensor& x_t, const torch::Tensor& index,
                                        const torch::Tensor& x0) const;

  // The VLB term in bits per dimension [N]: decoder NLL at index 0, KL(q || p) elsewhere.
  torch::Tensor vb_terms_bpd(const torch::Tensor& model_output, const torch::Tensor& x_start, const torch::Tensor& x_t,
                             const torch::Tensor& index, bool clip_denoised) const;
  // The hybrid loss of improved DDPM / SDM: mse on the mean prediction + vb for the variance
  // (mean stopped), per sample. `noise` as in q_sample.
  LossTerms training_losses(const ModelFn& model, const torch::Tensor& x_start, const torch::Tensor& index,
                            const torch::Tensor& noise) const;

  // table[index] as [N, 1, ..., 1] in `like`'s dtype and device (float64 -> float32 like the
  // reference's _extract_into_tensor).
  torch::Tensor extract(const torch::Tensor& table, const torch::Tensor& index, const torch::Tensor& like) const;

  // float64 CPU tables
  torch::Tensor t_betas, t_log_betas, t_alphas_cumprod, t_alphas_cumprod_prev, t_sqrt_alphas_cumprod,
      t_sqrt_one_minus_alphas_cumprod, t_sqrt_recip_alphas_cumprod, t_sqrt_recipm1_alphas_cumprod, t_posterior_variance,
      t_posterior_log_variance_clipped, t_posterior_mean_coef1, t_posterior_mean_coef2, t_fixed_large_variance,
      t_fixed_large_log_variance;

 private:
  DiffusionConfig config_;
  std::vector<double> betas_, alphas_cumprod_, alphas_cumprod_prev_, posterior_log_variance_clipped_;
  std::vector<int64_t> timestep_map_;
  torch::Tensor t_timestep_map_;
};

// Gaussian KL between N(mean1, exp(logvar1)) and N(mean2, exp(logvar2)), elementwise, in nats.
torch::Tensor normal_kl(const torch::Tensor& mean1, const torch::Tensor& logvar1, const torch::Tensor& mean2,
                        const torch::Tensor& logvar2);
// Log-likelihood of images in [-1, 1] quantised to 256 levels under a Gaussian, elementwise.
torch::Tensor discretized_gaussian_log_likelihood(const torch::Tensor& x, const torch::Tensor& means,
                                                  const torch::Tensor& log_scales);

}  // namespace iidm

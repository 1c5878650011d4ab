#include "diffusion/gaussian_diffusion.h"

#include <cmath>
#include <set>

#include "core/error.h"
#include "diffusion/schedule.h"

namespace iidm {
using torch::Tensor;

void DiffusionConfig::validate() const {
  if (steps <= 0) fail("diffusion config: steps must be positive, got {}", steps);
  if (noise_schedule != "linear" && noise_schedule != "cosine" && noise_schedule != "ldm_linear")
    fail("diffusion config: unknown noise_schedule '{}' (expected linear, cosine or ldm_linear)", noise_schedule);
  if (noise_schedule == "ldm_linear" && !(linear_start > 0 && linear_end > linear_start && linear_end < 1))
    fail("diffusion config: need 0 < linear_start < linear_end < 1, got {} and {}", linear_start, linear_end);
  space_timesteps(steps, timestep_respacing);  // throws when the respacing cannot be met
}

DiffusionConfig DiffusionConfig::from_json(ConfigReader& r) {
  DiffusionConfig c;
  read_fields(r, c);
  return r.validated(c);
}

Json DiffusionConfig::to_json() const { return write_fields(*this); }

namespace {
Tensor table(const std::vector<double>& v) {
  return torch::from_blob(const_cast<double*>(v.data()), {static_cast<int64_t>(v.size())}, torch::kFloat64).clone();
}
}  // namespace

GaussianDiffusion::GaussianDiffusion(const DiffusionConfig& config) : config_(config) {
  config_.validate();
  const std::vector<double> base =
      config_.noise_schedule == "ldm_linear"
          ? ldm_linear_beta_schedule(config_.steps, config_.linear_start, config_.linear_end)
          : guided_beta_schedule(config_.noise_schedule, config_.steps);
  // Respacing keeps the cumulative alphas at the kept timesteps and derives new betas from them
  // (SpacedDiffusion).
  const std::vector<int> keep = space_timesteps(config_.steps, config_.timestep_respacing);
  const std::set<int> kept(keep.begin(), keep.end());
  double base_cumprod = 1.0, last = 1.0;
  for (int i = 0; i < config_.steps; ++i) {
    base_cumprod *= 1.0 - base[i];
    if (kept.count(i)) {
      betas_.push_back(1.0 - base_cumprod / last);
      last = base_cumprod;
      timestep_map_.push_back(i);
    }
  }
  const size_t K = betas_.size();
  std::vector<double> alphas(K), sqrt_ac(K), sqrt_1m_ac(K), sqrt_recip(K), sqrt_recipm1(K), post_var(K), coef1(K),
      coef2(K), log_betas(K);
  alphas_cumprod_.resize(K);
  alphas_cumprod_prev_.resize(K);
  double cum = 1.0;
  for (size_t i = 0; i < K; ++i) {
    if (!(betas_[i] > 0 && betas_[i] <= 1)) fail("diffusion: beta {} at index {} is outside (0, 1]", betas_[i], i);
    alphas[i] = 1.0 - betas_[i];
    alphas_cumprod_prev_[i] = cum;
    cum *= alphas[i];
    alphas_cumprod_[i] = cum;
  }
  for (size_t i = 0; i < K; ++i) {
    const double ac = alphas_cumprod_[i], acp = alphas_cumprod_prev_[i];
    sqrt_ac[i] = std::sqrt(ac);
    sqrt_1m_ac[i] = std::sqrt(1.0 - ac);
    sqrt_recip[i] = std::sqrt(1.0 / ac);
    sqrt_recipm1[i] = std::sqrt(1.0 / ac - 1);
    post_var[i] = betas_[i] * (1.0 - acp) / (1.0 - ac);
    coef1[i] = betas_[i] * std::sqrt(acp) / (1.0 - ac);
    coef2[i] = (1.0 - acp) * std::sqrt(alphas[i]) / (1.0 - ac);
    log_betas[i] = std::log(betas_[i]);
  }
  // The posterior variance is 0 at index 0; its log is clipped to the value at index 1.
  posterior_log_variance_clipped_.resize(K);
  for (size_t i = 0; i < K; ++i)
    posterior_log_variance_clipped_[i] = std::log(i == 0 ? (K > 1 ? post_var[1] : betas_[0]) : post_var[i]);
  // FIXED_LARGE uses betas, with the first entry set to the posterior variance for a better
  // decoder likelihood.
  std::vector<double> large(betas_);
  if (K > 1) large[0] = post_var[1];
  std::vector<double> log_large(K);
  for (size_t i = 0; i < K; ++i) log_large[i] = std::log(large[i]);

  t_betas = table(betas_);
  t_log_betas = table(log_betas);
  t_alphas_cumprod = table(alphas_cumprod_);
  t_alphas_cumprod_prev = table(alphas_cumprod_prev_);
  t_sqrt_alphas_cumprod = table(sqrt_ac);
  t_sqrt_one_minus_alphas_cumprod = table(sqrt_1m_ac);
  t_sqrt_recip_alphas_cumprod = table(sqrt_recip);
  t_sqrt_recipm1_alphas_cumprod = table(sqrt_recipm1);
  t_posterior_variance = table(post_var);
  t_posterior_log_variance_clipped = table(posterior_log_variance_clipped_);
  t_posterior_mean_coef1 = table(coef1);
  t_posterior_mean_coef2 = table(coef2);
  t_fixed_large_variance = table(large);
  t_fixed_large_log_variance = table(log_large);
  t_timestep_map_ = torch::tensor(timestep_map_, torch::kInt64);
}

Tensor GaussianDiffusion::extract(const Tensor& tbl, const Tensor& index, const Tensor& like) const {
  Tensor idx = index.to(torch::kCPU, torch::kInt64);
  TORCH_CHECK(idx.dim() == 1 && idx.size(0) == like.size(0), "diffusion: index must be [", like.size(0), "], got ",
              idx.sizes());
  TORCH_CHECK(idx.min().item<int64_t>() >= 0 && idx.max().item<int64_t>() < num_steps(),
              "diffusion: index out of range 0..", num_steps() - 1);
  std::vector<int64_t> shape(like.dim(), 1);
  shape[0] = like.size(0);
  // Cast to float32 first (as the reference does), then to the working dtype.
  return tbl.index_select(0, idx).to(torch::kFloat32).to(like.options()).view(shape);
}

Tensor GaussianDiffusion::model_timesteps(const Tensor& index) const {
  Tensor t = t_timestep_map_.index_select(0, index.to(torch::kCPU, torch::kInt64)).to(index.device());
  if (config_.rescale_timesteps) return t.to(torch::kFloat32) * (1000.0f / config_.steps);
  return t;
}

Tensor GaussianDiffusion::call_model(const ModelFn& model, const Tensor& x, const Tensor& index) const {
  return model(x, model_timesteps(index).to(x.device()));
}

Tensor GaussianDiffusion::q_sample(const Tensor& x0, const Tensor& index, const Tensor& noise) const {
  TORCH_CHECK(noise.sizes() == x0.sizes(), "q_sample: noise ", noise.sizes(), " vs x0 ", x0.sizes());
  return extract(t_sqrt_alphas_cumprod, index, x0) * x0 + extract(t_sqrt_one_minus_alphas_cumprod, index, x0) * noise;
}

Posterior GaussianDiffusion::q_posterior(const Tensor& x0, const Tensor& xt, const Tensor& index) const {
  return {extract(t_posterior_mean_coef1, index, xt) * x0 + extract(t_posterior_mean_coef2, index, xt) * xt,
          extract(t_posterior_variance, index, xt), extract(t_posterior_log_variance_clipped, index, xt)};
}

Tensor GaussianDiffusion::predict_xstart_from_eps(const Tensor& xt, const Tensor& index, const Tensor& eps) const {
  return extract(t_sqrt_recip_alphas_cumprod, index, xt) * xt - extract(t_sqrt_recipm1_alphas_cumprod, index, xt) * eps;
}

Tensor GaussianDiffusion::predict_eps_from_xstart(const Tensor& xt, const Tensor& index, const Tensor& x0) const {
  return (extract(t_sqrt_recip_alphas_cumprod, index, xt) * xt - x0) /
         extract(t_sqrt_recipm1_alphas_cumprod, index, xt);
}

PMeanVariance GaussianDiffusion::p_mean_variance(const Tensor& model_output, const Tensor& x, const Tensor& index,
                                                 bool clip_denoised,
                                                 const std::function<Tensor(const Tensor&)>& denoised_fn) const {
  const int64_t C = x.size(1);
  Tensor output = model_output, log_variance, variance;
  const VarType var_type = config_.var_type();
  if (var_type == VarType::kLearned || var_type == VarType::kLearnedRange) {
    TORCH_CHECK(model_output.size(1) == 2 * C, "diffusion: a learned variance needs ", 2 * C,
                " output channels, the model gave ", model_output.size(1));
    auto parts = model_output.split(C, 1);
    output = parts[0];
    if (var_type == VarType::kLearned) {
      log_variance = parts[1];
    } else {
      // The model's [-1, 1] interpolates between the posterior (min) and beta (max) log-variance.
      Tensor min_log = extract(t_posterior_log_variance_clipped, index, x);
      Tensor max_log = extract(t_log_betas, index, x);
      Tensor frac = (parts[1] + 1) / 2;
      log_variance = frac * max_log + (1 - frac) * min_log;
    }
    variance = torch::exp(log_variance);
  } else {
    TORCH_CHECK(model_output.size(1) == C, "diffusion: a fixed variance needs ", C, " output channels, the model gave ",
                model_output.size(1));
    const bool large = var_type == VarType::kFixedLarge;
    variance = extract(large ? t_fixed_large_variance : t_posterior_variance, index, x).expand_as(x);
    log_variance =
        extract(large ? t_fixed_large_log_variance : t_posterior_log_variance_clipped, index, x).expand_as(x);
  }
  auto process = [&](Tensor x0) {
    if (denoised_fn) x0 = denoised_fn(x0);
    return clip_denoised ? x0.clamp(-1, 1) : x0;
  };
  Tensor pred_xstart, mean;
  switch (config_.mean_type()) {
    case MeanType::kPreviousX: {
      pred_xstart =
          process((output - extract(t_posterior_mean_coef2, index, x) * x) / extract(t_posterior_mean_coef1, index, x));
      mean = output;
      break;
    }
    case MeanType::kStartX:
      pred_xstart = process(output);
      mean = q_posterior(pred_xstart, x, index).mean;
      break;
    case MeanType::kEpsilon:
      pred_xstart = process(predict_xstart_from_eps(x, index, output));
      mean = q_posterior(pred_xstart, x, index).mean;
      break;
  }
  return {mean, variance, log_variance, pred_xstart};
}

Tensor normal_kl(const Tensor& mean1, const Tensor& logvar1, const Tensor& mean2, const Tensor& logvar2) {
  return 0.5 *
         (-1.0 + logvar2 - logvar1 + torch::exp(logvar1 - logvar2) + (mean1 - mean2).pow(2) * torch::exp(-logvar2));
}

namespace {
// A fast approximation of the standard normal CDF (the reference's, kept for identical numbers).
Tensor approx_standard_normal_cdf(const Tensor& x) {
  return 0.5 * (1.0 + torch::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * torch::pow(x, 3))));
}
}  // namespace

Tensor discretized_gaussian_log_likelihood(const Tensor& x, const Tensor& means, const Tensor& log_scales) {
  TORCH_CHECK(x.sizes() == means.sizes() && means.sizes() == log_scales.sizes(), "log-likelihood: shape mismatch");
  Tensor centered = x - means;
  Tensor inv_stdv = torch::exp(-log_scales);
  Tensor cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered + 1.0 / 255.0));
  Tensor cdf_min = approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0));
  Tensor log_cdf_plus = torch::log(cdf_plus.clamp_min(1e-12));
  Tensor log_one_minus_cdf_min = torch::log((1.0 - cdf_min).clamp_min(1e-12));
  Tensor cdf_delta = cdf_plus - cdf_min;
  // The edge bins extend to +-infinity.
  return torch::where(x < -0.999, log_cdf_plus,
                      torch::where(x > 0.999, log_one_minus_cdf_min, torch::log(cdf_delta.clamp_min(1e-12))));
}

Tensor GaussianDiffusion::vb_terms_bpd(const Tensor& model_output, const Tensor& x0, const Tensor& xt,
                                       const Tensor& index, bool clip_denoised) const {
  Posterior truth = q_posterior(x0, xt, index);
  PMeanVariance out = p_mean_variance(model_output, xt, index, clip_denoised);
  std::vector<int64_t> dims;
  for (int64_t d = 1; d < x0.dim(); ++d) dims.push_back(d);
  Tensor kl = normal_kl(truth.mean, truth.log_variance, out.mean, out.log_variance).mean(dims) / std::log(2.0);
  Tensor nll = -discretized_gaussian_log_likelihood(x0, out.mean, 0.5 * out.log_variance).mean(dims) / std::log(2.0);
  Tensor first = (index.to(x0.device()) == 0);
  return torch::where(first, nll, kl);
}

LossTerms GaussianDiffusion::training_losses(const ModelFn& model, const Tensor& x0, const Tensor& index,
                                             const Tensor& noise) const {
  Tensor xt = q_sample(x0, index, noise);
  const LossKind kind = config_.loss_kind();
  LossTerms terms;
  if (kind == LossKind::kKl || kind == LossKind::kRescaledKl) {
    terms.loss = vb_terms_bpd(call_model(model, xt, index), x0, xt, index, false);
    if (kind == LossKind::kRescaledKl) terms.loss = terms.loss * static_cast<double>(num_steps());
    return terms;
  }
  Tensor output = call_model(model, xt, index);
  const int64_t C = x0.size(1);
  const VarType var_type = config_.var_type();
  if (var_type == VarType::kLearned || var_type == VarType::kLearnedRange) {
    TORCH_CHECK(output.size(1) == 2 * C, "training loss: learned variance needs ", 2 * C, " output channels");
    auto parts = output.split(C, 1);
    output = parts[0];
    // The variance learns through the bound, without letting it move the mean prediction.
    Tensor frozen = torch::cat({parts[0].detach(), parts[1]}, 1);
    terms.vb = vb_terms_bpd(frozen, x0, xt, index, false);
    if (kind == LossKind::kRescaledMse) terms.vb = terms.vb * (num_steps() / 1000.0);
  }
  Tensor target;
  switch (config_.mean_type()) {
    case MeanType::kEpsilon:
      target = noise;
      break;
    case MeanType::kStartX:
      target = x0;
      break;
    case MeanType::kPreviousX:
      target = q_posterior(x0, xt, index).mean;
      break;
  }
  std::vector<int64_t> dims;
  for (int64_t d = 1; d < x0.dim(); ++d) dims.push_back(d);
  terms.mse = (target - output).pow(2).mean(dims);
  terms.loss = terms.vb.defined() ? terms.mse + terms.vb : terms.mse;
  return terms;
}

}  // namespace iidm

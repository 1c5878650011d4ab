#include "train/distill.h"

#include "core/error.h"
#include "core/state_dict.h"
#include "diffusion/guidance.h"
#include "diffusion/schedule.h"
#include "pipeline/pipeline.h"

namespace iidm {
using torch::Tensor;

void DistillConfig::validate() const {
  if (teacher_steps < 2 || teacher_steps % 2) fail("distill: teacher_steps must be even and >= 2, got {}", teacher_steps);
  if (batch_size < 1 || iterations < 1) fail("distill: batch_size and iterations must be positive");
  if (!(guidance >= 0)) fail("distill: guidance must be >= 0, got {}", guidance);
}

Distiller::Distiller(ModelConfig model_config, DistillConfig config, TrainingData data, const std::string& teacher_weights)
    : model_config_(std::move(model_config)), config_(config), data_(std::move(data)), teacher_steps_(config.teacher_steps) {
  config_.validate();
  teacher_ = UNetModel(model_config_.unet);
  load_state_dict(*teacher_, teacher_weights);
  teacher_->eval();
  // Both chains must exist as uniform ddim respacings of the base chain.
  space_timesteps(model_config_.diffusion.steps, fmt::format("ddim{}", teacher_steps_));
  space_timesteps(model_config_.diffusion.steps, fmt::format("ddim{}", teacher_steps_ / 2));
}

namespace {
struct Chain {
  std::unique_ptr<GaussianDiffusion> d;
  Tensor alpha(const Tensor& index, const Tensor& like) const { return d->extract(d->t_sqrt_alphas_cumprod, index, like); }
  Tensor sigma(const Tensor& index, const Tensor& like) const {
    return d->extract(d->t_sqrt_one_minus_alphas_cumprod, index, like);
  }
};
Chain make_chain(const DiffusionConfig& base, int steps) {
  DiffusionConfig c = base;
  c.timestep_respacing = fmt::format("ddim{}", steps);
  return {std::make_unique<GaussianDiffusion>(c)};
}
}  // namespace

Tensor Distiller::loss(UNetModel& student, const Tensor& x0, const Tensor& y, const Tensor& index, const Tensor& noise) {
  const int64_t C = x0.size(1);
  const Chain teacher_chain = make_chain(model_config_.diffusion, teacher_steps_);
  const Chain student_chain = make_chain(model_config_.diffusion, teacher_steps_ / 2);
  // Student index i sits at the same timestep as teacher index 2i; one student step (i -> i-1)
  // spans two teacher steps (2i -> 2i-1 -> 2i-2). At i = 0 the teacher has one step to go.
  Tensor z = student_chain.d->q_sample(x0, index, noise);
  Tensor target;
  {
    torch::NoGradGuard no_grad;
    auto teacher_x0 = [&](const Tensor& x, const Tensor& t_index) {
      Tensor t = teacher_chain.d->model_timesteps(t_index);
      Tensor cond = teacher_->forward(x, t, y);
      Tensor out = config_.guidance == 1.0 ? cond
                                           : apply_guidance(cond, teacher_->forward(x, t, torch::zeros_like(y)), config_.guidance, C);
      return teacher_chain.d->predict_xstart_from_eps(x, t_index, out.narrow(1, 0, C));
    };
    Tensor ti = index * 2;
    Tensor x = z;
    for (int k = 0; k < 2; ++k) {
      Tensor active = (ti >= 0);  // at i = 0 only one teacher step remains
      Tensor ti_safe = ti.clamp_min(0);
      Tensor xhat = teacher_x0(x, ti_safe);
      Tensor a_prev = teacher_chain.d->extract(teacher_chain.d->t_alphas_cumprod_prev, ti_safe, x).sqrt();
      Tensor s_prev = (1 - a_prev.pow(2)).clamp_min(0).sqrt();
      Tensor eps = (x - teacher_chain.alpha(ti_safe, x) * xhat) / teacher_chain.sigma(ti_safe, x);
      Tensor next = a_prev * xhat + s_prev * eps;  // DDIM, eta 0
      x = torch::where(active.view({-1, 1, 1, 1}), next, x);
      ti = ti - 1;
    }
    // The x0 that takes the student from z_t to the teacher's z_{t''} in one DDIM step.
    Tensor a_t = student_chain.alpha(index, z), s_t = student_chain.sigma(index, z);
    Tensor a_pp = student_chain.d->extract(student_chain.d->t_alphas_cumprod_prev, index, z).sqrt();
    Tensor s_pp = (1 - a_pp.pow(2)).clamp_min(0).sqrt();
    Tensor ratio = s_pp / s_t;
    target = (x - ratio * z) / (a_pp - ratio * a_t);
  }
  Tensor t_student = student_chain.d->model_timesteps(index);
  Tensor eps = student->forward(z, t_student, y).narrow(1, 0, C);
  // The student predicts epsilon, so its x0 is (z - sigma eps) / alpha: at high noise (alpha ~ 0.04
  // at t = 800) an x0-space loss amplifies tiny eps errors ~25x and dominates training. Matching the
  // eps that yields the target x0 instead is the x0 loss weighted by SNR (Salimans & Ho's "SNR"
  // weighting), well defined here because respaced chains never reach SNR = 0.
  Tensor a = student_chain.alpha(index, z), s = student_chain.sigma(index, z);
  Tensor eps_target = (z - a * target) / s;
  return (eps - eps_target).pow(2).mean();
}

double Distiller::run_round(const std::function<void(int, int, double)>& progress) {
  UNetModel student(model_config_.unet);
  {
    torch::NoGradGuard no_grad;
    auto src = teacher_->parameters(), dst = student->parameters();
    for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
  }
  student->train();
  auto params = student->parameters();
  AdamW optimizer(params, config_.adam);
  Ema ema(params, config_.ema_decay, true);
  const int64_t B = config_.batch_size, N = data_.x0.size(0), K = teacher_steps_ / 2;
  double tail_sum = 0;
  int tail_count = 0;
  for (int it = 0; it < config_.iterations; ++it) {
    auto gen = at::detail::createCPUGenerator(derive_seed(config_.seed, fmt::format("distill:{}:{}", teacher_steps_, it)));
    Tensor idx = torch::randint(N, {B}, gen, torch::kInt64);
    Tensor x0 = data_.x0.index_select(0, idx);
    Tensor labels = data_.labels.index_select(0, idx).to(torch::kInt64);
    Tensor y = one_hot_labels(labels, model_config_.unet.num_labels());
    Tensor index = torch::randint(K, {B}, gen, torch::kInt64);
    Tensor noise = torch::randn(x0.sizes(), gen);
    optimizer.zero_grad();
    Tensor l = loss(student, x0, y, index, noise);
    l.backward();
    if (config_.grad_clip > 0) clip_grad_norm(params, config_.grad_clip);
    optimizer.step();
    ema.update(params);
    const double value = l.item<double>();
    if (it >= config_.iterations * 9 / 10) {
      tail_sum += value;
      ++tail_count;
    }
    if (progress) progress(it + 1, config_.iterations, value);
  }
  // The student's EMA becomes the next teacher.
  {
    torch::NoGradGuard no_grad;
    auto dst = teacher_->parameters();
    for (size_t i = 0; i < dst.size(); ++i) dst[i].copy_(ema.shadow()[i]);
  }
  teacher_steps_ /= 2;
  // Guidance is now inside the teacher: later rounds distil it as is.
  config_.guidance = 1.0;
  return tail_count ? tail_sum / tail_count : 0.0;
}

void Distiller::export_teacher(const std::string& path) const {
  save_state_dict(*teacher_, path, false,
                  {{"distilled_for", fmt::format("ddim{}", teacher_steps_)}, {"sample_with", "guidance 1"}});
}

}  // namespace iidm

#include "train/distill.h"

#include <cmath>

#include "core/error.h"
#include "core/labels.h"
#include "core/seed.h"
#include "core/state_dict.h"
#include "diffusion/sampler.h"
#include "pipeline/denoiser.h"
#include "train/checkpoint.h"

namespace iidm {
using torch::Tensor;

void DistillConfig::validate() const {
  if (teacher_steps < 2 || teacher_steps % 2)
    fail("distill: teacher_steps must be even and >= 2, got {}", teacher_steps);
  if (batch_size < 1 || iterations < 1) fail("distill: batch_size and iterations must be positive");
  if (!(guidance >= 0) || !std::isfinite(guidance)) fail("distill: guidance must be finite and >= 0, got {}", guidance);
}

Distiller::Distiller(ModelConfig model_config, DistillConfig config, TrainingData data,
                     const std::string& teacher_weights)
    : model_config_(std::move(model_config)), config_(config), data_(std::move(data)) {
  config_.validate();
  // The teacher is distilled as it is sampled. Salimans & Ho run it unclipped, but a pixel model is
  // sampled with clipping, and an unclipped teacher's x0 at high noise is far outside [-1, 1]: that
  // student landed 1.8 times further from its teacher than the teacher's own half-step samples in
  // tests/distill_test.cpp. With clipped teacher steps the one-step x0 target is a convex
  // combination of clipped x0s, so a clipped student can reach it exactly.
  clip_ = resolve_clip_denoised(config_.clip_denoised, model_config_.autoencoder.has_value());
  teacher_steps_ = config_.teacher_steps;
  prepare_round();
  teacher_ = UNetModel(model_config_.unet);
  load_state_dict(*teacher_, teacher_weights);
  teacher_->eval();
}

namespace {
std::unique_ptr<GaussianDiffusion> ddim_chain(const DiffusionConfig& diffusion, int steps) {
  DiffusionConfig c = diffusion;
  c.timestep_respacing = fmt::format("ddim{}", steps);
  return std::make_unique<GaussianDiffusion>(c);  // throws when the chain cannot be made
}

// Throws unless student index i sits at teacher index 2i (same timestep).
void check_halving(const GaussianDiffusion& teacher, const GaussianDiffusion& student) {
  const int steps = teacher.num_steps();
  // "ddimN" takes the smallest stride giving N steps, which is not always twice the student's
  // (T = 1000, N = 14: strides 72 and 143).
  for (int i = 0; i < student.num_steps(); ++i)
    if (student.timestep_map()[i] != teacher.timestep_map()[2 * i])
      fail("distill: ddim{} is not every other step of ddim{} (timestep {} vs {}); choose another teacher_steps",
           steps / 2, steps, student.timestep_map()[i], teacher.timestep_map()[2 * i]);
}
}  // namespace

void Distiller::check_rounds(const DiffusionConfig& diffusion, int teacher_steps, int rounds) {
  for (int r = 0, n = teacher_steps; r < rounds; ++r, n /= 2) {
    if (n < 2 || n % 2) fail("distill: round {} would start from ddim{}, which cannot be halved", r + 1, n);
    check_halving(*ddim_chain(diffusion, n), *ddim_chain(diffusion, n / 2));
  }
}

void Distiller::prepare_round() {
  if (teacher_chain_ && teacher_chain_->num_steps() == teacher_steps_) return;
  const int steps = teacher_steps_;
  if (steps < 2 || steps % 2) fail("distill: a ddim{} teacher cannot be halved", steps);
  auto teacher = ddim_chain(model_config_.diffusion, steps), student = ddim_chain(model_config_.diffusion, steps / 2);
  check_halving(*teacher, *student);
  teacher_chain_ = std::move(teacher);
  student_chain_ = std::move(student);
}

Tensor Distiller::teacher_target(const Tensor& z, const Tensor& y, const Tensor& index) {
  torch::NoGradGuard no_grad;
  prepare_round();
  const GaussianDiffusion& tc = *teacher_chain_;
  const int64_t K = student_chain_->num_steps();
  GuidanceOptions guidance;
  guidance.scale = config_.guidance;
  Denoiser teacher({{teacher_, 1.0}}, guidance, z.size(1));
  // Student index i spans teacher indices 2i -> 2i-1 -> 2i-2; at i = 0 both chains are at the base
  // chain's first timestep and one step lands on x0. The top is different: "ddimN" chains start one
  // stride below T, so the teacher's sampler starts at 2K-1, not at 2(K-1), and takes three steps
  // from the pure noise the student starts from to reach 2(K-2). Salimans & Ho's chains start at
  // SNR = 0, where the difference does not arise.
  Tensor ti = torch::where(index == K - 1, index * 2 + 1, index * 2);
  const Tensor last = (index * 2 - 1).clamp_min(0);  // each sample's last teacher index to step from
  Tensor x = z.clone();
  while (true) {
    // The batch's samples need different numbers of steps: run only those with steps left.
    const Tensor rows = (ti >= last).nonzero().view(-1);
    if (rows.numel() == 0) break;
    // The sampler's own DDIM step (eta 0), so the target is what sampling the teacher would give,
    // clipping included.
    const Tensor next = ddim_step(tc, teacher.bind(y.index_select(0, rows)), x.index_select(0, rows),
                                  ti.index_select(0, rows), clip_, 0.0, Tensor())
                            .sample;
    x.index_copy_(0, rows, next);
    ti = ti - 1;
  }
  return x;
}

Tensor Distiller::loss(UNetModel& student, const Tensor& x0, const Tensor& y, const Tensor& index,
                       const Tensor& noise) {
  prepare_round();
  const GaussianDiffusion& sc = *student_chain_;
  // The top step is only ever taken from pure noise (the sampler's start), so it is trained on that.
  const Tensor top = (index == sc.num_steps() - 1).view({-1, 1, 1, 1});
  const Tensor z = torch::where(top, noise, sc.q_sample(x0, index, noise));
  const Tensor target = teacher_target(z, y, index);
  // The student's DDIM step (eta 0) as the sampler takes it, differentiably.
  const Tensor out =
      sc.call_model([&](const Tensor& x, const Tensor& t) { return student->forward(x, t, y); }, z, index);
  Tensor xhat = sc.p_mean_variance(out, z, index, false).pred_xstart;
  // Clipping as the sampler does, with the gradient passed straight through: the student has to
  // match the target only up to what clipping hides (where the teacher's x0 saturates at +-1, any
  // x0 beyond it is as good), but still gets pulled back inside where it overshoots. Demanding the
  // exact x0 instead made the test's student 2.5 times further from its teacher than the teacher's
  // own half-step samples, not 0.8 times.
  if (clip_) xhat = xhat + (xhat.clamp(-1, 1) - xhat).detach();
  const Tensor eps = sc.predict_eps_from_xstart(z, index, xhat);
  const Tensor ac_prev = sc.extract(sc.t_alphas_cumprod_prev, index, z);
  const Tensor step = xhat * ac_prev.sqrt() + (1 - ac_prev).sqrt() * eps;
  // The squared distance between where one student step and the teacher's steps land. Salimans &
  // Ho write the loss as w * |xhat - x~|^2 with x~ the x0 that would land on the target; this is
  // w = (alpha'' - sigma'' alpha / sigma)^2, which keeps the top steps in play. Their weightings did
  // worse for an epsilon-predicting student in tests/distill_test.cpp (ddim10 -> ddim5; distance to
  // the teacher's ddim10 samples over its own ddim5 distance, lower is better: 0.80 here): SNR (the
  // epsilon error) 0.90, as it all but ignores the top step (SNR 0.0016 at t = 800 of 1000) whose
  // error every later step carries; truncated SNR, max(SNR, 1), 0.93: for an epsilon student the x0
  // error is the epsilon error / sqrt(SNR), so the top steps' gradients are magnified ~600 times.
  return (step - target).pow(2).mean();
}

double Distiller::run_round(const std::function<void(int, int, double)>& progress) {
  if (!in_round()) start_round();
  while (iteration_ < config_.iterations) {
    const double value = step();
    if (progress) progress(iteration_, config_.iterations, value);
  }
  return end_round();
}

void Distiller::start_round() {
  if (in_round()) fail("distill: a round is already in progress");
  prepare_round();
  student_ = UNetModel(model_config_.unet);
  {
    torch::NoGradGuard no_grad;
    auto src = teacher_->parameters(), dst = student_->parameters();
    for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
  }
  student_->train();
  params_ = student_->parameters();
  optimizer_ = std::make_unique<AdamW>(params_, config_.adam);
  ema_ = std::make_unique<Ema>(params_, config_.ema_decay, true);
  iteration_ = 0;
  tail_sum_ = 0;
  tail_count_ = 0;
}

double Distiller::step() {
  if (!in_round()) fail("distill: step() outside a round (call start_round first)");
  const int64_t B = config_.batch_size, N = data_.x0.size(0), K = teacher_steps_ / 2;
  const std::string key = fmt::format("distill:{}:{}", teacher_steps_, iteration_);
  auto gen = at::detail::createCPUGenerator(derive_seed(config_.seed, key));
  // Dropout (if any) draws from the global generator: seeded per iteration too, for exact resumes.
  torch::manual_seed(derive_seed(config_.seed, "dropout:" + key));
  Tensor idx = torch::randint(N, {B}, gen, torch::kInt64);
  Tensor x0 = data_.x0.index_select(0, idx);
  Tensor labels = data_.labels.index_select(0, idx).to(torch::kInt64);
  Tensor y = one_hot_labels(labels, model_config_.unet.num_labels());
  Tensor index = torch::randint(K, {B}, gen, torch::kInt64);
  Tensor noise = torch::randn(x0.sizes(), gen);
  optimizer_->zero_grad();
  Tensor l = loss(student_, x0, y, index, noise);
  l.backward();
  if (config_.grad_clip > 0) clip_grad_norm(params_, config_.grad_clip);
  optimizer_->step();
  ema_->update(params_);
  const double value = l.item<double>();
  if (iteration_ >= config_.iterations * 9 / 10) {
    tail_sum_ += value;
    ++tail_count_;
  }
  ++iteration_;
  return value;
}

double Distiller::end_round() {
  if (!in_round()) fail("distill: end_round() outside a round");
  // The student's EMA becomes the next teacher.
  {
    torch::NoGradGuard no_grad;
    auto dst = teacher_->parameters();
    for (size_t i = 0; i < dst.size(); ++i) dst[i].copy_(ema_->shadow()[i]);
  }
  // Guidance is now inside the teacher: later rounds distil it as is.
  config_.guidance = 1.0;
  teacher_steps_ /= 2;  // the next round's chains are made (and checked) when it starts
  clear_round();
  const double tail = tail_count_ ? tail_sum_ / tail_count_ : 0.0;
  iteration_ = 0;
  return tail;
}

void Distiller::clear_round() {
  student_ = UNetModel(nullptr);
  params_.clear();
  optimizer_.reset();
  ema_.reset();
}

int Distiller::rounds_done() const {
  int rounds = 0;
  for (int n = config_.teacher_steps; n > teacher_steps_; n /= 2) ++rounds;
  return rounds;
}

namespace {
constexpr const char* kDistillCheckpointFormat = "iidm-distill-checkpoint-1";
}

void Distiller::save_checkpoint(const std::string& path) const {
  CheckpointWriter w(kDistillCheckpointFormat);
  w.add_module("teacher.", *teacher_);
  if (in_round()) {
    const auto names = parameter_names(*student_);
    w.add_module("student.", *student_);
    w.add_ema("", names, *ema_);  // "ema." + name: beside, not under, "student."
    w.add_optimizer("", names, *optimizer_);
  }
  w.set("in_round", in_round() ? "1" : "0");
  w.set("iteration", std::to_string(iteration_));
  w.set("teacher_steps", std::to_string(teacher_steps_));
  w.set("first_teacher_steps", std::to_string(config_.teacher_steps));
  w.set("guidance", fmt::format("{}", config_.guidance));  // shortest exact decimal
  w.set("tail_sum", fmt::format("{}", tail_sum_));
  w.set("tail_count", std::to_string(tail_count_));
  w.set("seed", std::to_string(config_.seed));
  w.set("unet_config", model_config_.unet.to_json().dump());
  w.write(path);
}

void Distiller::resume(const std::string& path) {
  CheckpointReader r(path, kDistillCheckpointFormat);
  r.require_seed(config_.seed);
  if (r.meta_int("first_teacher_steps") != config_.teacher_steps)
    fail("{}: a distillation that started from ddim{}, not ddim{} (use the same --teacher-steps or another --out)",
         path, r.meta_int("first_teacher_steps"), config_.teacher_steps);
  if (r.meta("unet_config") != model_config_.unet.to_json().dump())
    fail("{}: a checkpoint of another U-Net configuration", path);
  const int64_t steps = r.meta_int("teacher_steps");
  if (steps < 1 || steps > config_.teacher_steps) fail("{}: damaged metadata (teacher_steps {})", path, steps);
  double guidance = 0, tail_sum = 0;
  try {
    guidance = std::stod(r.meta("guidance"));
    tail_sum = std::stod(r.meta("tail_sum"));
  } catch (const std::exception&) {
    fail("{}: damaged metadata (guidance '{}', tail_sum '{}')", path, r.meta("guidance"), r.meta("tail_sum"));
  }
  r.load_module("teacher.", *teacher_);
  teacher_steps_ = static_cast<int>(steps);
  config_.guidance = guidance;
  clear_round();
  if (r.meta_int("in_round")) {
    start_round();
    const auto names = parameter_names(*student_);
    r.load_module("student.", *student_);
    r.load_ema("", names, *ema_);
    r.load_optimizer("", names, *optimizer_);
    iteration_ = static_cast<int>(r.meta_int("iteration"));
    tail_sum_ = tail_sum;
    tail_count_ = static_cast<int>(r.meta_int("tail_count"));
  }
}

void Distiller::export_teacher(const std::string& path) const {
  save_state_dict(*teacher_, path, false,
                  {{"distilled_for", fmt::format("ddim{}", teacher_steps_)},
                   {"sample_with", fmt::format("guidance 1, clip_denoised {}", clip_ ? "true" : "false")}});
}

}  // namespace iidm

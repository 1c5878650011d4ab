// Gradient checks for the training losses: the autograd gradient against central finite
// differences (the five-point stencil, accurate to ~1e-12 here), in float64 on tiny inputs, entry
// by entry with a relative tolerance of 1e-6.
//
// What is covered, and what is not:
//  - the diffusion hybrid loss (GaussianDiffusion::training_losses) for every loss kind the
//    trainers can configure, with respect to the model output: the variance channels learn through
//    the bound, the mean channels through the mse only (the bound's pull on them is stopped, and the
//    test shows that the stop is real);
//  - the distillation loss (Distiller::loss) with respect to the student's last convolution. The
//    networks compute GroupNorm (and the U-Net its attention softmax) in float32 whatever the
//    parameters' dtype (core/norm.h), so only parameters downstream of the last normalisation see a
//    float64-exact function. Through the last convolution the check still covers all of the
//    loss's own maths (the student's DDIM step, the teacher's target, the squared distance); what
//    lies upstream is LibTorch's. The straight-through clipping (clip_denoised) is deliberately not
//    the true gradient and is left out here;
//  - the autoencoder's latent terms: DiagonalGaussian (moments clamp, reparameterised sample, KL to
//    N(0, I)) as the KL trainer combines them, and the VQ quantiser's straight-through estimator.
//    The autoencoder trainer's own formulas (L1 + weights, codebook/commitment, the hinge GAN loss
//    and LDM's adaptive weight) live inside AutoencoderTrainer::train_step and are not reachable
//    as functions, so they are not checked here;
//  - not the segmenter: its loss is LibTorch's cross_entropy, not project code.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "autoencoder/autoencoder.h"
#include "core/labels.h"
#include "diffusion/gaussian_diffusion.h"
#include "tiny_models.h"
#include "train/distill.h"

namespace iidm {
namespace {

using torch::Tensor;

constexpr double kTolerance = 1e-6;  // relative error allowed per entry

struct GradientComparison {
  double max_error = 0;        // max over the checked entries of the relative error
  double max_abs_numeric = 0;  // the largest finite-difference derivative seen
  int64_t entries = 0;         // how many entries were checked
  std::string worst;           // where the largest error is, for the failure message
};

// Compares `analytic[i]` (the autograd gradient of `loss` with respect to `inputs[i]`) with central
// differences of `loss` at up to `max_entries` entries of each input, spread evenly over it. The
// inputs are contiguous float64 tensors that `loss` reads; they are perturbed in place and restored.
// The five-point stencil's truncation error is step^4 / 30 times the fifth derivative (~3e-14 at
// 1e-3 for a function varying on a unit scale; steeper ones take a smaller step) and its roundoff
// ~1e-16 |loss| / step, where the two-point stencil at its best step leaves ~1e-10 |loss|: too
// coarse for 1e-6 on entries much smaller than the loss. An entry's error is
// |analytic - numeric| / max(|analytic|, |numeric|, floor), the floor being 1e-3 of the largest
// derivative seen, so that entries three orders smaller than the rest are compared at that scale
// instead of at their own roundoff.
GradientComparison compare_gradients(const std::function<Tensor()>& loss, const std::vector<Tensor>& inputs,
                                     const std::vector<Tensor>& analytic, int64_t max_entries = 48,
                                     double step = 1e-3) {
  torch::NoGradGuard no_grad;
  EXPECT_EQ(inputs.size(), analytic.size());
  struct Entry {
    size_t input;
    int64_t index;
    double analytic, numeric;
  };
  std::vector<Entry> entries;
  GradientComparison result;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    EXPECT_TRUE(x.scalar_type() == torch::kFloat64 && x.is_contiguous()) << "input " << i;
    EXPECT_TRUE(analytic[i].defined()) << "input " << i << " got no gradient";
    if (!analytic[i].defined()) continue;
    const Tensor grad = analytic[i].contiguous().view(-1);
    double* data = x.data_ptr<double>();
    const int64_t n = x.numel(), count = std::min(n, max_entries);
    for (int64_t k = 0; k < count; ++k) {
      const int64_t index = count == n ? k : k * (n - 1) / std::max<int64_t>(count - 1, 1);
      const double saved = data[index];
      auto at = [&](double offset) {
        data[index] = saved + offset;
        return loss().item<double>();
      };
      const double numeric = (8 * (at(step) - at(-step)) - (at(2 * step) - at(-2 * step))) / (12 * step);
      data[index] = saved;
      entries.push_back({i, index, grad[index].item<double>(), numeric});
      result.max_abs_numeric = std::max(result.max_abs_numeric, std::abs(numeric));
    }
  }
  const double floor = 1e-3 * result.max_abs_numeric;
  for (const Entry& e : entries) {
    const double scale = std::max({std::abs(e.analytic), std::abs(e.numeric), floor});
    const double error = scale > 0 ? std::abs(e.analytic - e.numeric) / scale : 0.0;
    if (error >= result.max_error) {
      result.max_error = error;
      result.worst = fmt::format("input {} entry {}: autograd {:.9e}, finite differences {:.9e}", e.input, e.index,
                                 e.analytic, e.numeric);
    }
  }
  result.entries = static_cast<int64_t>(entries.size());
  return result;
}

// The autograd gradients of `loss` with respect to `inputs` (leaves that require grad).
std::vector<Tensor> autograd_gradients(const std::function<Tensor()>& loss, const std::vector<Tensor>& inputs) {
  for (const Tensor& x : inputs)
    if (x.grad().defined()) x.mutable_grad().zero_();
  loss().backward();
  std::vector<Tensor> grads;
  for (const Tensor& x : inputs) grads.push_back(x.grad().defined() ? x.grad().clone() : Tensor());
  return grads;
}

// Asserts that autograd and finite differences agree, on a gradient that is not all zero.
void expect_gradients_match(const std::function<Tensor()>& loss, const std::vector<Tensor>& inputs,
                            const std::string& what, int64_t max_entries = 48, double step = 1e-3) {
  const GradientComparison c = compare_gradients(loss, inputs, autograd_gradients(loss, inputs), max_entries, step);
  EXPECT_GT(c.entries, 0) << what;
  EXPECT_GT(c.max_abs_numeric, 1e-8) << what << ": the loss does not depend on the inputs checked";
  EXPECT_LT(c.max_error, kTolerance) << what << ": worst at " << c.worst;
}

Tensor f64(const Tensor& t) { return t.to(torch::kFloat64); }

TEST(GradCheck, HelperAcceptsTheTrueGradientAndRejectsPerturbedOnes) {
  torch::manual_seed(0);
  const Tensor x = torch::randn({3, 4}, torch::kFloat64).requires_grad_();
  const Tensor w = torch::randn({4, 2}, torch::kFloat64).requires_grad_();
  auto loss = [&] { return (torch::sin(torch::matmul(x, w)) * x.sum(1, true)).pow(2).sum(); };
  const std::vector<Tensor> inputs{x, w};
  const std::vector<Tensor> grads = autograd_gradients(loss, inputs);
  const GradientComparison good = compare_gradients(loss, inputs, grads);
  EXPECT_EQ(good.entries, 12 + 8);
  EXPECT_LT(good.max_error, kTolerance) << good.worst;
  // The finite differences here are far more accurate than the tolerance: a real mismatch shows.
  EXPECT_LT(good.max_error, 1e-8) << good.worst;

  // One entry off by a relative 1e-5, and a gradient missing a factor: both must fail.
  std::vector<Tensor> off{grads[0].clone(), grads[1].clone()};
  off[1].view(-1)[5] *= 1 + 1e-5;
  EXPECT_GT(compare_gradients(loss, inputs, off).max_error, kTolerance);
  EXPECT_GT(compare_gradients(loss, inputs, {grads[0] * 0.5, grads[1]}).max_error, 0.1);
  // A stopped gradient (the detach a training loss may use on purpose) is caught as well.
  auto partly_stopped = [&] { return (torch::sin(torch::matmul(x.detach(), w)) * x.sum(1, true)).pow(2).sum(); };
  EXPECT_GT(compare_gradients(loss, {x}, autograd_gradients(partly_stopped, {x})).max_error, kTolerance);
}

// ---------------------------------------------------------------------------------------------
// The diffusion hybrid loss

struct LossCase {
  std::string name;
  DiffusionConfig config;
};

std::vector<LossCase> loss_cases() {
  DiffusionConfig hybrid;  // SDM / IIDM: epsilon, learned range, mse + vb
  DiffusionConfig rescaled = hybrid;
  rescaled.rescale_learned_sigmas = true;  // improved DDPM's vb * K / 1000
  rescaled.timestep_respacing = "250";
  DiffusionConfig xstart = hybrid;
  xstart.predict_xstart = true;
  xstart.noise_schedule = "cosine";
  DiffusionConfig kl = hybrid;
  kl.use_kl = true;  // the bound alone, rescaled by K
  DiffusionConfig fixed = hybrid;
  fixed.learn_sigma = false;  // mse only
  DiffusionConfig latent = hybrid;
  latent.noise_schedule = "ldm_linear";
  return {{"hybrid", hybrid}, {"rescaled", rescaled}, {"xstart", xstart},
          {"kl", kl},         {"fixed", fixed},       {"ldm_linear", latent}};
}

TEST(GradCheck, DiffusionHybridLoss) {
  for (const LossCase& c : loss_cases()) {
    SCOPED_TRACE(c.name);
    const GaussianDiffusion diffusion(c.config);
    const int64_t K = diffusion.num_steps(), N = 4, C = 2;
    torch::manual_seed(1);
    // Images in [-1, 1] with some pixels at the edges, where the decoder likelihood's outer bins apply.
    Tensor x0 = torch::rand({N, C, 3, 3}, torch::kFloat64) * 2 - 1;
    x0.view(-1)[0] = -1.0;
    x0.view(-1)[7] = 1.0;
    const Tensor noise = torch::randn({N, C, 3, 3}, torch::kFloat64);
    // Index 0 (the decoder's negative log-likelihood), 1, the middle and the top.
    const Tensor index = torch::tensor({int64_t{0}, int64_t{1}, K / 2, K - 1});
    const bool learned = c.config.learn_sigma;
    // The model's output as leaves: the mean channels, then the variance interpolation in [-1, 1].
    const Tensor mean_out = (noise + 0.3 * torch::randn_like(noise)).requires_grad_();
    const Tensor var_out = (torch::rand({N, C, 3, 3}, torch::kFloat64) * 1.6 - 0.8).requires_grad_();
    ModelFn model = [&](const Tensor& x, const Tensor&) {
      EXPECT_EQ(x.sizes(), x0.sizes());
      return learned ? torch::cat({mean_out, var_out}, 1) : mean_out;
    };
    auto terms = [&] { return diffusion.training_losses(model, x0, index, noise); };
    auto total = [&] { return terms().loss.sum(); };

    if (c.config.use_kl) {  // one bound for both halves, nothing stopped
      expect_gradients_match(total, {mean_out, var_out}, c.name);
      continue;
    }
    if (learned) {
      // The variance channels: the bound only, the mse does not see them.
      expect_gradients_match(total, {var_out}, c.name + " variance");
    }
    // The mean channels: autograd of the whole loss equals the finite differences of the mse term.
    const std::vector<Tensor> grads = autograd_gradients(total, {mean_out});
    auto mse = [&] { return terms().mse.sum(); };
    const GradientComparison of_mse = compare_gradients(mse, {mean_out}, grads);
    EXPECT_GT(of_mse.max_abs_numeric, 1e-8);
    EXPECT_LT(of_mse.max_error, kTolerance) << "mean channels: " << of_mse.worst;
    if (learned) {
      // ...and not those of the whole loss: the bound depends on the mean channels too, but its
      // gradient is stopped there. If the detach went missing, autograd would match these instead.
      const GradientComparison of_total = compare_gradients(total, {mean_out}, grads);
      EXPECT_GT(of_total.max_error, 1e-3) << "the bound's gradient reaches the mean channels";
    }
  }
}

// The vb term alone at fixed inputs, from both its arguments: the model output (mean from epsilon
// and learned-range variance) and x_start through the posterior (the decoder term uses x_start only
// to pick bins, so the check runs at indices >= 1).
TEST(GradCheck, VariationalBoundTerms) {
  DiffusionConfig config;
  const GaussianDiffusion diffusion(config);
  torch::manual_seed(2);
  const Tensor x0 = (torch::rand({3, 2, 2, 3}, torch::kFloat64) * 1.8 - 0.9).requires_grad_();
  const Tensor xt = torch::randn({3, 2, 2, 3}, torch::kFloat64);
  const Tensor out =
      torch::cat({torch::randn({3, 2, 2, 3}, torch::kFloat64), torch::rand({3, 2, 2, 3}, torch::kFloat64) * 2 - 1}, 1)
          .requires_grad_();
  const Tensor index = torch::tensor({int64_t{3}, int64_t{400}, int64_t{999}});
  auto vb = [&] { return diffusion.vb_terms_bpd(out, x0, xt, index, false).sum(); };
  expect_gradients_match(vb, {out, x0}, "vb");
  // normal_kl and the discretised likelihood on their own, with every argument free.
  const Tensor m1 = torch::randn({5}, torch::kFloat64).requires_grad_(),
               l1 = torch::randn({5}, torch::kFloat64).requires_grad_();
  const Tensor m2 = torch::randn({5}, torch::kFloat64).requires_grad_(),
               l2 = torch::randn({5}, torch::kFloat64).requires_grad_();
  expect_gradients_match([&] { return normal_kl(m1, l1, m2, l2).sum(); }, {m1, l1, m2, l2}, "normal_kl");
  // x is a quantised image (not a variable); means near it, scales around a bin's width. The
  // likelihood changes on the scale of the bins (1/255), so the step is a hundredth of the default.
  const Tensor x = torch::tensor({-1.0, -0.5, 0.0, 0.25, 1.0}, torch::kFloat64);
  const Tensor means = (x + 0.01 * torch::randn({5}, torch::kFloat64)).requires_grad_();
  const Tensor log_scales = (std::log(0.01) + 0.5 * torch::randn({5}, torch::kFloat64)).requires_grad_();
  expect_gradients_match([&] { return discretized_gaussian_log_likelihood(x, means, log_scales).sum(); },
                         {means, log_scales}, "discretized likelihood", 48, 1e-5);
}

// ---------------------------------------------------------------------------------------------
// The distillation loss

TEST(GradCheck, DistillationLoss) {
  // A one-level U-Net without attention keeps the many loss evaluations cheap.
  test::TempDir dir;
  const std::string config_path = dir.file("tiny.json");
  std::ofstream(config_path) << R"({"unet": {"in_channels": 3, "model_channels": 32, "out_channels": 6,
    "num_res_blocks": 1, "attention_resolutions": [], "channel_mult": [1], "num_classes": 29},
    "diffusion": {"steps": 1000, "noise_schedule": "linear", "learn_sigma": true}})";
  const ModelConfig config = ModelConfig::from_file(config_path);
  torch::manual_seed(3);
  UNetModel teacher(config.unet), student(config.unet);
  test::randomize(*teacher);
  test::randomize(*student);
  save_state_dict(*teacher, dir.file("teacher.safetensors"));
  DistillConfig dc;
  dc.teacher_steps = 8;  // the student's chain: ddim4
  dc.clip_denoised = ClipDenoised::kNever;
  // Guidance 1 (the default) calls the teacher once per step: the target is a constant of the
  // gradient either way.
  // The data set is only drawn from by step(); loss() takes its batch as arguments.
  const TrainingData data{torch::zeros({1, 3, 4, 4}), torch::zeros({1, 4, 4}, torch::kUInt8)};
  Distiller distiller(config, dc, data, dir.file("teacher.safetensors"));
  distiller.teacher()->to(torch::kFloat64);
  student->to(torch::kFloat64);
  student->eval();

  const int64_t B = 3;
  const Tensor x0 = torch::rand({B, 3, 4, 4}, torch::kFloat64) * 2 - 1;
  const Tensor labels = torch::randint(29, {B, 4, 4}, torch::kInt64);
  const Tensor y = f64(one_hot_labels(labels, config.unet.num_labels()));
  const Tensor noise = torch::randn({B, 3, 4, 4}, torch::kFloat64);
  const Tensor index = torch::tensor({int64_t{0}, int64_t{1}, int64_t{3}});  // the last: the top, from pure noise
  auto loss = [&] { return distiller.loss(student, x0, y, index, noise); };

  auto params = student->named_parameters();
  const Tensor weight = params["out.2.weight"], bias = params["out.2.bias"];
  for (auto& p : student->parameters()) p.set_requires_grad(false);
  weight.set_requires_grad(true);
  bias.set_requires_grad(true);
  // The bias's six entries (three epsilon channels, three variance channels that DDIM ignores: zero
  // both ways) and 12 of the weight's, spread over all channels.
  expect_gradients_match(loss, {weight, bias}, "distillation", 12);
}

// ---------------------------------------------------------------------------------------------
// The autoencoder's latent terms

// The KL trainer's regularised reconstruction, on the latent: sum |target - sample| / B +
// w * KL / B with the posterior from quant_conv's moments (logvar clamped to [-30, 20]).
TEST(GradCheck, AutoencoderKlPosterior) {
  torch::manual_seed(4);
  const int64_t B = 2;
  Tensor moments = torch::randn({B, 6, 3, 3}, torch::kFloat64);
  moments.narrow(1, 3, 3).mul_(2.0);
  moments.view(-1)[B * 6 * 9 - 1] = -35.0;  // a clamped log-variance: no gradient, by either measure
  moments.requires_grad_();
  const Tensor target = torch::randn({B, 3, 3, 3}, torch::kFloat64);
  const double kl_weight = 0.3;
  auto loss = [&] {
    const DiagonalGaussian posterior = DiagonalGaussian::from_moments(moments);
    // The same draw every call: the reparameterised sample is a function of the moments.
    auto gen = at::detail::createCPUGenerator(7);
    const Tensor z = posterior.sample(gen);
    return (target - z).abs().sum() / B + kl_weight * posterior.kl().sum() / B;
  };
  expect_gradients_match(loss, {moments}, "KL posterior", 2 * 6 * 9);
  expect_gradients_match([&] { return DiagonalGaussian::from_moments(moments).kl().sum(); }, {moments}, "KL alone",
                         2 * 6 * 9);
}

// VectorQuantizer's straight-through estimator: the quantised output is piecewise constant in z
// (finite differences see zero), and the gradient passes to z as if quantisation were the identity,
// i.e. it equals the derivative of the downstream loss at the quantised point.
TEST(GradCheck, VectorQuantizerStraightThrough) {
  torch::manual_seed(5);
  VectorQuantizer quantizer(8, 3);
  quantizer->to(torch::kFloat64);
  const Tensor z = (0.2 * torch::randn({2, 3, 2, 2}, torch::kFloat64)).requires_grad_();
  const Tensor w = torch::randn({2, 3, 2, 2}, torch::kFloat64);
  auto downstream = [&](const Tensor& v) { return (w * v.pow(2) + torch::sin(v)).sum(); };
  const Tensor zq = quantizer->forward(z).z_q;
  const Tensor grad_z = torch::autograd::grad({downstream(zq)}, {z})[0];
  // The derivative of the downstream loss at zq, by finite differences on a free copy of zq.
  const Tensor at_zq = zq.detach().clone().requires_grad_();
  expect_gradients_match([&] { return downstream(at_zq); }, {at_zq}, "downstream at zq");
  const GradientComparison st = compare_gradients([&] { return downstream(at_zq); }, {at_zq}, {grad_z});
  EXPECT_LT(st.max_error, kTolerance) << st.worst;
  // Through the quantiser itself, finite differences see (almost everywhere) no change at all.
  {
    torch::NoGradGuard no_grad;
    const Tensor moved = z + 1e-6;
    EXPECT_TRUE(torch::equal(quantizer->forward(moved).indices, quantizer->forward(z).indices));
  }
  // The codebook gets no gradient through the straight-through output (the trainer's codebook term
  // reaches it instead).
  const Tensor codebook_grad =
      torch::autograd::grad({downstream(quantizer->forward(z).z_q)}, {quantizer->embedding->weight},
                            /*grad_outputs=*/{}, /*retain_graph=*/c10::nullopt,
                            /*create_graph=*/false, /*allow_unused=*/true)[0];
  EXPECT_FALSE(codebook_grad.defined());
}

}  // namespace
}  // namespace iidm

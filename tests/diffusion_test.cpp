// Diffusion math on numbers small enough to check by hand, oracle denoisers whose exact answer is
// known, and the gradient routing of the hybrid loss.
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "diffusion/gaussian_diffusion.h"
#include "diffusion/guidance.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"
#include "test_util.h"

namespace iidm {
namespace {

TEST(Schedule, LinearEndpointsAndLength) {
  auto b = guided_beta_schedule("linear", 1000);
  ASSERT_EQ(b.size(), 1000u);
  EXPECT_DOUBLE_EQ(b.front(), 1e-4);
  EXPECT_DOUBLE_EQ(b.back(), 0.02);
  auto b250 = guided_beta_schedule("linear", 250);  // scaled by 1000/T
  EXPECT_DOUBLE_EQ(b250.front(), 4e-4);
  EXPECT_DOUBLE_EQ(b250.back(), 0.08);
  auto cosine = guided_beta_schedule("cosine", 1000);
  EXPECT_LE(*std::max_element(cosine.begin(), cosine.end()), 0.999);
  EXPECT_THROW(guided_beta_schedule("square", 10), Error);
}

TEST(Schedule, RespacingByHand) {
  EXPECT_EQ(space_timesteps(1000, "ddim10"), (std::vector<int>{0, 100, 200, 300, 400, 500, 600, 700, 800, 900}));
  EXPECT_EQ(space_timesteps(10, "3"), (std::vector<int>{0, 4, 9}));  // stride 4.5: round(4.5) = 4 (half to even)
  EXPECT_EQ(space_timesteps(10, "2,2"), (std::vector<int>{0, 4, 5, 9}));
  EXPECT_EQ(space_timesteps(5, "").size(), 5u);
  EXPECT_THROW(space_timesteps(10, "11"), Error);
  EXPECT_THROW(space_timesteps(10, "a,b"), Error);
  EXPECT_THROW(space_timesteps(1000, "ddim600"), Error);
}

DiffusionConfig config(const std::string& respacing, bool learn_sigma = false) {
  DiffusionConfig c;
  c.timestep_respacing = respacing;
  c.learn_sigma = learn_sigma;
  return c;
}

TEST(GaussianDiffusion, RespacedTablesKeepCumulativeAlphas) {
  GaussianDiffusion full(config("")), spaced(config("ddim10"));
  ASSERT_EQ(spaced.num_steps(), 10);
  for (int i = 0; i < 10; ++i)
    EXPECT_NEAR(spaced.alphas_cumprod()[i], full.alphas_cumprod()[spaced.timestep_map()[i]], 1e-15);
  EXPECT_EQ(spaced.alphas_cumprod_prev()[0], 1.0);
  // The model sees the original timesteps.
  auto t = spaced.model_timesteps(torch::tensor({0, 3, 9}, torch::kInt64));
  EXPECT_EQ(t[1].item<int64_t>(), 300);
  EXPECT_EQ(t[2].item<int64_t>(), 900);
}

// An oracle that knows x0: it returns the exact noise of x_t = sqrt(ab) x0 + sqrt(1 - ab) eps.
ModelFn oracle(const GaussianDiffusion& d, const torch::Tensor& x0) {
  return [&d, x0](const torch::Tensor& x, const torch::Tensor& model_t) {
    // Invert the map from model timesteps back to chain indices.
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < model_t.size(0); ++i) {
      const auto& map = d.timestep_map();
      idx.push_back(std::find(map.begin(), map.end(), model_t[i].item<int64_t>()) - map.begin());
    }
    torch::Tensor index = torch::tensor(idx, torch::kInt64);
    torch::Tensor ab = d.extract(d.t_alphas_cumprod, index, x);
    return (x - torch::sqrt(ab) * x0) / torch::sqrt(1 - ab);
  };
}

TEST(Samplers, DdimWithAnOracleRecoversTheData) {
  torch::manual_seed(0);
  GaussianDiffusion d(config("ddim25"));
  torch::Tensor x0 = torch::rand({2, 3, 8, 8}) * 1.6 - 0.8;
  SampleOptions options;
  torch::Tensor out = make_sampler("ddim")->sample(d, oracle(d, x0), torch::randn({2, 3, 8, 8}), options);
  EXPECT_LT((out - x0).abs().max().item<double>(), 1e-4);
}

TEST(Samplers, DdpmWithAnOracleEndsAtTheData) {
  torch::manual_seed(0);
  GaussianDiffusion d(config("50"));
  torch::Tensor x0 = torch::rand({1, 3, 8, 8}) * 1.6 - 0.8;
  SampleOptions options;
  options.generators = {at::detail::createCPUGenerator(7)};
  torch::Tensor out = make_sampler("ddpm")->sample(d, oracle(d, x0), torch::randn({1, 3, 8, 8}), options);
  // The last step adds no noise and the posterior mean at index 0 is x0 itself.
  EXPECT_LT((out - x0).abs().max().item<double>(), 1e-4);
}

TEST(Samplers, OneDdimStepByHand) {
  GaussianDiffusion d(config("ddim10"));
  // eps = 0 everywhere: x0_pred = x / sqrt(ab); the step moves to sqrt(ab_prev) * x0_pred.
  ModelFn zero = [](const torch::Tensor& x, const torch::Tensor&) { return torch::zeros_like(x); };
  torch::Tensor x = torch::full({1, 1, 1, 1}, 0.5f);
  auto index = torch::tensor({5}, torch::kInt64);
  auto step = ddim_step(d, zero, x, index, false, 0.0, {});
  const double ab = d.alphas_cumprod()[5], abp = d.alphas_cumprod_prev()[5];
  EXPECT_NEAR(step.pred_xstart.item<double>(), 0.5 / std::sqrt(ab), 1e-6);
  EXPECT_NEAR(step.sample.item<double>(), std::sqrt(abp) * 0.5 / std::sqrt(ab), 1e-6);
}

TEST(Samplers, FirstIndexAndHooksAreHonoured) {
  GaussianDiffusion d(config("ddim10"));
  std::vector<int64_t> seen;
  ModelFn record = [&](const torch::Tensor& x, const torch::Tensor& t) {
    seen.push_back(t[0].item<int64_t>());
    return torch::zeros_like(x);
  };
  SampleOptions options;
  options.first_index = 3;
  int hooks = 0;
  options.after_step = [&](const torch::Tensor& s, int) {
    ++hooks;
    return s;
  };
  make_sampler("ddim")->sample(d, record, torch::zeros({1, 1, 2, 2}), options);
  EXPECT_EQ(seen, (std::vector<int64_t>{300, 200, 100, 0}));
  EXPECT_EQ(hooks, 4);
  EXPECT_THROW(make_sampler("euler"), Error);
}

TEST(Guidance, OnlyThePredictionChannelsAreGuided) {
  torch::Tensor cond = torch::ones({1, 6, 2, 2}), uncond = torch::zeros({1, 6, 2, 2});
  torch::Tensor g = apply_guidance(cond, uncond, 3.0, 3);
  EXPECT_TRUE(torch::allclose(g.narrow(1, 0, 3), torch::full({1, 3, 2, 2}, 3.0f)));
  EXPECT_TRUE(torch::equal(g.narrow(1, 3, 3), cond.narrow(1, 3, 3)));  // variance from the conditional pass
  // A 4-channel latent is guided on 4 channels, not a hard-coded 3.
  torch::Tensor g4 = apply_guidance(torch::ones({1, 8, 1, 1}), torch::zeros({1, 8, 1, 1}), 2.0, 4);
  EXPECT_FLOAT_EQ(g4[0][3][0][0].item<float>(), 2.0f);
  EXPECT_FLOAT_EQ(g4[0][4][0][0].item<float>(), 1.0f);
}

TEST(Losses, HybridLossRoutesGradients) {
  torch::manual_seed(0);
  GaussianDiffusion d(config("", true));
  torch::Tensor x0 = torch::rand({2, 3, 4, 4}) * 2 - 1, noise = torch::randn({2, 3, 4, 4});
  torch::Tensor output = torch::randn({2, 6, 4, 4}, torch::requires_grad());
  ModelFn model = [&](const torch::Tensor&, const torch::Tensor&) { return output * 1.0; };
  auto index = torch::tensor({0, 500}, torch::kInt64);
  LossTerms terms = d.training_losses(model, x0, index, noise);
  // The mse term only sees the mean channels...
  auto g_mse = torch::autograd::grad({terms.mse.sum()}, {output}, {}, true)[0];
  EXPECT_GT(g_mse.narrow(1, 0, 3).abs().sum().item<double>(), 0);
  EXPECT_EQ(g_mse.narrow(1, 3, 3).abs().sum().item<double>(), 0);
  // ...and the vb term only the variance channels (the mean is stopped).
  auto g_vb = torch::autograd::grad({terms.vb.sum()}, {output}, {}, true)[0];
  EXPECT_EQ(g_vb.narrow(1, 0, 3).abs().sum().item<double>(), 0);
  EXPECT_GT(g_vb.narrow(1, 3, 3).abs().sum().item<double>(), 0);
  EXPECT_TRUE(torch::allclose(terms.loss, terms.mse + terms.vb));
  // With the true noise as the prediction the mse is zero.
  ModelFn perfect = [&](const torch::Tensor&, const torch::Tensor&) {
    return torch::cat({noise, torch::zeros_like(noise)}, 1);
  };
  EXPECT_LT(d.training_losses(perfect, x0, index, noise).mse.abs().max().item<double>(), 1e-12);
}

TEST(Losses, KlOfIdenticalGaussiansIsZero) {
  torch::manual_seed(0);  // LibTorch seeds its default generator nondeterministically
  torch::Tensor m = torch::randn({64}), lv = torch::randn({64});
  // 0.5 (-1 + lv - lv + exp(0) + 0) sums terms of order 1 in float32: zero to a few ulps of 1
  // (2^-23 = 1.19e-7 was seen), not to 1e-7.
  EXPECT_LE(normal_kl(m, lv, m, lv).abs().max().item<double>(), 4 * std::numeric_limits<float>::epsilon());
  // The discretised likelihood of a sharp Gaussian centred on the pixel is close to 1.
  torch::Tensor x = torch::tensor({0.0f});
  EXPECT_NEAR(discretized_gaussian_log_likelihood(x, x, torch::tensor({-8.0f})).item<double>(), 0.0, 1e-6);
}

}  // namespace
}  // namespace iidm

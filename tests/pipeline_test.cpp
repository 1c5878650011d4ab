// Denoiser plug-ins on tiny random models: batched guidance equals the references' two passes,
// a per-step ensemble of identical models equals one model, parameter averaging is the weighted
// mean; DPM-Solver++ recovers the data under an oracle.
#include <torch/torch.h>

#include "core/labels.h"
#include "core/safetensors.h"
#include "core/state_dict.h"
#include "diffusion/sampler.h"
#include "pipeline/denoiser.h"
#include "pipeline/ensemble.h"
#include "test_util.h"
#include "tiny_models.h"

namespace iidm {
namespace {

UNetModel random_unet(uint64_t seed) {
  torch::manual_seed(seed);
  UNetConfig c = test::tiny_unet_config();
  UNetModel model(c);
  test::randomize(*model);
  model->eval();
  return model;
}

struct Inputs {
  torch::Tensor x, t, y;
};
Inputs inputs() {
  torch::manual_seed(11);
  return {torch::randn({2, 3, 8, 8}), torch::tensor({100, 700}, torch::kInt64),
          one_hot_labels(torch::randint(0, 4, {2, 8, 8}), 4)};
}

TEST(Denoiser, BatchedGuidanceEqualsTwoPasses) {
  UNetModel model = random_unet(1);
  auto in = inputs();
  Denoiser batched({{model, 1.0}}, {3.5, true}, 3), two_pass({{model, 1.0}}, {3.5, false}, 3);
  torch::Tensor a = batched(in.x, in.t, in.y), b = two_pass(in.x, in.t, in.y);
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-5 * std::max(1.0, b.abs().max().item<double>()));
  // And both equal the formula on explicit passes.
  torch::NoGradGuard no_grad;
  torch::Tensor cond = model->forward(in.x, in.t, in.y), uncond = model->forward(in.x, in.t, torch::zeros_like(in.y));
  torch::Tensor expected = cond.clone();
  expected.narrow(1, 0, 3).copy_(uncond.narrow(1, 0, 3) + 3.5 * (cond.narrow(1, 0, 3) - uncond.narrow(1, 0, 3)));
  EXPECT_LT((b - expected).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(batched.forwards_per_call(), 2);
  EXPECT_EQ(Denoiser({{model, 1.0}}, {1.0, true}, 3).forwards_per_call(), 1);
}

TEST(Denoiser, EnsembleOfIdenticalModelsEqualsOneModel) {
  UNetModel a = random_unet(2), copy = random_unet(99);
  test::TempDir dir;
  save_state_dict(*a, dir.file("a.safetensors"));
  load_state_dict(*copy, dir.file("a.safetensors"));
  auto in = inputs();
  Denoiser one({{a, 1.0}}, {2.0, true}, 3), two({{a, 0.3}, {copy, 0.7}}, {2.0, true}, 3);
  EXPECT_LT((one(in.x, in.t, in.y) - two(in.x, in.t, in.y)).abs().max().item<double>(), 1e-5);
  // Different models: the output is the weighted mean of the members' guided outputs.
  UNetModel b = random_unet(3);
  Denoiser da({{a, 1.0}}, {2.0, true}, 3), db({{b, 1.0}}, {2.0, true}, 3), mix({{a, 1.0}, {b, 3.0}}, {2.0, true}, 3);
  torch::Tensor expected = 0.25 * da(in.x, in.t, in.y) + 0.75 * db(in.x, in.t, in.y);
  EXPECT_LT((mix(in.x, in.t, in.y) - expected).abs().max().item<double>(), 1e-5);
  test::expect_error([&] { Denoiser({{a, 0.0}}, {1.0, true}, 3); }, {"sum to zero"});
}

TEST(Ensemble, AverageIsTheWeightedMean) {
  test::TempDir dir;
  UNetModel a = random_unet(4), b = random_unet(5);
  save_state_dict(*a, dir.file("a.safetensors"));
  save_state_dict(*b, dir.file("b.safetensors"));
  average_checkpoints({dir.file("a.safetensors"), dir.file("b.safetensors")}, {1.0, 3.0}, dir.file("avg.safetensors"));
  auto avg = SafeTensorsFile::open(dir.file("avg.safetensors"));
  auto sa = state_dict(*a), sb = state_dict(*b);
  for (size_t i = 0; i < sa.size(); ++i) {
    torch::Tensor expected =
        (0.25 * sa[i].second.to(torch::kFloat64) + 0.75 * sb[i].second.to(torch::kFloat64)).to(torch::kFloat32);
    EXPECT_TRUE(torch::equal(avg.tensor(sa[i].first), expected)) << sa[i].first;
  }
  // Mismatched checkpoints are refused and nothing is written.
  UNetConfig other = a->config();
  other.model_channels = 64;
  UNetModel c(other);
  save_state_dict(*c, dir.file("c.safetensors"));
  test::expect_error(
      [&] {
        average_checkpoints({dir.file("a.safetensors"), dir.file("c.safetensors")}, {}, dir.file("bad.safetensors"));
      },
      {"shape", dir.file("c.safetensors")});
  EXPECT_FALSE(std::filesystem::exists(dir.file("bad.safetensors")));
}

TEST(Samplers, DpmSolverWithAnOracleRecoversTheData) {
  DiffusionConfig config;
  config.learn_sigma = false;
  config.timestep_respacing = "ddim10";
  GaussianDiffusion d(config);
  torch::manual_seed(0);
  torch::Tensor x0 = torch::rand({1, 3, 8, 8}) * 1.6 - 0.8;
  ModelFn oracle = [&](const torch::Tensor& x, const torch::Tensor& model_t) {
    const auto& map = d.timestep_map();
    const int64_t i = std::find(map.begin(), map.end(), model_t[0].item<int64_t>()) - map.begin();
    const double ab = d.alphas_cumprod()[i];
    return (x - std::sqrt(ab) * x0) / std::sqrt(1 - ab);
  };
  int calls = 0;
  SampleOptions options;
  options.on_progress = [&](int, int) { ++calls; };
  torch::Tensor out = make_sampler("dpm++2m")->sample(d, oracle, torch::randn({1, 3, 8, 8}), options);
  EXPECT_LT((out - x0).abs().max().item<double>(), 1e-4);
  EXPECT_EQ(calls, 10);
}

}  // namespace
}  // namespace iidm

// Tier 1: every reference case in ../shared/parity must pass with the project's own code, at one
// and at two threads (results must not depend on the thread count).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "core/config.h"
#include "core/safetensors.h"
#include "core/state_dict.h"
#include "diffusion/gaussian_diffusion.h"
#include "diffusion/sampler.h"
#include "parity/parity.h"
#include "pipeline/denoiser.h"
#include "unet/unet.h"

namespace fs = std::filesystem;
using torch::Tensor;

namespace {

std::vector<std::string> parity_cases() {
  std::vector<std::string> cases;
  if (!fs::exists(IIDM_PARITY_DIR)) return cases;
  for (const auto& entry : fs::directory_iterator(IIDM_PARITY_DIR))
    if (entry.is_directory() && fs::exists(entry.path() / "config.json")) cases.push_back(entry.path().filename());
  std::sort(cases.begin(), cases.end());
  return cases;
}

// Every case at 1 and at 2 threads, except `keys` cases: they compare state-dict names and shapes,
// which no thread count can change, and building their full-size models takes ~25 s each.
std::vector<std::tuple<std::string, int>> parity_runs() {
  std::vector<std::tuple<std::string, int>> runs;
  for (const auto& name : parity_cases()) {
    const auto config = iidm::read_json_file((fs::path(IIDM_PARITY_DIR) / name / "config.json").string());
    const bool keys = config.value("kind", "") == "keys";
    for (int threads : {1, 2})
      if (!keys || threads == 1) runs.emplace_back(name, threads);
  }
  return runs;
}

class Threads {
 public:
  explicit Threads(int n) : saved_(torch::get_num_threads()) { torch::set_num_threads(n); }
  ~Threads() { torch::set_num_threads(saved_); }

 private:
  int saved_;
};

class ParityCase : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(ParityCase, MatchesReference) {
  const auto& [name, threads] = GetParam();
  Threads use(threads);
  const auto result = iidm::run_parity_case((fs::path(IIDM_PARITY_DIR) / name).string());
  ASSERT_TRUE(result.error.empty()) << result.error;
  ASSERT_FALSE(result.checks.empty());
  for (const auto& check : result.checks)
    EXPECT_TRUE(check.passed) << check.name << ": max|err| " << check.max_error << " > tol " << check.tolerance << " "
                              << check.detail;
}

INSTANTIATE_TEST_SUITE_P(Shared, ParityCase, ::testing::ValuesIn(parity_runs()), [](const auto& info) {
  return std::get<0>(info.param) + "_threads" + std::to_string(std::get<1>(info.param));
});

TEST(ParityCases, ArePresent) {
  // Without the cases the suite would prove nothing about checkpoint compatibility.
  EXPECT_GE(parity_cases().size(), 12u) << "parity cases not found at " << IIDM_PARITY_DIR;
}

TEST(ParityTolerance, PerItemToleranceFollowsTheContract) {
  // 1e-4 * max(1, sqrt(1/a - 1)) * max(1, 2s - 1): a = 1/3722 gives sqrt(3721) = 61.
  std::vector<std::string> notes;
  const auto tol = iidm::pred_xstart_tolerances({1.0 / 3722.0, 0.9, 1.0}, 1.5, &notes);
  ASSERT_EQ(tol.size(), 3u);
  EXPECT_NEAR(tol[0], 1e-4 * 61 * 2, 1e-12);
  EXPECT_NEAR(tol[1], 1e-4 * 2, 1e-12);  // sqrt(1/0.9 - 1) = 0.33 < 1
  EXPECT_NEAR(tol[2], 1e-4 * 2, 1e-12);
  EXPECT_NEAR(iidm::pred_xstart_tolerances({0.5}, 0.5)[0], 1e-4, 1e-15);  // both factors at least 1
  ASSERT_EQ(notes.size(), 3u);

  // Each item is held to its own tolerance (times max(1, max|ref_n|)).
  const Tensor ref = torch::tensor({{0.0, 3.0}, {0.0, 0.5}}, torch::kFloat64);
  const Tensor ours = ref + torch::tensor({{0.0, 2.5e-4}, {0.0, 1.5e-4}}, torch::kFloat64);
  EXPECT_TRUE(iidm::compare_per_item("x", ours, ref, {1e-4, 2e-4}).passed);   // 2.5e-4 <= 3e-4, 1.5e-4 <= 2e-4
  EXPECT_FALSE(iidm::compare_per_item("x", ours, ref, {1e-4, 1e-4}).passed);  // item 1: 1.5e-4 > 1e-4
  const auto check = iidm::compare_per_item("x", ours, ref, {1e-4, 1e-4});
  EXPECT_NEAR(check.max_error, 1.5e-4, 1e-12);  // the failing item stands for the check
  EXPECT_NEAR(check.tolerance, 1e-4, 1e-12);
  EXPECT_FALSE(iidm::compare_per_item("x", ours, ref, {1e-4}).passed);  // one tolerance per item
  EXPECT_FALSE(iidm::compare_per_item("x", ours * std::nan(""), ref, {1, 1}).passed);
}

// The scaled tolerance must still catch a wrong x0 formula: run a_diffusion's ancestral step
// through the Denoiser, form x0 from the guided eps correctly and wrongly, and hold each to the
// contract with the case's own tables.
TEST(ParityTolerance, WrongXStartFormulasStillFailTheDiffusionCase) {
  const fs::path dir = fs::path(IIDM_PARITY_DIR) / "a_diffusion";
  if (!fs::exists(dir)) GTEST_SKIP() << "no a_diffusion case at " << dir;
  iidm::Json config = iidm::read_json_file((dir / "config.json").string());
  const fs::path unet_dir = dir.parent_path() / config.at("unet_case").get<std::string>();
  const double scale = config.at("guidance_scale").get<double>();
  ASSERT_GT(scale, 1.0);
  iidm::Json unet_json = iidm::read_json_file((unet_dir / "config.json").string());
  unet_json.erase("kind");
  unet_json.erase("note");
  iidm::ConfigReader unet_reader(unet_json, "a_unet");
  iidm::UNetModel model(iidm::UNetConfig::from_json(unet_reader));
  iidm::load_state_dict(*model, (unet_dir / "weights.safetensors").string());
  model->eval();
  for (const char* key : {"kind", "note", "unet_case", "guidance_scale"}) config.erase(key);
  iidm::ConfigReader reader(config, "a_diffusion");
  iidm::GaussianDiffusion diffusion(iidm::DiffusionConfig::from_json(reader));

  const auto io = iidm::SafeTensorsFile::open((dir / "io.safetensors").string());
  const Tensor x = io.tensor("pstep_x_t"), index = io.tensor("pstep_t_index"), y = io.tensor("y");
  const Tensor expected = io.tensor("pstep_pred_xstart"), tables = io.tensor("alphas_cumprod");
  std::vector<double> a;
  for (int64_t n = 0; n < index.size(0); ++n) a.push_back(tables[index[n].item<int64_t>()].item<double>());
  const auto tolerances = iidm::pred_xstart_tolerances(a, scale);

  torch::NoGradGuard no_grad;
  const int64_t C = model->config().in_channels;
  iidm::Denoiser guided({{model, 1.0}}, iidm::GuidanceOptions{scale, true}, C);
  iidm::Denoiser conditional({{model, 1.0}}, iidm::GuidanceOptions{1.0, true}, C);
  const Tensor eps = diffusion.call_model(guided.bind(y), x, index).narrow(1, 0, C);
  const Tensor a_n = torch::tensor(a, torch::kFloat64).to(torch::kFloat32).view({-1, 1, 1, 1});
  auto check = [&](const Tensor& x0) {
    return iidm::compare_per_item("pstep_pred_xstart", x0.clamp(-1, 1), expected, tolerances);
  };

  // The right formula passes, so the failures below are the formulas' doing.
  const Tensor right = (x - torch::sqrt(1 - a_n) * eps) / torch::sqrt(a_n);
  EXPECT_TRUE(check(right).passed) << check(right).detail;
  EXPECT_TRUE(check(diffusion.predict_xstart_from_eps(x, index, eps)).passed);
  // sqrt(a) where 1/sqrt(a) belongs.
  const auto times_sqrt = check((x - torch::sqrt(1 - a_n) * eps) * torch::sqrt(a_n));
  EXPECT_FALSE(times_sqrt.passed) << times_sqrt.detail;
  // sqrt(a) for sqrt(1 - a) on the noise.
  EXPECT_FALSE(check((x - torch::sqrt(a_n) * eps) / torch::sqrt(a_n)).passed);
  // The neighbouring index's a (an off-by-one in the respaced chain).
  std::vector<double> shifted;
  for (int64_t n = 0; n < index.size(0); ++n) {
    const int64_t i = index[n].item<int64_t>();
    shifted.push_back(tables[i + 1 < tables.size(0) ? i + 1 : i - 1].item<double>());
  }
  const Tensor b_n = torch::tensor(shifted, torch::kFloat64).to(torch::kFloat32).view({-1, 1, 1, 1});
  EXPECT_FALSE(check((x - torch::sqrt(1 - b_n) * eps) / torch::sqrt(b_n)).passed);
  // The guidance left out (the conditional eps alone).
  const Tensor eps_cond = diffusion.call_model(conditional.bind(y), x, index).narrow(1, 0, C);
  EXPECT_FALSE(check(diffusion.predict_xstart_from_eps(x, index, eps_cond)).passed);
}

}  // namespace

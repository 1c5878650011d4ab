// Strict loading: missing, unexpected and wrong-shape tensors are errors that list the keys;
// prefixes and LDM's EMA naming select the right tensors from a whole-pipeline checkpoint.
#include <torch/torch.h>

#include "core/safetensors.h"
#include "core/state_dict.h"
#include "test_util.h"

namespace iidm {
namespace {

struct TinyImpl : torch::nn::Module {
  TinyImpl() {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3)));
    norm = register_module("norm", torch::nn::BatchNorm2d(4));  // has buffers too
  }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d norm{nullptr};
};
TORCH_MODULE(Tiny);

TEST(StateDict, SaveLoadRoundTrip) {
  test::TempDir dir;
  Tiny a, b;
  save_state_dict(*a, dir.file("tiny.safetensors"));
  load_state_dict(*b, dir.file("tiny.safetensors"));
  auto sa = state_dict(*a), sb = state_dict(*b);
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_TRUE(torch::equal(sa[i].second, sb[i].second)) << sa[i].first;
}

TEST(StateDict, ReportsMissingUnexpectedAndWrongShape) {
  test::TempDir dir;
  Tiny model;
  auto tensors = state_dict(*model);
  // Drop conv.bias, add an extra key, and give norm.weight the wrong shape.
  std::vector<std::pair<std::string, torch::Tensor>> edited;
  for (auto& [k, t] : tensors) {
    if (k == "conv.bias") continue;
    edited.emplace_back(k, k == "norm.weight" ? torch::ones({5}) : t);
  }
  edited.emplace_back("extra.weight", torch::ones({1}));
  const std::string path = dir.file("edited.safetensors");
  save_safetensors(path, edited);
  test::expect_error([&] { load_state_dict(*model, path); },
                     {path, "1 missing", "conv.bias", "1 with the wrong shape", "norm.weight: file [5] vs model [4]",
                      "1 unexpected", "extra.weight"});
  // allow_unexpected tolerates only the extra key.
  LoadOptions lenient;
  lenient.allow_unexpected = true;
  test::expect_error([&] { load_state_dict(*model, path, lenient); }, {"conv.bias"});
}

TEST(StateDict, PrefixSelectsOnePartOfAPipelineCheckpoint) {
  test::TempDir dir;
  Tiny source, target;
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (auto& [k, t] : state_dict(*source)) tensors.emplace_back("first_stage_model." + k, t);
  tensors.emplace_back("model.diffusion_model.other", torch::ones({2}));
  save_safetensors(dir.file("full.safetensors"), tensors);
  LoadOptions options;
  options.prefix = "first_stage_model.";
  load_state_dict(*target, dir.file("full.safetensors"), options);
  EXPECT_TRUE(torch::equal(target->conv->weight, source->conv->weight));
  // Without the prefix every key is missing and all are unexpected.
  test::expect_error([&] { load_state_dict(*target, dir.file("full.safetensors")); }, {"missing", "conv.weight"});
}

TEST(StateDict, ReadsLdmEmaCopies) {
  test::TempDir dir;
  Tiny raw, ema, target;
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (auto& [k, t] : state_dict(*raw)) tensors.emplace_back("model.diffusion_model." + k, t);
  for (auto& [k, t] : state_dict(*ema)) {
    std::string flat = "diffusion_model." + k;
    flat.erase(std::remove(flat.begin(), flat.end(), '.'), flat.end());
    tensors.emplace_back("model_ema." + flat, t);
  }
  tensors.emplace_back("model_ema.decay", torch::tensor(0.9999));
  tensors.emplace_back("model_ema.num_updates", torch::tensor(10));
  save_safetensors(dir.file("ldm.safetensors"), tensors);
  LoadOptions options;
  options.prefix = "model.diffusion_model.";
  options.ldm_ema = true;
  load_state_dict(*target, dir.file("ldm.safetensors"), options);
  EXPECT_TRUE(torch::equal(target->conv->weight, ema->conv->weight));
  EXPECT_FALSE(torch::equal(target->conv->weight, raw->conv->weight));
}

TEST(StateDict, RefusesIntegerTensorForFloatParameter) {
  test::TempDir dir;
  Tiny model;
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (auto& [k, t] : state_dict(*model))
    tensors.emplace_back(k, k == "conv.bias" ? torch::zeros({4}, torch::kInt64) : t);
  save_safetensors(dir.file("int.safetensors"), tensors);
  test::expect_error([&] { load_state_dict(*model, dir.file("int.safetensors")); }, {"conv.bias", "dtype"});
}

}  // namespace
}  // namespace iidm

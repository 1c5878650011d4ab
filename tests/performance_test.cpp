// The speed work of [7/8] must not change results: SPADE's cached maps give the same outputs as
// computing them; bf16 agrees with fp32 within the stated tolerance; tiled autoencoding equals
// untiled where a network is local and stays close where it is not; an input too large for the
// machine is refused before any work, with what it needs and the flag that tiles; prepacked
// convolutions compute exactly what the modules' own forwards do.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <fstream>

#include "autoencoder/tiling.h"
#include "core/conv.h"
#include "core/fused_norm.h"
#include "core/image.h"
#include "core/labels.h"
#include "core/norm.h"
#include "core/state_dict.h"
#include "pipeline/memory.h"
#include "pipeline/pipeline.h"
#include "test_util.h"
#include "tiny_models.h"

namespace iidm {
namespace {
using torch::Tensor;
using torch::indexing::Slice;

const std::string kDemo = std::string(IIDM_SOURCE_DIR) + "/models/demo/";

Tensor random_one_hot(int64_t n, int classes, int64_t h, int64_t w, uint64_t seed) {
  torch::manual_seed(seed);
  // Blocks of classes, and a few unlabelled (255) pixels, as a sparse layout has.
  Tensor labels = torch::randint(0, classes, {n, 1, h / 4, w / 4}).repeat_interleave(4, 2).repeat_interleave(4, 3)[0];
  labels = labels.expand({n, h, w}).contiguous();
  labels.index_put_({Slice(), Slice(0, 2), Slice()}, 255);
  return one_hot_labels(labels, classes);
}

// ---------------------------------------------------------------------------------------------
// Prepacked convolutions

class PrepackedConvTest : public ::testing::TestWithParam<torch::ScalarType> {};

TEST_P(PrepackedConvTest, EqualsTheModulesForward) {
  const auto dtype = GetParam();
  if (!prepacked_convolutions_enabled(dtype))
    GTEST_SKIP() << "no prepacked convolutions for this dtype here (no mkldnn_prepacked ops, or bf16 without AVX-512)";
  torch::NoGradGuard no_grad;
  torch::manual_seed(3);
  struct Case {
    int in, out, kernel, stride, padding;
    bool bias;
  };
  for (const Case& c : {Case{16, 32, 3, 1, 1, true}, Case{32, 32, 3, 2, 1, true}, Case{24, 8, 1, 1, 0, false},
                        Case{8, 16, 3, 1, 0, true}}) {
    torch::nn::Conv2d conv(
        torch::nn::Conv2dOptions(c.in, c.out, c.kernel).stride(c.stride).padding(c.padding).bias(c.bias));
    conv->to(dtype);
    for (int64_t n : {1, 2}) {
      const Tensor x = torch::randn({n, c.in, 12, 20}).to(dtype).contiguous(torch::MemoryFormat::ChannelsLast);
      const Tensor expected = conv->forward(x);
      const Tensor got = conv2d(conv, x);
      // bf16 convolutions run in oneDNN either way: bit-identical. For fp32 with few channels ATen
      // picks its own kernel, which sums in another order: equal to float rounding.
      auto same = [&](const Tensor& a) {
        if (dtype == torch::kBFloat16) return torch::equal(a, expected);
        return (a - expected).abs().max().item<float>() <= 1e-5 * expected.abs().max().item<float>();
      };
      EXPECT_TRUE(same(got)) << c.in << "->" << c.out << " k" << c.kernel << " s" << c.stride << " n" << n;
      EXPECT_TRUE(got.is_contiguous(torch::MemoryFormat::ChannelsLast));
      EXPECT_TRUE(torch::equal(conv2d(conv, x), got)) << "second call, from the cache";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, PrepackedConvTest, ::testing::Values(torch::kFloat32, torch::kBFloat16));

TEST(PrepackedConv, NewWeightsArePackedAgainAndDeadModelsReleased) {
  if (!prepacked_convolutions_enabled()) GTEST_SKIP() << "this LibTorch has no mkldnn_prepacked ops";
  clear_prepacked_convolutions();
  torch::NoGradGuard no_grad;
  const Tensor x = torch::randn({1, 16, 8, 8}).contiguous(torch::MemoryFormat::ChannelsLast);
  {
    torch::nn::Conv2d conv(torch::nn::Conv2dOptions(16, 16, 3).padding(1));
    const Tensor before = conv2d(conv, x);
    EXPECT_EQ(prepacked_convolution_bytes(), 16 * 16 * 9 * 4);
    conv->weight.mul_(2);  // as loading a checkpoint does: the version changes, the packing follows
    conv->bias.zero_();
    const Tensor after = conv2d(conv, x), expected = conv->forward(x);
    EXPECT_LE((after - expected).abs().max().item<float>(), 1e-5 * expected.abs().max().item<float>());
    EXPECT_GT((after - before).abs().max().item<float>(), 0.1);
  }
  // The module is gone: its packed weights are no longer counted, and dropped at the next packing.
  EXPECT_EQ(prepacked_convolution_bytes(), 0);
  torch::nn::Conv2d other(torch::nn::Conv2dOptions(16, 4, 1));
  conv2d(other, x);
  EXPECT_EQ(prepacked_convolution_bytes(), 16 * 4 * 4);
}

TEST(PrepackedConv, GradientsAndNchwInputsUseTheModulesForward) {
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(8, 8, 3).padding(1));
  const Tensor x = torch::randn({1, 8, 6, 6}).contiguous(torch::MemoryFormat::ChannelsLast);
  const Tensor y = conv2d(conv, x);  // gradients recorded: autograd must see the convolution
  ASSERT_TRUE(y.requires_grad());
  y.sum().backward();
  EXPECT_TRUE(conv->weight.grad().defined());
  torch::NoGradGuard no_grad;
  const Tensor nchw = torch::randn({1, 8, 6, 6});
  EXPECT_TRUE(torch::equal(conv2d(conv, nchw), conv->forward(nchw)));
  EXPECT_TRUE(conv2d(conv, nchw).is_contiguous());
}

// ---------------------------------------------------------------------------------------------
// Fused GroupNorm -> modulation -> SiLU

// The chain in float64, from the same (rounded) inputs.
Tensor norm_silu_reference(const torch::nn::GroupNorm& norm, const Tensor& x, const Modulation& spatial,
                           const Modulation& channel) {
  const int64_t N = x.size(0), C = x.size(1), G = norm->options.num_groups();
  auto d = [](const Tensor& t) { return t.to(torch::kFloat64); };
  const Tensor grouped = d(x).reshape({N, G, -1});
  const Tensor mean = grouped.mean(-1, true), var = grouped.var(-1, /*unbiased=*/false, true);
  Tensor h = ((grouped - mean) / (var + norm->options.eps()).sqrt()).reshape(x.sizes());
  h = h * d(norm->weight).view({1, C, 1, 1}) + d(norm->bias).view({1, C, 1, 1});
  if (spatial.defined()) h = h * d(spatial.scale) + d(spatial.shift);
  if (channel.defined()) h = h * d(channel.scale) + d(channel.shift);
  return h * torch::sigmoid(h);
}

class FusedNormTest : public ::testing::TestWithParam<torch::ScalarType> {};

TEST_P(FusedNormTest, EqualsTheChainInFloat64WithinOneRounding) {
  const auto dtype = GetParam();
  const auto cl = torch::MemoryFormat::ChannelsLast;
  torch::NoGradGuard no_grad;
  torch::manual_seed(5);
  torch::nn::GroupNorm norm(torch::nn::GroupNormOptions(8, 64).eps(1e-5));
  norm->weight.uniform_(0.5, 1.5);
  norm->bias.uniform_(-0.5, 0.5);
  norm->to(dtype);
  // A small image (one chunk of positions) and one over many chunks, with an offset mean.
  for (const auto& shape : {std::vector<int64_t>{2, 64, 9, 13}, std::vector<int64_t>{1, 64, 40, 30}}) {
    const int64_t N = shape[0];
    const Tensor x = (torch::randn(shape) * 3 + 2).to(dtype).contiguous(cl);
    std::vector<int64_t> map_shape = shape;
    for (int64_t map_batch : {N, int64_t{1}}) {
      map_shape[0] = map_batch;
      const Modulation spatial{(1 + 0.3 * torch::randn(map_shape)).to(dtype).contiguous(cl),
                               (0.3 * torch::randn(map_shape)).to(dtype).contiguous(cl)};
      const Modulation channel{(1 + 0.2 * torch::randn({N, 64, 1, 1})).to(dtype), 0.2 * torch::randn({N, 64, 1, 1})};
      for (int variant = 0; variant < 4; ++variant) {
        const Modulation s = variant & 1 ? spatial : Modulation{}, c = variant & 2 ? channel : Modulation{};
        const Tensor got = fused_group_norm_silu(*norm, x, s, c);
        ASSERT_TRUE(got.defined());
        EXPECT_EQ(got.scalar_type(), dtype);
        EXPECT_TRUE(got.is_contiguous(cl));
        const Tensor expected = norm_silu_reference(norm, x, s, c);
        // float32: a few float32 roundings; bf16: the one final rounding (half a bf16 ulp, 2^-9),
        // plus the float32 arithmetic before it.
        const double relative = dtype == torch::kBFloat16 ? 1.0 / 256 : 1e-5;
        const Tensor error = (got.to(torch::kFloat64) - expected).abs() - relative * expected.abs();
        EXPECT_LE(error.max().item<double>(), 1e-6)
            << "shape " << shape[2] << "x" << shape[3] << " map batch " << map_batch << " variant " << variant;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, FusedNormTest, ::testing::Values(torch::kFloat32, torch::kBFloat16));

TEST(FusedNorm, ResultsDoNotDependOnTheThreadCount) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(6);
  torch::nn::GroupNorm norm(torch::nn::GroupNormOptions(4, 32));
  const Tensor x = torch::randn({2, 32, 48, 40}).contiguous(torch::MemoryFormat::ChannelsLast);
  const int threads = torch::get_num_threads();
  torch::set_num_threads(1);
  const Tensor one = fused_group_norm_silu(*norm, x);
  torch::set_num_threads(std::max(2, threads));
  const Tensor many = fused_group_norm_silu(*norm, x);
  torch::set_num_threads(threads);
  ASSERT_TRUE(one.defined());
  EXPECT_TRUE(torch::equal(one, many));
}

TEST(FusedNorm, LeavesGradientsNchwAndSharedStatisticsToTheOperators) {
  torch::nn::GroupNorm norm(torch::nn::GroupNormOptions(4, 16));
  const Tensor x = torch::randn({1, 16, 8, 8}).contiguous(torch::MemoryFormat::ChannelsLast);
  EXPECT_FALSE(fused_group_norm_silu(*norm, x).defined()) << "gradients are recorded";
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(fused_group_norm_silu(*norm, x).defined());
  EXPECT_FALSE(fused_group_norm_silu(*norm, torch::randn({1, 16, 8, 8})).defined()) << "NCHW";
  EXPECT_FALSE(fused_group_norm_silu(*norm, x, {torch::ones({1, 16, 4, 4}), torch::zeros({1, 16, 4, 4})}).defined())
      << "a map of another size";
  SharedGroupNormStatistics stats;
  SharedGroupNormStatistics::Scope scope(stats, SharedGroupNormStatistics::Mode::kRecord, {});
  EXPECT_FALSE(fused_group_norm_silu(*norm, x).defined()) << "tiles share statistics";
}

// The U-Net with the fused pass against its operators, channels-last. float32: equal to rounding.
// bf16: both round each layer's result once, so a last-bit difference in float32 may flip a bf16
// rounding, and that travels through the layers; what matters is that the fused pass is no farther
// from the float32 model than the operators are.
TEST(FusedNorm, UNetForwardMatchesTheOperators) {
  torch::manual_seed(7);
  UNetModel unet(test::tiny_unet_config(29));
  test::randomize(*unet);
  unet->eval();
  torch::NoGradGuard no_grad;
  const Tensor y = random_one_hot(2, 29, 16, 24, 2);
  torch::manual_seed(8);
  const Tensor x = torch::randn({2, 3, 16, 24});
  const Tensor t = torch::tensor({700, 30}, torch::kInt64);
  auto forward = [&](torch::ScalarType dtype, bool fused) {
    unet->to(dtype);
    for (auto& p : unet->parameters())
      if (p.dim() == 4) p.set_data(p.data().contiguous(torch::MemoryFormat::ChannelsLast));
    set_fused_norm(fused);
    const Tensor out =
        unet->forward(x.to(dtype).contiguous(torch::MemoryFormat::ChannelsLast), t, y.to(dtype)).to(torch::kFloat32);
    set_fused_norm(true);
    return out;
  };
  auto relative = [](const Tensor& a, const Tensor& b) { return ((a - b).norm() / b.norm()).item<double>(); };
  const Tensor fp32_operators = forward(torch::kFloat32, false), fp32_fused = forward(torch::kFloat32, true);
  EXPECT_LT(relative(fp32_fused, fp32_operators), 1e-5);
  EXPECT_GT(relative(fp32_fused, fp32_operators), 0.0) << "the fused pass must actually have run";
  const double fused_error = relative(forward(torch::kBFloat16, true), fp32_operators);
  const double operators_error = relative(forward(torch::kBFloat16, false), fp32_operators);
  EXPECT_LT(fused_error, 1.25 * operators_error) << "fused " << fused_error << ", operators " << operators_error;
  EXPECT_LT(fused_error, 2e-2);  // [7/8]'s bound for bf16 against fp32
}

// ---------------------------------------------------------------------------------------------
// SPADE cache

class SpadeCacheTest : public ::testing::TestWithParam<torch::ScalarType> {};

TEST_P(SpadeCacheTest, CachedMapsGiveTheSameOutputsAsComputedOnes) {
  torch::manual_seed(0);
  UNetModel unet(test::tiny_unet_config(29));
  test::randomize(*unet);
  unet->eval();
  unet->to(GetParam());
  torch::NoGradGuard no_grad;
  const Tensor y = random_one_hot(2, 29, 16, 24, 1);
  auto x_at = [](uint64_t seed) {
    torch::manual_seed(seed);
    return torch::randn({2, 3, 16, 24});
  };
  const Tensor t = torch::tensor({900, 20}, torch::kInt64);

  SpadeCache cache;
  // The first call fills the cache, later calls (other x and t, as the steps of a run) reuse it.
  EXPECT_TRUE(torch::equal(unet->forward(x_at(1), t, y, &cache), unet->forward(x_at(1), t, y)));
  EXPECT_TRUE(cache.filled());
  EXPECT_GT(cache.bytes(), 0);
  const int64_t filled_bytes = cache.bytes();
  for (uint64_t step = 2; step < 5; ++step)
    EXPECT_TRUE(torch::equal(unet->forward(x_at(step), t - 10 * static_cast<int64_t>(step), y, &cache),
                             unet->forward(x_at(step), t - 10 * static_cast<int64_t>(step), y)))
        << "step " << step;
  EXPECT_EQ(cache.bytes(), filled_bytes);  // reused, not grown

  // Another map (another tensor), or the same tensor changed in place, refills it.
  const Tensor other = random_one_hot(2, 29, 16, 24, 7);
  EXPECT_TRUE(torch::equal(unet->forward(x_at(5), t, other, &cache), unet->forward(x_at(5), t, other)));
  Tensor changed = y.clone();
  EXPECT_TRUE(torch::equal(unet->forward(x_at(6), t, changed, &cache), unet->forward(x_at(6), t, y)));
  changed.mul_(0);  // the unconditional map
  EXPECT_TRUE(
      torch::equal(unet->forward(x_at(6), t, changed, &cache), unet->forward(x_at(6), t, torch::zeros_like(y))));
  cache.clear();
  EXPECT_EQ(cache.bytes(), 0);
}

INSTANTIATE_TEST_SUITE_P(Precisions, SpadeCacheTest, ::testing::Values(torch::kFloat32, torch::kBFloat16),
                         [](const auto& info) { return info.param == torch::kFloat32 ? "fp32" : "bf16"; });

TEST(SpadeCache, IsRefusedWhileGradientsAreRecorded) {
  UNetModel unet(test::tiny_unet_config(29));
  SpadeCache cache;
  test::expect_error(
      [&] {
        unet->forward(torch::randn({1, 3, 8, 8}), torch::tensor({5}), random_one_hot(1, 29, 8, 8, 0), &cache);
      },
      {"SPADE cache is for inference"});
}

// Guidance's two passes share one encoder pass (unet.h): decode(encode(x, t), y) is the forward,
// bit for bit, and decoding leaves the encoding untouched, so the second map's decode is exact too.
TEST(UNetEncoding, OneEncodingServesBothGuidancePasses) {
  torch::manual_seed(0);
  UNetModel unet(test::tiny_unet_config(29));
  test::randomize(*unet);
  unet->eval();
  torch::NoGradGuard no_grad;
  for (const auto format : {torch::MemoryFormat::Contiguous, torch::MemoryFormat::ChannelsLast}) {
    torch::manual_seed(3);
    const Tensor x = torch::randn({2, 3, 16, 24}).contiguous(format);
    const Tensor t = torch::tensor({900, 20}, torch::kInt64);
    const Tensor y = random_one_hot(2, 29, 16, 24, 1), zeros = torch::zeros_like(y);
    const UNetEncoding encoding = unet->encode(x, t);
    std::vector<Tensor> before;
    for (const auto& s : encoding.skips) before.push_back(s.clone());
    SpadeCache cond_cache, uncond_cache;
    EXPECT_TRUE(torch::equal(unet->decode(encoding, y, &cond_cache), unet->forward(x, t, y)));
    EXPECT_TRUE(torch::equal(unet->decode(encoding, zeros, &uncond_cache), unet->forward(x, t, zeros)));
    EXPECT_TRUE(torch::equal(unet->decode(encoding, y), unet->forward(x, t, y)));
    ASSERT_EQ(before.size(), encoding.skips.size());
    for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(before[i], encoding.skips[i])) << "skip " << i;
    // The repeated encoding decodes a batched pair as the forward of the doubled batch would.
    const Tensor pair = unet->decode(encoding.repeated(2), torch::cat({y, zeros}));
    const Tensor full = unet->forward(torch::cat({x, x}), torch::cat({t, t}), torch::cat({y, zeros}));
    EXPECT_LT((pair - full).abs().max().item<double>(), 1e-5 * std::max(1.0, full.abs().max().item<double>()));
    // The shape checks are LibTorch's (c10::Error), like forward's: a wrong map is a caller's bug.
    try {
      unet->decode(encoding, random_one_hot(1, 29, 16, 24, 1));
      ADD_FAILURE() << "a one-image map decoded a two-image encoding";
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find("unet: y must be [2, 29, 16, 24], got [1, 29, 16, 24]"), std::string::npos)
          << e.what();
    }
  }
}

// The whole pipeline, with guidance (batched pair and two passes) and two rounds sharing the cache.
TEST(SpadeCache, PipelineImagesEqualWithAndWithoutTheCache) {
  test::TempDir dir;
  const test::TinyModel model = test::write_tiny_model(dir, true);
  std::ofstream(dir.file("preset.json")) << R"({"stages": [
    {"respacing": "ddim10", "sampler": "ddim", "strength": 0.7, "guidance": 3},
    {"respacing": "ddim10", "sampler": "dpm++2m", "strength": 0.3, "guidance": 2, "color_transfer": "iidm-lab"}]})";
  const auto stages = Preset::from_file(dir.file("preset.json")).stages;
  GenerationItem item;
  item.name = "a";
  torch::manual_seed(3);
  item.labels = torch::randint(0, 29, {6, 8}).repeat_interleave(4, 0).repeat_interleave(4, 1).contiguous();
  item.start = torch::rand({3, 24, 32}) * 2 - 1;
  item.seed = 11;
  for (bool batched : {true, false}) {
    PipelineOptions on, off;
    on.batched_guidance = off.batched_guidance = batched;
    off.cache_spade = false;
    ModelFiles files{model.config, {model.unet}, {}, model.autoencoder};
    const GenerationResult a = Pipeline::load(files, on).generate({item}, stages);
    const GenerationResult b = Pipeline::load(files, off).generate({item}, stages);
    EXPECT_TRUE(torch::equal(a.images, b.images)) << "batched guidance " << batched;
    EXPECT_GT(a.spade_cache_bytes, 0);
    EXPECT_EQ(b.spade_cache_bytes, 0);
  }
}

// ---------------------------------------------------------------------------------------------
// bf16 against fp32: the demo model's U-Net outputs agree within 2e-2 relative (the bound
// docs/performance.md states), on the same weights and inputs.

TEST(Precision, Bf16UNetOutputsAgreeWithFp32WithinTwoPercent) {
  const ModelConfig config = ModelConfig::from_file(kDemo + "model.json");
  UNetModel fp32(config.unet), bf16(config.unet);
  load_state_dict(*fp32, kDemo + "unet.safetensors");
  load_state_dict(*bf16, kDemo + "unet.safetensors");
  PipelineOptions o32, o16;
  o16.precision = torch::kBFloat16;
  o16.channels_last = true;
  prepare_for_inference(*fp32, o32);
  prepare_for_inference(*bf16, o16);
  torch::NoGradGuard no_grad;
  const Tensor y = random_one_hot(1, 29, 48, 64, 2);
  for (int64_t t : {950, 500, 50}) {
    torch::manual_seed(t);
    const Tensor x = torch::randn({1, 3, 48, 64});
    const Tensor ts = torch::tensor({t});
    const Tensor a = fp32->forward(x, ts, y), b = bf16->forward(x, ts, y).to(torch::kFloat32);
    const double relative = ((a - b).norm() / a.norm()).item<double>();
    EXPECT_LT(relative, 2e-2) << "t = " << t;
    EXPECT_GT(relative, 0.0) << "bf16 must actually have run in bf16";
  }
}

// ---------------------------------------------------------------------------------------------
// Tiling

// A local network: 3x3 convolutions (and a resampling) whose outputs depend on inputs within a few
// pixels; tiled with overlaps of at least 4 times that reach, it must equal the untiled result
// everywhere, seams included.
TEST(Tiling, LocalNetworkEqualsUntiledEverywhere) {
  torch::manual_seed(0);
  auto conv = [](int in, int out, int stride) {
    return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1));
  };
  torch::nn::Conv2d a = conv(3, 8, 1), b = conv(8, 8, 1), c = conv(8, 3, 1), down = conv(3, 3, 2);
  torch::NoGradGuard no_grad;
  namespace F = torch::nn::functional;
  auto up4 = [&](const Tensor& x) {  // a decoder in miniature: x4 output, reach 3 input pixels
    Tensor h = c(torch::silu(b(torch::silu(a(x)))));
    return F::interpolate(h, F::InterpolateFuncOptions().scale_factor(std::vector<double>{4, 4}).mode(torch::kNearest));
  };
  auto down4 = [&](const Tensor& x) { return down(down(c(torch::silu(a(x))))); };  // an encoder: /4

  const Tensor z = torch::randn({2, 3, 37, 53});
  TileOptions t;
  t.tile = 24;
  t.overlap = 16;  // reach 3 input pixels <= 16 / 4
  t.scale = 4;
  const Tensor tiled = tiled_apply(up4, z, t), whole = up4(z);
  ASSERT_EQ(tiled.sizes(), whole.sizes());
  EXPECT_LT((tiled - whole).abs().max().item<double>(), 1e-5);

  const Tensor img = torch::randn({1, 3, 96, 136});
  TileOptions e;
  e.tile = 64;
  e.overlap = 48;  // reach 5 input pixels (under 2 output pixels) <= 48 / 4 input pixels
  e.scale = 0.25;
  e.multiple = 4;
  const Tensor tiled_e = tiled_apply(down4, img, e), whole_e = down4(img);
  ASSERT_EQ(tiled_e.sizes(), whole_e.sizes());
  EXPECT_LT((tiled_e - whole_e).abs().max().item<double>(), 1e-5);

  // A tile as large as the input is the untiled path, bit for bit.
  t.tile = 64;
  t.overlap = 16;
  EXPECT_TRUE(torch::equal(tiled_apply(up4, z, t), whole));
  test::expect_error(
      [&] {
        TileOptions bad;
        bad.tile = 16;
        bad.overlap = 16;
        bad.validate();
      },
      {"overlap"});
}

// LDM's decoder is not local: GroupNorm takes statistics over the whole latent, and the middle
// attention mixes every position. With the attention's output zeroed (the one op no tiling can
// reproduce) and the image's own GroupNorm statistics given to every tile, tiled decoding equals the
// untiled decode away from the tile borders (measured 1e-4 of a level) and stays within 2/255 on
// average at them (measured 1.6 and 1.2).
TEST(Tiling, DemoDecoderWithTheImagesStatisticsEqualsUntiledAwayFromBorders) {
  const ModelConfig config = ModelConfig::from_file(kDemo + "model.json");
  Autoencoder ae(*config.autoencoder);
  LoadOptions lo;
  lo.allow_unexpected = true;
  load_state_dict(*ae, kDemo + "autoencoder.safetensors", lo);
  ae->eval();
  torch::NoGradGuard no_grad;
  for (auto& p : ae->named_parameters())
    if (p.key().find("decoder.mid.attn_1.proj_out") == 0) p.value().zero_();
  const Tensor latent = ae->encode(read_image(kDemo + "examples/reference-1.jpg", 512, 384));  // [1, 3, 96, 128]
  auto decode = [&](const Tensor& z) { return ae->decode(z.contiguous()); };
  const Tensor whole = decode(latent);
  SharedGroupNormStatistics stats;  // the whole image's statistics, recorded from the untiled pass
  {
    SharedGroupNormStatistics::Scope scope(stats, SharedGroupNormStatistics::Mode::kRecord, {});
    decode(latent);
  }
  stats.finish_pass();
  // Two tiles of 56 latent rows (offsets 0 and 40) by full width. The decoder's convolutions
  // reach 13 latent rows (52 output pixels); the border band of a tile is its 64 output rows at
  // the edge inside the image.
  Tensor top, bottom;
  {
    SharedGroupNormStatistics::Scope scope(stats, SharedGroupNormStatistics::Mode::kApply, {});
    top = decode(latent.index({Slice(), Slice(), Slice(0, 56)}));
  }
  {
    SharedGroupNormStatistics::Scope scope(stats, SharedGroupNormStatistics::Mode::kApply, {});
    bottom = decode(latent.index({Slice(), Slice(), Slice(40, 96)}));
  }
  const Tensor top_ref = whole.index({Slice(), Slice(), Slice(0, 224)});
  const Tensor bottom_ref = whole.index({Slice(), Slice(), Slice(160, 384)});
  auto rows = [](const Tensor& t, int64_t a, int64_t b) { return t.index({Slice(), Slice(), Slice(a, b)}); };
  auto max_abs = [](const Tensor& a, const Tensor& b) { return (a - b).abs().max().item<double>() * 127.5; };
  auto mean_abs = [](const Tensor& a, const Tensor& b) { return (a - b).abs().mean().item<double>() * 127.5; };
  EXPECT_LT(max_abs(rows(top, 0, 160), rows(top_ref, 0, 160)), 0.05);
  EXPECT_LT(max_abs(rows(bottom, 64, 224), rows(bottom_ref, 64, 224)), 0.05);
  EXPECT_LT(mean_abs(rows(top, 160, 224), rows(top_ref, 160, 224)), 2.0);
  EXPECT_LT(mean_abs(rows(bottom, 0, 64), rows(bottom_ref, 0, 64)), 2.0);
}

// The pipeline's tiled decoding as users run it (--tile): the statistics estimated by a recording
// pass over the tiles, the attention intact. On the demo model with tiles of 128 px (a quarter of
// a 256x192 image: harder than 512 px tiles of a 2048 px image) it stays within 3/255 of the
// untiled decode on average, away from the seams and across them (measured 2.1).
TEST(Tiling, PipelineTiledDecodeStaysCloseToUntiled) {
  ModelFiles files{kDemo + "model.json", {kDemo + "unet.safetensors"}, {}, kDemo + "autoencoder.safetensors"};
  PipelineOptions whole, tiled;
  tiled.tile = 128;
  Pipeline a = Pipeline::load(files, whole), b = Pipeline::load(files, tiled);
  const Tensor latent = a.encode(read_image(kDemo + "examples/reference-1.jpg", 256, 192));
  const Tensor da = a.decode(latent), db = b.decode(latent);
  ASSERT_EQ(da.sizes(), db.sizes());
  // Tiles of 32 latent (128 px) with 8 latent overlaps: rows at 0 and 64 px, columns at 0, 96, 128 px.
  Tensor seam = torch::zeros({192, 256}, torch::kBool);
  seam.index_put_({Slice(64, 128), Slice()}, true);
  seam.index_put_({Slice(), Slice(96, 224)}, true);
  const Tensor diff = (da - db).abs().mean(1)[0] * 127.5;  // in 8-bit levels
  EXPECT_LT(diff.masked_select(~seam).mean().item<double>(), 3.0);
  EXPECT_LT(diff.masked_select(seam).mean().item<double>(), 3.0);
  EXPECT_GT(diff.mean().item<double>(), 0.0) << "the tiled path must actually have tiled";
}

// ---------------------------------------------------------------------------------------------
// Memory

TEST(Memory, OversizedInputIsRefusedBeforeAnyWork) {
  const ModelConfig demo = ModelConfig::from_file(kDemo + "model.json");
  MemoryQuery q;
  q.height = 12000;
  q.width = 16000;
  const MemoryEstimate need = estimate_memory(demo, q);
  EXPECT_GT(need.peak(), int64_t{64} << 30);  // far beyond any machine this runs on
  test::expect_error([&] { check_memory(demo, q, int64_t{24} << 30, "mask.png"); },
                     {"mask.png: 16000x12000 would need about", "GiB", "24.0 GiB available", "--tile 512"});
  // At the demo's size it fits easily, and tiles shrink the autoencoder's share.
  q.height = 192;
  q.width = 256;
  EXPECT_LT(estimate_memory(demo, q).peak(), int64_t{1} << 30);
  q.height = 2048;
  q.width = 2048;
  MemoryQuery tiled = q;
  tiled.tile = 512;
  EXPECT_LT(estimate_memory(demo, tiled).decode, estimate_memory(demo, q).decode / 4);

  // generate() checks before it starts: no progress is reported.
  test::TempDir dir;
  const test::TinyModel model = test::write_tiny_model(dir, true);
  PipelineOptions options;
  options.memory_limit = int64_t{1} << 20;  // 1 MiB: anything is too large
  Pipeline pipeline = Pipeline::load({model.config, {model.unet}, {}, model.autoencoder}, options);
  GenerationItem item;
  item.name = "big.png";
  item.labels = torch::zeros({64, 64}, torch::kInt64);
  item.start = torch::zeros({3, 64, 64});
  int steps = 0;
  test::expect_error(
      [&] {
        pipeline.generate({item}, Preset::from_file(std::string(IIDM_SOURCE_DIR) + "/configs/presets/fast.json").stages,
                          [&](int64_t, int64_t) { ++steps; });
      },
      {"big.png: 64x64 would need about", "1 MiB available"});
  EXPECT_EQ(steps, 0);
}

// A loaded pipeline's estimate counts its models' weights (and, on the CPU channels-last path, the
// prepacked copies its first forward will make); the check asks the machine only for what is not
// resident yet.
TEST(Memory, EstimateCountsTheLoadedWeights) {
  test::TempDir dir;
  const test::TinyModel model = test::write_tiny_model(dir, true);
  PipelineOptions options;
  options.channels_last = true;
  Pipeline pipeline = Pipeline::load({model.config, {model.unet}, {}, model.autoencoder}, options);
  const UNetModel unet(ModelConfig::from_file(model.config).unet);
  const MemoryQuery q = pipeline.memory_query(1, 64, 64, {});
  EXPECT_GT(q.weight_bytes, module_bytes(*unet));  // the U-Net and the autoencoder
  EXPECT_GT(module_bytes(*unet, true), 0);
  EXPECT_LT(module_bytes(*unet, true), module_bytes(*unet));
  const MemoryEstimate need = estimate_memory(pipeline.config(), q);
  EXPECT_EQ(need.weights, q.weight_bytes + q.prepacked_bytes);
  if (prepacked_convolutions_enabled()) EXPECT_GT(q.prepacked_bytes, 0);
  MemoryQuery without = q;
  without.weight_bytes = without.prepacked_bytes = 0;
  EXPECT_EQ(need.peak(), estimate_memory(pipeline.config(), without).peak() + need.weights);
  // Exactly what is not loaded yet fits; a byte less does not.
  const int64_t asked = need.peak() - q.weight_bytes;
  EXPECT_NO_THROW(check_memory(pipeline.config(), q, asked, "fits.png"));
  test::expect_error([&] { check_memory(pipeline.config(), q, asked - 1, "tight.png"); },
                     {"tight.png: 64x64 would need about", "besides the", "of weights loaded"});
}

// The command line refuses from the PNG header alone: the file below is a header with no pixels,
// which would fail to decode (truncated) if it were read.
TEST(GenerateCli, OversizedMaskIsRefusedFromItsHeader) {
  test::TempDir dir;
  const unsigned char header[] = {
      0x89, 'P',  'N',  'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R', 0,
      0,    0x3e, 0x80, 0,   0,    0x2e, 0xe0, 8,    0, 0, 0, 0,  0,   0,   0,   0};  // 16000 x 12000
  std::ofstream(dir.file("huge.png"), std::ios::binary).write(reinterpret_cast<const char*>(header), sizeof header);
  const auto dims = png_dimensions(dir.file("huge.png"));
  ASSERT_TRUE(dims.has_value());
  EXPECT_EQ(dims->first, 16000);
  EXPECT_EQ(dims->second, 12000);
  const std::string log = dir.file("log.txt");
  const std::string cmd = "\"" IIDM_CLI "\" --threads 1 generate --model " + kDemo + "model.json --unet " + kDemo +
                          "unet.safetensors --autoencoder " + kDemo + "autoencoder.safetensors --mask " +
                          dir.file("huge.png") + " --style " + kDemo + "examples/reference-1.jpg --out " +
                          dir.file("out.png") + " > " + log + " 2>&1";
  const int status = std::system(cmd.c_str());
  std::ifstream in(log);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(status, 0) << text;
  EXPECT_NE(text.find(dir.file("huge.png") + ": 16000x12000 would need about"), std::string::npos) << text;
  EXPECT_NE(text.find("--tile"), std::string::npos) << text;
  EXPECT_EQ(text.find("truncated"), std::string::npos) << "the pixels were read: " << text;
  EXPECT_FALSE(std::filesystem::exists(dir.file("out.png")));
}

}  // namespace
}  // namespace iidm

// Tiny random models end to end: shapes, input validation, save/load round trips.
#include <torch/torch.h>

#include "autoencoder/autoencoder.h"
#include "core/labels.h"
#include "core/state_dict.h"
#include "test_util.h"
#include "tiny_models.h"
#include "unet/unet.h"

namespace iidm {
namespace {

// The reference zero-initialises output convs; random weights everywhere exercise every layer.
using test::randomize;

UNetConfig tiny_unet(bool scale_shift = true, bool updown = true) {
  UNetConfig c = test::tiny_unet_config();
  c.use_scale_shift_norm = scale_shift;
  c.resblock_updown = updown;
  return c;
}

TEST(UNet, ForwardShapesAndDeterminism) {
  torch::manual_seed(0);
  UNetModel model(tiny_unet());
  model->eval();
  torch::Tensor x = torch::randn({2, 3, 8, 12}), y = one_hot_labels(torch::randint(0, 4, {2, 8, 12}), 4);
  torch::Tensor t = torch::tensor({10, 900}, torch::kInt64);
  torch::NoGradGuard no_grad;
  torch::Tensor a = model->forward(x, t, y), b = model->forward(x, t, y);
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{2, 6, 8, 12}));
  EXPECT_TRUE(torch::equal(a, b));
  // The label map matters (SPADE): a different map gives a different output... once the
  // zero-initialised output convs are not zero; the reference initialises them to zero too.
  randomize(*model);
  torch::Tensor y2 = one_hot_labels(torch::randint(0, 4, {2, 8, 12}), 4);
  EXPECT_FALSE(torch::allclose(model->forward(x, t, y), model->forward(x, t, y2)));
}

TEST(UNet, RejectsBadInputShapes) {
  UNetModel model(tiny_unet(false, false));
  torch::NoGradGuard no_grad;
  torch::Tensor t = torch::tensor({1}, torch::kInt64);
  EXPECT_THROW(model->forward(torch::randn({1, 4, 8, 8}), t, torch::zeros({1, 4, 8, 8})), c10::Error);
  EXPECT_THROW(model->forward(torch::randn({1, 3, 8, 8}), t, torch::zeros({1, 5, 8, 8})), c10::Error);
  EXPECT_THROW(model->forward(torch::randn({1, 3, 7, 8}), t, torch::zeros({1, 4, 7, 8})), c10::Error);
}

TEST(UNet, SaveLoadReproducesOutputs) {
  test::TempDir dir;
  torch::manual_seed(1);
  UNetModel a(tiny_unet()), b(tiny_unet());
  randomize(*a);
  save_state_dict(*a, dir.file("unet.safetensors"));
  load_state_dict(*b, dir.file("unet.safetensors"));
  torch::NoGradGuard no_grad;
  torch::Tensor x = torch::randn({1, 3, 8, 8}), y = one_hot_labels(torch::randint(0, 4, {1, 8, 8}), 4);
  torch::Tensor t = torch::tensor({500}, torch::kInt64);
  EXPECT_TRUE(torch::equal(a->forward(x, t, y), b->forward(x, t, y)));
}

TEST(UNet, Bf16ForwardStaysCloseToFp32) {
  torch::manual_seed(2);
  UNetModel model(tiny_unet());
  randomize(*model);
  torch::NoGradGuard no_grad;
  torch::Tensor x = torch::randn({1, 3, 8, 8}), y = one_hot_labels(torch::randint(0, 4, {1, 8, 8}), 4);
  torch::Tensor t = torch::tensor({500}, torch::kInt64);
  torch::Tensor ref = model->forward(x, t, y);
  model->to(torch::kBFloat16);
  torch::Tensor low = model->forward(x, t, y);
  EXPECT_EQ(low.scalar_type(), torch::kFloat32);  // outputs come back in the input's dtype
  EXPECT_LT((low - ref).abs().max().item<double>(), 0.05 * std::max(1.0, ref.abs().max().item<double>()));
}

AutoencoderConfig tiny_ae(const std::string& kind) {
  AutoencoderConfig c;
  c.kind = kind;
  c.ddconfig.double_z = kind == "kl";
  c.ddconfig.z_channels = kind == "kl" ? 4 : 3;
  c.ddconfig.ch = 32;
  c.ddconfig.ch_mult = {1, 2};
  c.ddconfig.num_res_blocks = 1;
  c.ddconfig.resolution = 32;
  c.ddconfig.attn_resolutions = {16};
  c.embed_dim = kind == "kl" ? 4 : 3;
  c.n_embed = 16;
  return c;
}

TEST(Autoencoder, KlShapesScaleFactorAndRoundTrip) {
  test::TempDir dir;
  torch::manual_seed(3);
  AutoencoderConfig config = tiny_ae("kl");
  config.scale_factor = 0.5;
  Autoencoder ae(config), copy(config);
  save_state_dict(*ae, dir.file("ae.safetensors"));
  load_state_dict(*copy, dir.file("ae.safetensors"));
  torch::NoGradGuard no_grad;
  torch::Tensor x = torch::rand({1, 3, 16, 24}) * 2 - 1;
  torch::Tensor z = ae->encode(x);
  EXPECT_EQ(z.sizes(), (std::vector<int64_t>{1, 4, 8, 12}));
  EXPECT_TRUE(torch::allclose(z, 0.5 * ae->encode_kl(x).mean));
  EXPECT_EQ(ae->decode(z).sizes(), x.sizes());
  EXPECT_TRUE(torch::equal(ae->decode(z), copy->decode(z)));
  // Sampling the posterior is seeded.
  auto g1 = at::detail::createCPUGenerator(5), g2 = at::detail::createCPUGenerator(5);
  EXPECT_TRUE(torch::equal(ae->encode(x, true, g1), ae->encode(x, true, g2)));
  EXPECT_GE(ae->encode_kl(x).kl().min().item<double>(), 0.0);
}

TEST(Autoencoder, VqQuantisesToCodebookEntries) {
  torch::manual_seed(4);
  Autoencoder ae(tiny_ae("vq"));
  torch::NoGradGuard no_grad;
  torch::Tensor h = ae->encode(torch::rand({1, 3, 16, 16}) * 2 - 1);
  Quantized q = ae->quantize(h);
  EXPECT_EQ(q.indices.sizes(), (std::vector<int64_t>{1, 8, 8}));
  // Each z_q vector is the codebook row its index names, and no row is nearer.
  torch::Tensor codebook = ae->quantizer->embedding->weight;
  torch::Tensor flat = h.permute({0, 2, 3, 1}).reshape({-1, 3});
  torch::Tensor dist = torch::cdist(flat, codebook);
  EXPECT_TRUE(torch::equal(dist.argmin(1), q.indices.view({-1})));
  EXPECT_TRUE(
      torch::allclose(q.z_q.permute({0, 2, 3, 1}).reshape({-1, 3}), codebook.index_select(0, q.indices.view({-1}))));
  EXPECT_THROW(ae->encode(torch::rand({1, 3, 15, 16})), c10::Error);
}

TEST(Autoencoder, ConfigValidation) {
  AutoencoderConfig c = tiny_ae("kl");
  c.ddconfig.double_z = false;
  test::expect_error([&] { c.validate(); }, {"double_z"});
  c = tiny_ae("vq");
  c.kind = "vqgan";
  test::expect_error([&] { c.validate(); }, {"kind must be"});
}

}  // namespace
}  // namespace iidm

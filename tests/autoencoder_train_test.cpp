// Autoencoder training on generated landscapes: the reconstruction error falls (KL, in fp32 and
// bf16), the VQ model with a patch discriminator trains both players and resumes exactly, and
// damaged or mismatched checkpoints are refused.
#include <fstream>

#include "core/fs.h"
#include "core/image.h"
#include "core/state_dict.h"
#include "data/landscape.h"
#include "test_util.h"
#include "train/autoencoder_trainer.h"

namespace iidm {
namespace {

torch::Tensor landscape_images(int count, int W = 32, int H = 32) {
  std::vector<torch::Tensor> xs;
  for (int i = 0; i < count; ++i) {
    Landscape l = generate_landscape(500 + i, W, H);
    xs.push_back(from_rgb8(l.image));
  }
  return torch::stack(xs);
}

AutoencoderConfig tiny_autoencoder(const std::string& kind) {
  AutoencoderConfig c;
  c.kind = kind;
  c.embed_dim = 3;
  c.n_embed = kind == "vq" ? 32 : 0;
  c.ddconfig.double_z = kind == "kl";
  c.ddconfig.z_channels = 3;
  c.ddconfig.resolution = 32;
  c.ddconfig.ch = 32;
  c.ddconfig.ch_mult = {1, 2};
  c.ddconfig.num_res_blocks = 1;
  return c;
}

AutoencoderTrainConfig fast_config() {
  AutoencoderTrainConfig c;
  c.batch_size = 4;
  c.adam.lr = 1e-3;
  c.seed = 5;
  return c;
}

double mean_l1(AutoencoderTrainer& trainer, int from, int to) {
  double sum = 0;
  for (int i = from; i < to; ++i) sum += trainer.train_step().l1;
  return sum / (to - from);
}

TEST(AutoencoderTraining, KlReconstructionErrorFalls) {
  AutoencoderTrainer trainer(tiny_autoencoder("kl"), fast_config(), landscape_images(12));
  const double first = mean_l1(trainer, 0, 3);
  mean_l1(trainer, 3, 37);
  const double last = mean_l1(trainer, 37, 40);
  EXPECT_LT(last, 0.6 * first) << "first " << first << " last " << last;
  const double scale = trainer.measure_scale_factor();
  EXPECT_TRUE(scale > 0 && std::isfinite(scale));
}

TEST(AutoencoderTraining, Bf16ReconstructionErrorFalls) {
  AutoencoderTrainConfig c = fast_config();
  c.bf16 = true;
  AutoencoderTrainer trainer(tiny_autoencoder("kl"), c, landscape_images(12));
  const double first = mean_l1(trainer, 0, 3);
  mean_l1(trainer, 3, 37);
  const double last = mean_l1(trainer, 37, 40);
  EXPECT_LT(last, 0.6 * first) << "first " << first << " last " << last;
  // Weights and optimiser state stay float32.
  for (const auto& p : trainer.model()->parameters()) ASSERT_EQ(p.scalar_type(), torch::kFloat32);
}

TEST(AutoencoderTraining, VqWithDiscriminatorTrainsBothAndResumesExactly) {
  test::TempDir dir;
  AutoencoderTrainConfig c = fast_config();
  c.disc_start = 2;
  c.disc_layers = 2;
  c.disc_channels = 16;
  c.crop = 24;
  const torch::Tensor images = landscape_images(6);
  AutoencoderTrainer straight(tiny_autoencoder("vq"), c, images);
  for (int i = 0; i < 2; ++i) {
    const auto l = straight.train_step();
    EXPECT_EQ(l.d, 0.0) << "no discriminator before disc_start";
    EXPECT_GT(l.reg, 0.0);
  }
  for (int i = 2; i < 6; ++i) {
    const auto l = straight.train_step();
    EXPECT_GT(l.d, 0.0);
    EXPECT_GT(l.d_weight, 0.0);
  }
  {
    AutoencoderTrainer first(tiny_autoencoder("vq"), c, images);
    for (int i = 0; i < 3; ++i) first.train_step();
    first.save_checkpoint(dir.file("ckpt.safetensors"));
  }
  AutoencoderTrainer resumed(tiny_autoencoder("vq"), c, images);
  resumed.resume(dir.file("ckpt.safetensors"));
  EXPECT_EQ(resumed.step(), 3);
  for (int i = 3; i < 6; ++i) resumed.train_step();
  straight.export_weights(dir.file("a.safetensors"));
  resumed.export_weights(dir.file("b.safetensors"));
  EXPECT_EQ(read_file(dir.file("a.safetensors")), read_file(dir.file("b.safetensors")));
  // The exported weights are a plain first-stage state dict under LDM's names.
  Autoencoder loaded(tiny_autoencoder("vq"));
  load_state_dict(*loaded, dir.file("a.safetensors"));

  // A checkpoint with a discriminator does not resume a run without one, nor does a damaged file.
  AutoencoderTrainConfig no_disc = c;
  no_disc.disc_start = -1;
  AutoencoderTrainer other(tiny_autoencoder("vq"), no_disc, images);
  test::expect_error([&] { other.resume(dir.file("ckpt.safetensors")); },
                     {dir.file("ckpt.safetensors"), "discriminator"});
  const std::string bytes = read_file(dir.file("ckpt.safetensors"));
  std::ofstream(dir.file("cut.safetensors"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  test::expect_error([&] { resumed.resume(dir.file("cut.safetensors")); }, {dir.file("cut.safetensors")});
}

TEST(AutoencoderTraining, BadSettingsAreRefused) {
  AutoencoderTrainConfig c = fast_config();
  c.crop = 31;  // not a multiple of the factor 2
  test::expect_error([&] { AutoencoderTrainer(tiny_autoencoder("kl"), c, landscape_images(2)); }, {"multiple"});
  c.crop = 64;
  test::expect_error([&] { AutoencoderTrainer(tiny_autoencoder("kl"), c, landscape_images(2)); }, {"larger"});
  c = fast_config();
  c.kl_weight = -1;
  test::expect_error([&] { AutoencoderTrainer(tiny_autoencoder("kl"), c, landscape_images(2)); }, {"weights"});
}

}  // namespace
}  // namespace iidm

#pragma once
// Training LDM's first stage (autoencoder.py + taming's losses): L1 reconstruction plus the KL
// term (AutoencoderKL) or the codebook/commitment term (VQ), and optionally taming's PatchGAN
// discriminator with hinge loss and LDM's adaptive weight. LPIPS is not included: its VGG weights
// cannot be obtained here, so the perceptual term of the reference losses is left out.
#include <torch/torch.h>

#include <memory>
#include <string>

#include "autoencoder/autoencoder.h"
#include "autoencoder/discriminator.h"
#include "core/config.h"
#include "train/optim.h"

namespace iidm {

struct AutoencoderTrainConfig {
  int batch_size = 8;
  int steps = 10000;
  int crop = 0;  // square random crops of this size (0: whole images); random flips always
  AdamWOptions adam{1e-4, 0.5, 0.9, 1e-8, 0.0};  // LDM: Adam, betas (0.5, 0.9)
  double kl_weight = 1e-6;                       // AutoencoderKL
  double codebook_weight = 1.0;                  // VQ: weight of the codebook + commitment term
  double commitment = 0.25;                      // VQ: beta of the commitment term (VQ-VAE)
  int disc_start = -1;       // step from which the discriminator trains and counts; < 0: no discriminator
  double disc_weight = 0.5;  // scales LDM's adaptive generator weight
  int disc_channels = 64, disc_layers = 3;
  bool bf16 = false;  // autocast matmuls/convolutions to bfloat16
  uint64_t seed = 0;

  void validate() const;
  static AutoencoderTrainConfig from_json(ConfigReader& reader);
  Json to_json() const;
};

class AutoencoderTrainer {
 public:
  // `images`: [N, 3, H, W] in [-1, 1] on the CPU; batches are moved to `device`.
  AutoencoderTrainer(AutoencoderConfig model_config, AutoencoderTrainConfig config, torch::Tensor images,
                     torch::Device device = torch::kCPU);

  struct StepLoss {
    double loss = 0;                    // the autoencoder's total loss
    double l1 = 0;                      // mean absolute reconstruction error per value
    double reg = 0;                     // KL (per sample, summed) or codebook + commitment
    double g = 0, d = 0, d_weight = 0;  // discriminator terms (0 before disc_start)
  };
  StepLoss train_step();

  void init_weights(const std::string& path);
  void save_checkpoint(const std::string& path) const;
  void resume(const std::string& path);
  // The autoencoder's state dict under LDM's names (encoder.*, decoder.*, quant_conv...).
  void export_weights(const std::string& path) const;
  // LDM's scale_by_std: 1 / std of the latents (posterior modes or pre-quantisation h) of up to
  // `count` training images, so the diffusion sees unit-variance latents.
  double measure_scale_factor(int count = 64);
  // Inputs (top row) over reconstructions (bottom row) of the first `count` images, [3, H', W'].
  torch::Tensor reconstruction_grid(int count = 4);

  int64_t step() const { return step_; }
  Autoencoder& model() { return model_; }
  const AutoencoderConfig& model_config() const { return model_config_; }

 private:
  torch::Tensor batch(at::Generator& gen) const;

  AutoencoderConfig model_config_;
  AutoencoderTrainConfig config_;
  torch::Tensor images_;
  torch::Device device_;
  Autoencoder model_{nullptr};
  NLayerDiscriminator disc_{nullptr};
  std::vector<torch::Tensor> params_, disc_params_;
  std::unique_ptr<AdamW> optimizer_, disc_optimizer_;
  int64_t step_ = 0;
};

// Every image of ROOT/imgs (the competition layout), resized to width x height: [N, 3, H, W].
torch::Tensor load_image_set(const std::string& root, int width, int height);

}  // namespace iidm

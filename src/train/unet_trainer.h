#pragma once
// Training the denoiser: the hybrid loss (mse + vb with learned variance), label-map drop for
// classifier-free guidance, optional class-wise sparse masking, AdamW, EMA, gradient clipping.
// Every random draw of step n comes from a generator seeded by (seed, n) over the GLOBAL batch, so
// a resumed run equals an uninterrupted one and N processes equal one with the same global batch.
#include <torch/torch.h>

#include <memory>
#include <string>

#include "pipeline/model_config.h"
#include "train/optim.h"

namespace iidm {

class Distributed;

// The data set at the denoising resolution, in memory.
struct TrainingData {
  torch::Tensor x0;      // [N, C, h, w] float32: latents (IIDM) or images in [-1, 1] (SDM)
  torch::Tensor labels;  // [N, h, w] uint8 class ids
};

// Encodes ROOT (imgs/ + labels/) once with the autoencoder (or takes pixels when it is null),
// adding horizontal flips, and writes the cache to `cache_path` (safetensors) unless empty.
// With `bf16` the encoder runs under bfloat16 autocast (fast on CPUs with AMX).
TrainingData build_training_cache(const std::string& root, int width, int height, const ModelConfig& config,
                                  torch::nn::Module* autoencoder, bool flips, const std::string& cache_path,
                                  bool bf16 = false);
TrainingData load_training_cache(const std::string& path);

struct UNetTrainConfig {
  int batch_size = 8;
  int steps = 1000;
  AdamWOptions adam{};
  double ema_decay = 0.9999;
  bool ema_warmup = true;
  double grad_clip = 1.0;     // <= 0: off
  double label_drop = 0.2;    // p of an all-zero label map (classifier-free guidance)
  double sparse_prob = 0.0;   // p that a sample's map gets class-wise sparse masking
  double sparse_share = 0.5;  // the share of each class's pixels it removes
  int64_t ignore_label = 255;
  int crop = 0;       // square random crops of the cached maps (0: whole); SPADE conditioning is local
  bool bf16 = false;  // autocast matmuls/convolutions to bfloat16
  uint64_t seed = 0;

  void validate() const;
  static UNetTrainConfig from_json(ConfigReader& reader);
  Json to_json() const;
};

class UNetTrainer {
 public:
  UNetTrainer(ModelConfig model_config, UNetTrainConfig config, TrainingData data, Distributed* distributed = nullptr);
  ~UNetTrainer();

  // Initialise the weights from a U-Net checkpoint (e.g. to fine-tune).
  void init_weights(const std::string& path);
  // Restores model, EMA, optimiser and step from a checkpoint written by save_checkpoint().
  void resume(const std::string& path);
  // One optimisation step; returns the global mean loss (and its mse / vb parts).
  struct StepLoss {
    double loss = 0, mse = 0, vb = 0;
  };
  StepLoss train_step();
  // Model, EMA, optimiser moments and step, atomically (rank 0 writes; other ranks do nothing).
  void save_checkpoint(const std::string& path) const;
  // A plain U-Net state dict (EMA weights by default), usable by every pipeline command.
  // `dtype` (float32, float16, bfloat16) is the storage precision; loading converts back.
  void export_weights(const std::string& path, bool ema = true, torch::ScalarType dtype = torch::kFloat32) const;

  // A copy of the U-Net holding the EMA weights (what export_weights writes), for sampling.
  UNetModel ema_model() const;
  const TrainingData& data() const { return data_; }

  int64_t step() const { return step_; }
  UNetModel& model() { return model_; }
  const ModelConfig& model_config() const { return model_config_; }
  const UNetTrainConfig& config() const { return config_; }

 private:
  ModelConfig model_config_;
  UNetTrainConfig config_;
  TrainingData data_;
  Distributed* distributed_;
  UNetModel model_{nullptr};
  std::vector<torch::Tensor> params_;
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<Ema> ema_;
  std::unique_ptr<GaussianDiffusion> diffusion_;
  int64_t step_ = 0;
};

}  // namespace iidm

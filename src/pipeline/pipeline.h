#pragma once
// The generation pipeline shared by IIDM (latent, style reference) and SDM (pixel) modes:
// stages run one after the other, each starting from the previous output (refinement), with an
// optional colour transfer toward the ORIGINAL reference in between; the denoiser may ensemble
// several U-Nets; an edit mask regenerates only a region (known-region replacement each step).
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "autoencoder/autoencoder.h"
#include "core/labels.h"  // GenerationItem inputs: read_label_map, check_label_range
#include "core/seed.h"    // GenerationItem::seed: derive_seed
#include "diffusion/gaussian_diffusion.h"
#include "pipeline/codec.h"
#include "pipeline/memory.h"
#include "pipeline/model_config.h"
#include "pipeline/options.h"
#include "pipeline/stage.h"
#include "unet/unet.h"

namespace iidm {

// Files that make up a model: the config, one or more U-Net weights (per-step ensemble with
// weights) and, for latent models, the autoencoder weights.
struct ModelFiles {
  std::string config;
  std::vector<std::string> unets;
  std::vector<double> unet_weights;  // empty: uniform
  std::string autoencoder;
  // Checks what needs no file read (one non-negative weight per U-Net, not all zero), so a bad
  // ensemble is refused before any U-Net is loaded.
  void validate() const;
};

// One image to generate. Tensors are on the CPU at the output resolution.
struct GenerationItem {
  std::string name;         // for messages
  torch::Tensor labels;     // [H, W] int64 class ids (ignore_label = unlabelled)
  torch::Tensor start;      // [3, H, W] in [-1, 1]: the style reference (IIDM) or the image to edit / refine
  torch::Tensor edit_mask;  // optional [H, W] in {0, 1}: 1 = regenerate, 0 = keep `start`
  torch::Tensor instance;   // optional [H, W] instance ids (models with an instance-edge channel)
  uint64_t seed = 0;
};

struct GenerationResult {
  torch::Tensor images;  // [B, 3, H, W] in [-1, 1], CPU float32
  int64_t unet_forwards_per_image = 0;
  int64_t denoising_steps = 0;
  // The model timesteps each stage visited, in order (for checking presets against the reference).
  std::vector<std::vector<int64_t>> stage_timesteps;
  int64_t spade_cache_bytes = 0;  // the most the SPADE cache held (0 without it)
};

class Pipeline {
 public:
  Pipeline(ModelConfig config, std::vector<UNetModel> unets, std::vector<double> weights, Autoencoder autoencoder,
           PipelineOptions options);
  static Pipeline load(const ModelFiles& files, const PipelineOptions& options);

  const ModelConfig& config() const { return config_; }
  const PipelineOptions& options() const { return options_; }
  bool latent() const { return codec_.has_value(); }
  // Height and width must be multiples of this.
  int size_multiple() const;

  // Every stage checked against this model's diffusion chain; errors name the round.
  void check_stages(const std::vector<Stage>& stages) const;
  // The denoising steps a generation with `stages` takes: what a progress bar counts.
  int64_t denoising_steps(const std::vector<Stage>& stages) const;

  // The memory generating `batch` images of height x width with `stages` needs (an estimate), and
  // the same check generate() makes first: an error naming `what`, the need and the flag that helps.
  MemoryQuery memory_query(int64_t batch, int64_t height, int64_t width, const std::vector<Stage>& stages) const;
  void check_memory(int64_t batch, int64_t height, int64_t width, const std::vector<Stage>& stages,
                    const std::string& what) const;

  // Latent models: pixel images [B, 3, H, W] in [-1, 1] to diffusion latents and back (float32),
  // in tiles when options().tile > 0 (pipeline/codec.h).
  torch::Tensor encode(const torch::Tensor& images) { return codec_->encode(images); }
  torch::Tensor decode(const torch::Tensor& latents) { return codec_->decode(latents); }

  // Steps done and the total over all stages, after each denoising step.
  using Progress = std::function<void(int64_t done, int64_t total)>;
  // Generates a batch. All items share the size; a stage with strength < 1 needs `start`.
  GenerationResult generate(const std::vector<GenerationItem>& items, const std::vector<Stage>& stages,
                            const Progress& progress = {});

 private:
  struct Batch;  // one generate() call's inputs, at the denoising resolution

  Batch prepare_batch(const std::vector<GenerationItem>& items) const;
  const GaussianDiffusion& chain(const std::string& respacing);
  // The stage's start on its chain: pure noise, or the current images encoded and noised.
  torch::Tensor starting_point(Batch& batch, const torch::Tensor& current, const Stage& stage,
                               const GaussianDiffusion& chain, const StagePlan& plan, size_t stage_number);
  // One stage: from `current` pixel images (undefined: pure noise) to the next ones.
  torch::Tensor run_stage(Batch& batch, const torch::Tensor& current, const Stage& stage, size_t stage_number,
                          GenerationResult& result, const std::function<void(int64_t)>& on_step);

  ModelConfig config_;
  std::vector<UNetModel> unets_;
  std::vector<double> weights_;
  std::optional<LatentCodec> codec_;  // latent models only
  PipelineOptions options_;
  std::map<std::string, std::shared_ptr<const GaussianDiffusion>> chains_;  // by respacing
};

}  // namespace iidm

#pragma once
// What a generation will need in memory, estimated from the model's shapes before any work, so that
// an input too large for the machine is refused with a useful message instead of swapping for an
// hour or being killed. Estimates err high; `iidm bench` prints them beside the measured peaks
// (docs/performance.md).
#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "pipeline/model_config.h"

namespace iidm {

struct MemoryEstimate {
  int64_t unet = 0;         // a U-Net forward: activations kept for the skips, working set, attention
  int64_t spade_cache = 0;  // SPADE's cached maps (pipeline.h: cache_spade)
  int64_t encode = 0;       // the autoencoder's encoder (latent models)
  int64_t decode = 0;       // and decoder
  int64_t inputs = 0;       // label maps, images and latents held through the run
  int64_t weights = 0;      // the models' parameters and the prepacked copies of their conv weights

  // Sampling holds the weights, the cache and the inputs while a forward runs; the autoencoder runs
  // between.
  int64_t peak() const;
  // "12.3 GiB (U-Net 8.0, SPADE cache 2.1, decoding 1.9, ...)".
  std::string describe() const;
};

struct MemoryQuery {
  int64_t batch = 1;              // images per generate() call
  int64_t height = 0, width = 0;  // output pixels
  int64_t element_bytes = 4;      // the networks' precision: 4 fp32, 2 bf16 / fp16
  bool guidance_pair = true;      // a batched cond + uncond forward (batch doubles)
  bool cache_spade = true;
  int64_t tile = 0;  // autoencoder tile side in pixels (0: whole image)
  // The loaded models' parameters and buffers (resident when a check runs, so not asked of the
  // machine again), and the prepacked conv weights (core/conv.h) their first forwards add.
  int64_t weight_bytes = 0;
  int64_t prepacked_bytes = 0;
};

// Bytes of a module's parameters and buffers; with convolutions_only, of its 4-D (conv) weights.
int64_t module_bytes(const torch::nn::Module& module, bool convolutions_only = false);

MemoryEstimate estimate_memory(const ModelConfig& config, const MemoryQuery& query);

// Throws when `need` exceeds `limit_bytes` (0: what the machine has available now), saying how much
// it needs, how much there is, and — when tiling the autoencoder would help — the --tile flag and
// what it would need then. `what` names the input ("masks/a.png at 16000x12000").
void check_memory(const ModelConfig& config, const MemoryQuery& query, int64_t limit_bytes, const std::string& what);

// "12.3 GiB", or "512 MiB" below a GiB.
std::string format_gib(int64_t bytes);

}  // namespace iidm

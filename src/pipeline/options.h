#pragma once
// How the networks of a pipeline run: device, precision, memory format, guidance batching, the
// SPADE cache, autoencoder tiles and the memory limit. Shared by the Pipeline and the LatentCodec
// it (and `iidm bench` on its own) decodes with.
#include <torch/torch.h>

#include <cstdint>

namespace iidm {

struct PipelineOptions {
  torch::Device device = torch::kCPU;
  torch::ScalarType precision = torch::kFloat32;  // bf16 runs the networks in bfloat16 (sampler maths stays fp32)
  bool channels_last = false;                     // NHWC convolutions (fastest with bf16 on AMX CPUs)
  bool batched_guidance = true;                   // cond + uncond in one forward
  int64_t ignore_label = 255;                     // "unlabelled" (sparse layouts): zero one-hot vector
  // SPADE's γ/β computed once per label map and reused by every step and round (bit-identical;
  // costs their memory, ~185 MiB bf16 per map at IIDM's size). Off: recomputed per forward.
  bool cache_spade = true;
  // Autoencoder tiles (autoencoder/tiling.h): side in image pixels, 0 = the whole image at once.
  // Tiles share a quarter of their side with each neighbour; memory then grows with the tile, not
  // the image.
  int64_t tile = 0;
  // How many recently encoded images the autoencoder remembers with their latents, compared by
  // content, so encoding one again costs a comparison instead of the encoder (the editor: one style
  // reference under many label maps). Exact: encoding is deterministic (the posterior's mode).
  // 0 = off, the default, so a benchmark's repeated encodes measure the encoder.
  int64_t encode_cache = 0;
  // generate() refuses, before any work, inputs whose estimated memory (pipeline/memory.h) exceeds
  // this many bytes; 0 = what the machine has available.
  int64_t memory_limit = 0;

  torch::MemoryFormat memory_format() const {
    return channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  }
};

// Puts a module on a device / dtype / memory format for inference.
void prepare_for_inference(torch::nn::Module& module, const PipelineOptions& options);

}  // namespace iidm

#pragma once
// A latent model's autoencoder, ready for inference: pixel images to diffusion latents and back on
// the options' device, precision and memory format, in overlapping tiles when options.tile > 0.
// The Pipeline owns one; `iidm bench` builds one alone, so an autoencoder part's memory is its
// own and not the U-Net's too.
#include <torch/torch.h>

#include <deque>

#include "autoencoder/autoencoder.h"
#include "autoencoder/tiling.h"
#include "pipeline/options.h"

namespace iidm {

class LatentCodec {
 public:
  // Checks the tile against the autoencoder's factor and prepares the module for inference.
  LatentCodec(Autoencoder autoencoder, const PipelineOptions& options);

  int64_t factor() const { return autoencoder_->config().ddconfig.downsampling_factor(); }
  const AutoencoderImpl& autoencoder() const { return *autoencoder_; }
  // [B, 3, H, W] in [-1, 1] -> [B, C, H/f, W/f] and back; float32 results, whatever the precision.
  // encode() answers from its cache (options.encode_cache) when it has encoded these pixels lately.
  torch::Tensor encode(const torch::Tensor& images);
  torch::Tensor decode(const torch::Tensor& latents);

 private:
  TileOptions tile_options(bool decoding) const;

  Autoencoder autoencoder_;
  PipelineOptions options_;
  struct Encoded {
    torch::Tensor images, latents;  // private copies: a caller's later in-place change cannot alias them
  };
  std::deque<Encoded> encoded_;  // most recently used first, at most options_.encode_cache
};

}  // namespace iidm

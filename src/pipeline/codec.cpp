#include "pipeline/codec.h"

#include "core/error.h"

namespace iidm {
using torch::Tensor;

void prepare_for_inference(torch::nn::Module& module, const PipelineOptions& options) {
  module.eval();
  module.to(options.device, options.precision);
  if (options.channels_last) {
    torch::NoGradGuard no_grad;
    for (auto& p : module.parameters())
      if (p.dim() == 4) p.set_data(p.data().contiguous(torch::MemoryFormat::ChannelsLast));
  }
}

LatentCodec::LatentCodec(Autoencoder autoencoder, const PipelineOptions& options)
    : autoencoder_(std::move(autoencoder)), options_(options) {
  if (!autoencoder_) fail("latent codec: no autoencoder");
  if (options_.tile < 0) fail("pipeline: tile size must be >= 0 (0 = whole image), got {}", options_.tile);
  const int64_t f = factor();
  if (options_.tile > 0 && (options_.tile % f || options_.tile < 4 * f))
    fail("pipeline: --tile {} must be a multiple of the autoencoder's factor {} and at least {}", options_.tile, f,
         4 * f);
  if (options_.encode_cache < 0) fail("pipeline: encode_cache must be >= 0 (0 = off), got {}", options_.encode_cache);
  prepare_for_inference(*autoencoder_, options_);
}

TileOptions LatentCodec::tile_options(bool decoding) const {
  const int64_t f = factor();
  TileOptions t;
  if (options_.tile <= 0) return t;
  // A quarter of the tile shared with each neighbour, in whole latent pixels.
  const int64_t overlap = std::max<int64_t>(1, options_.tile / f / 4) * f;
  t.tile = decoding ? options_.tile / f : options_.tile;
  t.overlap = decoding ? overlap / f : overlap;
  t.scale = decoding ? static_cast<double>(f) : 1.0 / f;
  t.multiple = decoding ? 1 : f;
  t.norm_statistics_passes = 1;  // a recording pass: 2x the time, 3x closer to untiled (docs/performance.md)
  return t;
}

Tensor LatentCodec::encode(const Tensor& images) {
  torch::NoGradGuard no_grad;
  auto run = [&](const Tensor& x) {
    return autoencoder_->encode(x.to(options_.device, options_.precision).contiguous(options_.memory_format()));
  };
  if (options_.encode_cache == 0) return tiled_apply(run, images, tile_options(false)).contiguous();

  for (auto it = encoded_.begin(); it != encoded_.end(); ++it) {
    if (it->images.sizes() == images.sizes() && it->images.scalar_type() == images.scalar_type() &&
        it->images.device() == images.device() && torch::equal(it->images, images)) {
      Encoded hit = *it;
      encoded_.erase(it);
      encoded_.push_front(hit);
      return hit.latents.clone();
    }
  }
  Tensor latents = tiled_apply(run, images, tile_options(false)).contiguous();
  encoded_.push_front({images.clone(), latents.clone()});
  if (static_cast<int64_t>(encoded_.size()) > options_.encode_cache) encoded_.pop_back();
  return latents;
}

Tensor LatentCodec::decode(const Tensor& latents) {
  torch::NoGradGuard no_grad;
  auto run = [&](const Tensor& z) {
    return autoencoder_->decode(z.to(options_.device, options_.precision).contiguous(options_.memory_format()));
  };
  return tiled_apply(run, latents, tile_options(true)).contiguous();
}

}  // namespace iidm

#pragma once
// Tiled application of an image-to-image network (the autoencoder's encoder or decoder), so that
// memory stays bounded by the tile, not the image: overlapping tiles, each run on its own, blended
// across the overlaps with linear ramps (as diffusers' and stable-diffusion.cpp's tiled VAEs do).
//
// For a network whose every output depends only on inputs within `overlap / 4` of it, the result
// equals the untiled one everywhere (tests/tiling_test.cpp). LDM's autoencoders are not quite such
// networks: GroupNorm takes its statistics over the whole input and the decoder's middle attention
// mixes all positions. With shared_norm_statistics the tiles use image-wide GroupNorm statistics
// (core/norm.h), leaving the attention's locality and the statistics' approximation as the
// difference from untiled decoding (tests/performance_test.cpp and docs/performance.md measure it).
#include <torch/torch.h>

#include <functional>

namespace iidm {

struct TileOptions {
  int64_t tile = 0;     // tile side in input pixels; 0 = the whole input at once
  int64_t overlap = 0;  // input pixels each tile shares with its neighbour (< tile)
  // Output size per input pixel (the decoder: the downsampling factor f; the encoder: 1/f) and
  // the multiple every tile side and offset must be (the encoder: f).
  double scale = 1.0;
  int64_t multiple = 1;
  // GroupNorm statistics shared across tiles (core/norm.h): this many passes over the tiles to
  // estimate the image's statistics (one recording, the rest refining) before the real one; 0 =
  // each tile with its own statistics. Each pass costs about as much as the real one.
  int norm_statistics_passes = 0;
  void validate() const;
};

// fn maps [N, C, h, w] to [N, C', h*scale, w*scale]. Returns fn(x) computed tile by tile, float32.
torch::Tensor tiled_apply(const std::function<torch::Tensor(const torch::Tensor&)>& fn, const torch::Tensor& x,
                          const TileOptions& options);

// The tile offsets along one side of `length`: 0, stride, 2*stride, ..., with the last tile flush
// with the end; one offset when the tile covers the side.
std::vector<int64_t> tile_offsets(int64_t length, int64_t tile, int64_t overlap, int64_t multiple);

}  // namespace iidm

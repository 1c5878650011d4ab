#include "autoencoder/tiling.h"

#include <cmath>

#include "core/error.h"
#include "core/norm.h"

namespace iidm {
using torch::Tensor;
using torch::indexing::Slice;

void TileOptions::validate() const {
  if (tile < 0) fail("tiling: tile size must be >= 0 (0 = untiled), got {}", tile);
  if (multiple < 1) fail("tiling: multiple must be >= 1, got {}", multiple);
  if (!(scale > 0)) fail("tiling: scale must be > 0, got {}", scale);
  if (tile == 0) return;
  if (tile % multiple) fail("tiling: tile size {} must be a multiple of {}", tile, multiple);
  if (overlap < 0 || overlap >= tile) fail("tiling: overlap must be in [0, {}), got {}", tile, overlap);
  if (overlap % multiple) fail("tiling: overlap {} must be a multiple of {}", overlap, multiple);
  if (norm_statistics_passes < 0) fail("tiling: norm statistics passes must be >= 0, got {}", norm_statistics_passes);
}

std::vector<int64_t> tile_offsets(int64_t length, int64_t tile, int64_t overlap, int64_t multiple) {
  if (tile <= 0 || tile >= length) return {0};
  const int64_t stride = tile - overlap;
  std::vector<int64_t> offsets;
  for (int64_t at = 0;; at += stride) {
    if (at + tile >= length) {
      // The last tile ends flush with the side (its start rounded down to the multiple).
      offsets.push_back(std::max<int64_t>(0, (length - tile) / multiple * multiple));
      break;
    }
    offsets.push_back(at);
  }
  return offsets;
}

namespace {

// Blending weights along one side of a tile of `size` output pixels. Across an overlap of o pixels
// with a neighbour, the outer quarter (at the tile's edge, where its outputs saw the zero padding
// instead of the neighbour's inputs) weighs 0, the middle half ramps linearly, the inner quarter
// weighs 1; the neighbour's weights are the mirror image, so they sum to 1. A network whose outputs
// depend on inputs at most o/4 output pixels away is then reproduced exactly.
Tensor ramp(int64_t size, int64_t overlap_before, int64_t overlap_after) {
  Tensor w = torch::ones({size}, torch::kFloat32);
  auto rising = [](int64_t o) {
    const int64_t margin = o / 4, band = o - 2 * margin;
    Tensor r = torch::zeros({o}, torch::kFloat32);
    r.index({Slice(margin, margin + band)}).copy_((torch::arange(band, torch::kFloat32) + 0.5) / band);
    r.index({Slice(margin + band, o)}).fill_(1.0);
    return r;
  };
  if (overlap_before > 0) w.index({Slice(0, overlap_before)}).mul_(rising(overlap_before));
  if (overlap_after > 0) w.index({Slice(size - overlap_after, size)}).mul_(rising(overlap_after).flip(0));
  return w;
}

}  // namespace

Tensor tiled_apply(const std::function<Tensor(const Tensor&)>& fn, const Tensor& x, const TileOptions& o) {
  o.validate();
  TORCH_CHECK(x.dim() == 4, "tiled_apply: input must be [N, C, H, W], got ", x.sizes());
  const int64_t H = x.size(2), W = x.size(3);
  if (o.tile == 0 || (o.tile >= H && o.tile >= W)) return fn(x).to(torch::kFloat32);
  if (H % o.multiple || W % o.multiple) fail("tiling: input {}x{} (WxH) must be a multiple of {}", W, H, o.multiple);
  const auto rows = tile_offsets(H, o.tile, o.overlap, o.multiple);
  const auto cols = tile_offsets(W, o.tile, o.overlap, o.multiple);
  auto out_len = [&](int64_t n) { return static_cast<int64_t>(std::llround(n * o.scale)); };

  // The part of each tile it owns: up to the middle of its overlaps (every pixel owned once).
  auto owned = [&](const std::vector<int64_t>& offs, size_t i, int64_t length) {
    const int64_t size = std::min(o.tile, length - offs[i]);
    const double start = i == 0 ? offs[i] : 0.5 * (offs[i] + offs[i - 1] + o.tile);
    const double end = i + 1 == offs.size() ? offs[i] + size : 0.5 * (offs[i + 1] + offs[i] + size);
    return std::make_pair((start - offs[i]) / size, (end - offs[i]) / size);
  };
  auto region = [&](size_t r, size_t c) {
    const auto [top, bottom] = owned(rows, r, H);
    const auto [left, right] = owned(cols, c, W);
    return SharedGroupNormStatistics::Region{top, bottom, left, right};
  };
  auto tile_of = [&](size_t r, size_t c) {
    const int64_t y0 = rows[r], x0 = cols[c];
    return x.index({Slice(), Slice(), Slice(y0, std::min(y0 + o.tile, H)), Slice(x0, std::min(x0 + o.tile, W))});
  };
  SharedGroupNormStatistics stats;
  using Mode = SharedGroupNormStatistics::Mode;
  for (int pass = 0; pass < o.norm_statistics_passes; ++pass) {
    for (size_t r = 0; r < rows.size(); ++r)
      for (size_t c = 0; c < cols.size(); ++c) {
        SharedGroupNormStatistics::Scope scope(stats, pass == 0 ? Mode::kRecord : Mode::kRefine, region(r, c));
        fn(tile_of(r, c));
      }
    stats.finish_pass();
  }

  Tensor out, weight;
  for (size_t r = 0; r < rows.size(); ++r) {
    for (size_t c = 0; c < cols.size(); ++c) {
      const int64_t y0 = rows[r], x0 = cols[c];
      const int64_t th = std::min(o.tile, H - y0), tw = std::min(o.tile, W - x0);
      Tensor piece;
      if (o.norm_statistics_passes > 0) {
        SharedGroupNormStatistics::Scope scope(stats, Mode::kApply, region(r, c));
        piece = fn(tile_of(r, c)).to(torch::kFloat32);
      } else {
        piece = fn(tile_of(r, c)).to(torch::kFloat32);
      }
      const int64_t oy = out_len(y0), ox = out_len(x0), oh = piece.size(2), ow = piece.size(3);
      if (!out.defined()) {
        out = torch::zeros({piece.size(0), piece.size(1), out_len(H), out_len(W)}, piece.options());
        weight = torch::zeros({out_len(H), out_len(W)}, piece.options());
      }
      // Overlaps with the previous / next tile on each side, in output pixels.
      auto overlap_before = [&](const std::vector<int64_t>& offs, size_t i, int64_t size) {
        return i == 0 ? int64_t{0} : out_len(offs[i - 1] + size) - out_len(offs[i]);
      };
      const int64_t ov_top = overlap_before(rows, r, o.tile), ov_left = overlap_before(cols, c, o.tile);
      const int64_t ov_bottom = r + 1 < rows.size() ? out_len(y0 + th) - out_len(rows[r + 1]) : 0;
      const int64_t ov_right = c + 1 < cols.size() ? out_len(x0 + tw) - out_len(cols[c + 1]) : 0;
      const Tensor wy = ramp(oh, ov_top, ov_bottom), wx = ramp(ow, ov_left, ov_right);
      const Tensor w = (wy.unsqueeze(1) * wx.unsqueeze(0)).to(piece.device());
      out.index({Slice(), Slice(), Slice(oy, oy + oh), Slice(ox, ox + ow)}).add_(piece * w);
      weight.index({Slice(oy, oy + oh), Slice(ox, ox + ow)}).add_(w);
    }
  }
  // Every output pixel has a tile weighing it > 0 (its inner part, or a ramp); checked, not assumed.
  if (!(weight.min().item<float>() > 0))
    fail("tiling: tile {} with overlap {} leaves pixels uncovered", o.tile, o.overlap);
  return out / weight;
}

}  // namespace iidm

#include "pipeline/memory.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/process_stats.h"

namespace iidm {
namespace {

// Live tensors of a block's largest activation at once (input, fp32 norm copy, activation, conv
// output, residual sum, the allocator's slack), measured against peak RSS at a few sizes.
constexpr double kWorkingSet = 6.0;

// The skips of one image: every input block's output is kept until the decoder takes it.
int64_t skip_bytes(const UNetConfig& c, int64_t h, int64_t w, int64_t e) {
  const size_t levels = c.channel_mult.size();
  auto area = [&](size_t level) { return (h >> level) * (w >> level); };
  int64_t skips = static_cast<int64_t>(c.width(0)) * area(0);
  for (size_t l = 0; l < levels; ++l) {
    skips += static_cast<int64_t>(c.num_res_blocks) * c.width(l) * area(l);
    if (l + 1 < levels) skips += static_cast<int64_t>(c.width(l)) * area(l + 1);
  }
  return skips * e;
}

int64_t unet_bytes(const UNetConfig& c, int64_t n, int64_t h, int64_t w, int64_t e) {
  const size_t levels = c.channel_mult.size();
  auto area = [&](size_t level) { return (h >> level) * (w >> level); };
  // The working set of the widest block: the decoder's concatenated input at each level.
  int64_t widest = 0;
  for (size_t l = 0; l < levels; ++l) widest = std::max(widest, 2 * c.width(l) * area(l));
  // Attention: heads x T x T weights, in the compute dtype and once more in fp32 for the softmax.
  int64_t attention = 0;
  for (size_t l = 0; l < levels; ++l) {
    const int ds = 1 << l;
    if (std::find(c.attention_resolutions.begin(), c.attention_resolutions.end(), ds) == c.attention_resolutions.end())
      continue;
    const int64_t heads = c.num_head_channels == -1 ? c.num_heads : c.width(l) / c.num_head_channels;
    const int64_t tokens = area(l);
    attention = std::max(attention, heads * tokens * tokens * (2 * e + 4));
  }
  return n * (skip_bytes(c, h, w, e) + static_cast<int64_t>(kWorkingSet * widest * 4) + attention);
}

int64_t spade_bytes(const UNetConfig& c, int64_t n, int64_t h, int64_t w, int64_t e) {
  // (1 + γ, β) for both norms of every SDMResBlock: the middle block's two and the decoder's.
  const size_t levels = c.channel_mult.size();
  auto area = [&](size_t level) { return (h >> level) * (w >> level); };
  int64_t per_position_channels = 0;  // Σ over SPADE norms of channels x area
  const size_t last = levels - 1;
  per_position_channels += 2 * 2 * static_cast<int64_t>(c.width(last)) * area(last);
  for (int l = static_cast<int>(last); l >= 0; --l) {
    for (int i = 0; i <= c.num_res_blocks; ++i) {
      // in_norm over the concatenation (at most 2 x width), out_norm over width.
      per_position_channels += 3 * static_cast<int64_t>(c.width(l)) * area(l);
      if (l && i == c.num_res_blocks && c.resblock_updown)
        per_position_channels += static_cast<int64_t>(c.width(l)) * (area(l) + area(l - 1));
    }
  }
  return n * 2 * per_position_channels * e;
}

// One pass of LDM's encoder or decoder at full resolution H x W (latent h x w = H/f x W/f).
int64_t autoencoder_bytes(const DDConfig& d, int64_t n, int64_t H, int64_t W, int64_t e) {
  int64_t widest = 0;
  for (size_t l = 0; l < d.ch_mult.size(); ++l)
    widest = std::max(widest, static_cast<int64_t>(d.ch * d.ch_mult[l]) * (H >> l) * (W >> l));
  const int64_t f = d.downsampling_factor();
  // The middle attention over every latent position: the T x T scores, scaled, and their softmax
  // live at once (measured: VQ-f4's encoder at 512x384 took 2.8 GiB, 1.8 of them attention).
  const int64_t tokens = (H / f) * (W / f);
  return n * (static_cast<int64_t>(kWorkingSet * widest * 4) + 3 * tokens * tokens * std::max<int64_t>(e, 4) +
              2 * 3 * H * W * 4);
}

}  // namespace

int64_t MemoryEstimate::peak() const {
  return weights + inputs + std::max({unet + spade_cache, encode + spade_cache, decode});
}

int64_t module_bytes(const torch::nn::Module& module, bool convolutions_only) {
  int64_t total = 0;
  for (const auto& p : module.parameters())
    if (!convolutions_only || p.dim() == 4) total += static_cast<int64_t>(p.nbytes());
  if (!convolutions_only)
    for (const auto& b : module.buffers()) total += static_cast<int64_t>(b.nbytes());
  return total;
}

std::string format_gib(int64_t bytes) {
  if (bytes < (int64_t{1} << 30)) return fmt::format("{} MiB", (bytes + (1 << 19)) >> 20);
  return fmt::format("{:.1f} GiB", bytes / 1073741824.0);
}

std::string MemoryEstimate::describe() const {
  auto gib = [](int64_t b) { return fmt::format("{:.1f}", b / 1073741824.0); };
  std::string parts = fmt::format("U-Net {}, SPADE cache {}", gib(unet), gib(spade_cache));
  if (encode || decode) parts += fmt::format(", encoding {}, decoding {}", gib(encode), gib(decode));
  return fmt::format("{} ({}, inputs {}, weights {})", format_gib(peak()), parts, gib(inputs), gib(weights));
}

MemoryEstimate estimate_memory(const ModelConfig& config, const MemoryQuery& q) {
  if (q.batch < 1 || q.height < 1 || q.width < 1)
    fail("memory estimate: batch, height and width must be positive, got {}, {}, {}", q.batch, q.height, q.width);
  const bool latent = config.autoencoder.has_value();
  const int64_t f = latent ? config.autoencoder->ddconfig.downsampling_factor() : 1;
  const int64_t h = q.height / f, w = q.width / f, e = q.element_bytes;
  const int64_t forward_batch = q.batch * (q.guidance_pair ? 2 : 1);
  MemoryEstimate m;
  m.weights = q.weight_bytes + q.prepacked_bytes;
  m.unet = unet_bytes(config.unet, forward_batch, h, w, e);
  // A batched pair decodes a repeated copy of the shared encoding, which lives beside it.
  if (q.guidance_pair) m.unet += q.batch * skip_bytes(config.unet, h, w, e);
  if (q.cache_spade) m.spade_cache = spade_bytes(config.unet, forward_batch, h, w, e);
  // One-hot maps (fp32 and the compute dtype), pixel images (original and current), latents and noise.
  m.inputs = q.batch * (config.unet.num_classes * h * w * (4 + e) * 3 + 2 * 3 * q.height * q.width * 4 +
                        6 * config.data_channels() * h * w * 4);
  if (latent) {
    const auto& d = config.autoencoder->ddconfig;
    const int64_t th = q.tile > 0 ? std::min(q.tile, q.height) : q.height;
    const int64_t tw = q.tile > 0 ? std::min(q.tile, q.width) : q.width;
    const int64_t blend = q.tile > 0 ? q.batch * 4 * q.height * q.width * 4 : 0;  // the blended output, fp32
    m.decode = autoencoder_bytes(d, q.batch, th, tw, e) + blend;
    m.encode = autoencoder_bytes(d, q.batch, th, tw, e) + blend;
  }
  return m;
}

void check_memory(const ModelConfig& config, const MemoryQuery& query, int64_t limit_bytes, const std::string& what) {
  const int64_t machine = available_memory_bytes();
  if (limit_bytes <= 0 && machine <= 0) return;  // unknown (not Linux): nothing to compare with
  const int64_t available = limit_bytes > 0 ? limit_bytes : machine + allocator_free_bytes();
  const MemoryEstimate need = estimate_memory(config, query);
  // The loaded weights are in use already: what is asked of the machine is the rest.
  if (need.peak() - query.weight_bytes <= available) return;
  std::string hint;
  const bool autoencoder_heavy = std::max(need.encode, need.decode) > need.unet + need.spade_cache;
  if (config.autoencoder && query.tile == 0 && autoencoder_heavy) {
    MemoryQuery tiled = query;
    tiled.tile = 512;
    const MemoryEstimate with_tiles = estimate_memory(config, tiled);
    hint =
        with_tiles.peak() - query.weight_bytes <= available
            ? fmt::format("; --tile 512 runs the autoencoder in tiles and would need {}", format_gib(with_tiles.peak()))
            : fmt::format("; even with --tile 512 (autoencoder in tiles) it would need {}: use a smaller size",
                          format_gib(with_tiles.peak()));
  } else {
    hint = "; most of it is the U-Net's, which does not tile: use a smaller size or batch";
  }
  fail("{}: {}x{} would need about {} but this machine has {} available{}{}", what, query.width, query.height,
       need.describe(), format_gib(available),
       query.weight_bytes ? fmt::format(" besides the {} of weights loaded", format_gib(query.weight_bytes)) : "",
       hint);
}

}  // namespace iidm

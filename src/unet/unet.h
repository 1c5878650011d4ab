#pragma once
// The SDM U-Net (SDM's guided_diffusion/unet.py, which IIDM also runs on VQ latents): a
// guided-diffusion encoder of plain ResBlocks, and a middle block and decoder of SDMResBlocks whose
// group-norms are SPADE-modulated by the one-hot label map. Children are registered under the
// reference's attribute names and Sequential indices, so official checkpoints load unchanged.
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/fused_norm.h"
#include "core/norm.h"
#include "unet/unet_config.h"

namespace iidm {

// SPADE's modulation maps for one label map: the scale 1 + γ and the shift β of every SPADE layer,
// in forward order. They depend on the map alone, not on x or t, so a sampling run computes them on
// its first U-Net call and reuses them on every later step (and round) of the same map: at IIDM's
// size they are a third of the forward's convolution FLOPs. Reuse gives bit-identical outputs.
// Inference only; one cache per (model, label map tensor): a different map, model or dtype, or an
// in-place change of the map, refills it.
class SpadeCache {
 public:
  int64_t bytes() const;  // the memory the maps hold
  bool filled() const { return complete_; }
  void clear();

 private:
  friend class UNetModelImpl;
  friend class SPADEGroupNormImpl;
  // Starts a forward: keeps the maps if they belong to (owner, y), else empties them to refill.
  void begin(const void* owner, const torch::Tensor& y, torch::ScalarType dtype);
  void finish();  // after a forward: every SPADE layer was visited once
  // The maps of the next SPADE layer; computed by `compute` while filling.
  const std::pair<torch::Tensor, torch::Tensor>& next(
      const std::function<std::pair<torch::Tensor, torch::Tensor>()>& compute);

  const void* owner_ = nullptr;
  torch::Tensor key_;  // the label map, held so that its storage cannot be reused for another map
  int64_t key_version_ = -1;
  torch::ScalarType dtype_ = torch::kFloat32;
  bool complete_ = false;
  size_t cursor_ = 0;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> maps_;
};

// What a layer may condition on: the label map (in the compute dtype) and, at inference, the
// cache of SPADE's maps for it.
struct LabelConditioning {
  torch::Tensor map;
  SpadeCache* cache = nullptr;
};

// A layer of a TimestepEmbedSequential: it may use the label map `cond` and the timestep
// embedding `emb`, or neither.
class UNetLayer : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x, const LabelConditioning& cond, const torch::Tensor& emb) = 0;
};

// A holder whose children are registered as "0", "1", ... (nn.Sequential's key names) without
// owning the forward logic, which the parent runs piecewise as the reference does.
class IndexedModule : public torch::nn::Module {
 public:
  template <typename M>
  std::shared_ptr<M> add(int index, std::shared_ptr<M> child) {
    return register_module(std::to_string(index), std::move(child));
  }
};

class SPADEGroupNormImpl : public torch::nn::Module {
 public:
  SPADEGroupNormImpl(int norm_channels, int label_channels);
  // norm(x) * (1 + γ(segmap)) + β(segmap), in float32 (the SiLU after it runs there too); with a
  // cache, γ and β come from it (or go into it).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& segmap, SpadeCache* cache = nullptr);
  // SiLU(forward(...) [* channel.scale + channel.shift]) in x's dtype: what an SDMResBlock runs before
  // each conv, in one pass where core/fused_norm.h applies.
  torch::Tensor forward_silu(const torch::Tensor& x, const torch::Tensor& segmap, SpadeCache* cache,
                             const Modulation& channel = {});

 private:
  // (1 + γ, β) at x's resolution.
  std::pair<torch::Tensor, torch::Tensor> modulation(const torch::Tensor& segmap, int64_t height, int64_t width,
                                                     torch::ScalarType dtype);
  // (1 + γ, β) for x: from the cache, into it, or computed.
  std::pair<torch::Tensor, torch::Tensor> maps(const torch::Tensor& x, const torch::Tensor& segmap, SpadeCache* cache);
  torch::nn::GroupNorm norm{nullptr};
  std::shared_ptr<IndexedModule> mlp_shared;
  torch::nn::Conv2d mlp_shared_conv{nullptr}, mlp_gamma{nullptr}, mlp_beta{nullptr};
};
TORCH_MODULE(SPADEGroupNorm);

// What the encoder half of a forward leaves for the decoder half: every input block's output (the
// last one feeds the middle block) and the timestep embedding. The encoder never sees the label
// map, so classifier-free guidance's two passes (same x, same t, the map and its all-zero twin) can
// share one encoding and run only the middle block and decoder twice.
struct UNetEncoding {
  std::vector<torch::Tensor> skips;
  torch::Tensor emb;
  torch::ScalarType output_dtype = torch::kFloat32;  // x's dtype, which the decoder returns
  int64_t batch() const { return emb.size(0); }
  // The same encoding with its batch repeated `times` times (a batched guidance pair).
  UNetEncoding repeated(int64_t times) const;
};

class UNetModelImpl : public torch::nn::Module {
 public:
  explicit UNetModelImpl(const UNetConfig& config);
  // x [N, in_channels, H, W]; timesteps [N] (model timesteps, 0..999); y [N, num_classes, H, W]
  // one-hot (+ edge channel last), all zeros for the unconditional pass. H and W must be divisible
  // by 2^(levels-1). Returns [N, out_channels, H, W].
  // With `spade_cache` (inference only), SPADE's maps for `y` are computed once and reused while
  // the same y tensor is passed with the same cache.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& timesteps, const torch::Tensor& y,
                        SpadeCache* spade_cache = nullptr);
  // forward(x, t, y, cache) == decode(encode(x, t), y, cache), and decode leaves the encoding as it
  // was, so one encoding serves several label maps.
  UNetEncoding encode(const torch::Tensor& x, const torch::Tensor& timesteps);
  torch::Tensor decode(const UNetEncoding& encoding, const torch::Tensor& y, SpadeCache* spade_cache = nullptr);
  const UNetConfig& config() const { return config_; }

 private:
  UNetConfig config_;
  std::shared_ptr<IndexedModule> time_embed;
  torch::nn::Linear time_embed_0{nullptr}, time_embed_2{nullptr};
  torch::nn::ModuleList input_blocks, output_blocks;
  std::vector<std::shared_ptr<UNetLayer>> inputs_, outputs_;
  std::shared_ptr<UNetLayer> middle_block;
  std::shared_ptr<IndexedModule> out;
  torch::nn::GroupNorm out_norm{nullptr};
  torch::nn::Conv2d out_conv{nullptr};
};
TORCH_MODULE(UNetModel);

// Sinusoidal embedding [N, dim] of (possibly fractional) timesteps, cos half first, as
// guided_diffusion's timestep_embedding.
torch::Tensor timestep_embedding(const torch::Tensor& timesteps, int dim, double max_period = 10000.0);

}  // namespace iidm

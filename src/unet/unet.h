#pragma once
// The SDM U-Net (SDM's guided_diffusion/unet.py, which IIDM also runs on VQ latents): a
// guided-diffusion encoder of plain ResBlocks, and a middle block and decoder of SDMResBlocks whose
// group-norms are SPADE-modulated by the one-hot label map. Children are registered under the
// reference's attribute names and Sequential indices, so official checkpoints load unchanged.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "core/norm.h"
#include "unet/unet_config.h"

namespace iidm {

// A layer of a TimestepEmbedSequential: it may use the label map `cond` and the timestep
// embedding `emb`, or neither.
class UNetLayer : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cond, const torch::Tensor& emb) = 0;
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
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& segmap);

 private:
  torch::nn::GroupNorm norm{nullptr};
  std::shared_ptr<IndexedModule> mlp_shared;
  torch::nn::Conv2d mlp_shared_conv{nullptr}, mlp_gamma{nullptr}, mlp_beta{nullptr};
};
TORCH_MODULE(SPADEGroupNorm);

class UNetModelImpl : public torch::nn::Module {
 public:
  explicit UNetModelImpl(const UNetConfig& config);
  // x [N, in_channels, H, W]; timesteps [N] (model timesteps, 0..999); y [N, num_classes, H, W]
  // one-hot (+ edge channel last), all zeros for the unconditional pass. H and W must be divisible
  // by 2^(levels-1). Returns [N, out_channels, H, W].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& timesteps, const torch::Tensor& y);
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

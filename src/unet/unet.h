#pragma once
// The SDM U-Net (SDM's guided_diffusion/unet.py, which IIDM also runs on VQ latents): a
// guided-diffusion encoder of plain ResBlocks, and a middle block and decoder of SDMResBlocks whose
// group-norms are SPADE-modulated by the one-hot label map. Children are registered under the
// reference's attribute names and Sequential indices, so official checkpoints load unchanged.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/norm.h"

namespace iidm {

// The arguments of UNetModel.__init__ (not create_model's: attention_resolutions are the
// down-sampling factors ds at which attention runs). dims is always 2.
struct UNetConfig {
  int image_size = 64;  // informational; the network is fully convolutional
  int in_channels = 3;
  int model_channels = 128;
  int out_channels = 3;  // 2 x in_channels when the variance is learned
  int num_res_blocks = 2;
  std::vector<int> attention_resolutions{};
  double dropout = 0.0;
  std::vector<double> channel_mult{1, 2, 4, 8};  // may be fractional (SDM 512: 0.5, ...)
  bool conv_resample = true;
  int num_classes = 0;  // label channels fed to SPADE (classes, + 1 with an instance-edge map)
  int num_heads = 1;
  int num_head_channels = -1;
  int num_heads_upsample = -1;
  bool use_scale_shift_norm = false;
  bool resblock_updown = false;
  bool use_new_attention_order = false;
  bool use_checkpoint = false;  // accepted for compatibility; gradient checkpointing is not used
  bool use_fp16 = false;        // accepted for compatibility; precision is chosen at run time
  // Not a UNetModel argument: whether the last label channel is SDM's instance-edge map
  // (create_model's no_instance = false). Decides how label maps are turned into `y`.
  bool instance_edge = false;
  int num_labels() const { return instance_edge ? num_classes - 1 : num_classes; }

  void validate() const;  // throws iidm::Error naming the bad field
  static UNetConfig from_json(ConfigReader& reader);  // reads and validates; unknown keys are errors
  // From create_model's arguments as SDM/IIDM scripts pass them (num_channels, attention
  // resolutions as image sizes "32,16,8", channel_mult "" = by image size, learn_sigma,
  // no_instance, image_size an int or IIDM's [width, height]).
  static UNetConfig from_create_model(ConfigReader& reader);
  // Either {"create_model": {...}} or UNetModel's own arguments.
  static UNetConfig from_any(ConfigReader& reader);
  int width(size_t level) const { return static_cast<int>(channel_mult[level] * model_channels); }
  Json to_json() const;
};

// A layer of a TimestepEmbedSequential: it may use the label map `cond` and the timestep
// embedding `emb`, or neither.
class UNetLayer : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cond,
                                const torch::Tensor& emb) = 0;
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

// One-hot label map [N, classes(+1), H, W] from integer labels [N, H, W]. Label `ignore_label`
// (unlabelled pixels of sparse layouts) gives an all-zero vector; any other value outside
// [0, classes) is an error. With `instance` ([N, H, W] ids) an edge channel is appended.
torch::Tensor one_hot_labels(const torch::Tensor& labels, int num_classes, int64_t ignore_label = 255,
                             const torch::Tensor& instance = {});
// SDM's instance edge map [N, 1, H, W]: a pixel is an edge if it differs from a 4-neighbour.
torch::Tensor instance_edges(const torch::Tensor& instance);

}  // namespace iidm

#include "unet/unet.h"

#include <cmath>

#include "core/conv.h"
#include "core/error.h"

namespace iidm {
namespace F = torch::nn::functional;
using torch::Tensor;

// ---------------------------------------------------------------------------------------------
// Building blocks

namespace {

torch::nn::GroupNorm normalization(int channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(32, channels).eps(1e-5));
}

torch::nn::Conv2d conv3x3(int in, int out, int stride = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1));
}
torch::nn::Conv2d conv1x1(int in, int out) { return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1)); }

Tensor upsample_nearest2x(const Tensor& x) {
  return F::interpolate(x,
                        F::InterpolateFuncOptions().scale_factor(std::vector<double>{2.0, 2.0}).mode(torch::kNearest));
}
Tensor avg_pool2x(const Tensor& x) { return F::avg_pool2d(x, F::AvgPool2dFuncOptions(2).stride(2)); }

// At inference the element-wise steps after a norm (modulation, SiLU, residual sums) run in place
// on the norm's fresh output: the same values without a new buffer per step, which the allocator
// would have to find (and, with glibc's defaults, fault in) again. With gradients recorded they
// run out of place, as autograd needs the inputs.
bool in_place() { return !torch::GradMode::is_enabled(); }

// SiLU of a norm's float32 output, cast to the activations' dtype afterwards. Norms, their
// modulation and SiLU all stay in float32: fewer roundings than casting the norm's output back to
// bf16 first, and faster on the CPU, whose bf16 SiLU is not vectorised in LibTorch 1.13 (a
// 1x256x96x128 GroupNorm -> modulation -> SiLU chain measured 5.6 ms with a bf16 SiLU, 4.0 here).
Tensor silu_narrow(Tensor wide, torch::ScalarType dtype) {
  return (in_place() ? torch::silu_(wide) : torch::silu(wide)).to(dtype);
}

// GroupNorm in float32 whatever the input's dtype, left in float32 for what follows: group_norm_f32
// of the float32 input (it casts back to the input's dtype, which is then float32 already).
Tensor group_norm_wide(torch::nn::GroupNorm& norm, const Tensor& x) {
  return group_norm_f32(norm, x.to(torch::kFloat32));
}

// fresh * scale + shift, for a `fresh` tensor no one else holds (a norm's output).
Tensor modulate_fresh(Tensor fresh, const Tensor& scale, const Tensor& shift) {
  return in_place() ? fresh.mul_(scale).add_(shift) : fresh * scale + shift;
}

// SiLU((GroupNorm(x) [* spatial]) [* channel]) in x's dtype: the fused pass of core/fused_norm.h
// where it applies (CPU inference, channels-last), else the same steps as separate operators in
// float32.
Tensor group_norm_silu(torch::nn::GroupNorm& norm, const Tensor& x, const Modulation& spatial = {},
                       const Modulation& channel = {}) {
  if (Tensor fused = fused_group_norm_silu(*norm, x, spatial, channel); fused.defined()) return fused;
  Tensor h = group_norm_wide(norm, x);
  if (spatial.defined()) h = modulate_fresh(h, spatial.scale, spatial.shift);
  if (channel.defined()) h = modulate_fresh(h, channel.scale, channel.shift);
  return silu_narrow(h, x.scalar_type());
}

// input_blocks.0.0: a bare conv whose weight/bias sit directly under the layer's index.
class InputConv : public UNetLayer {
 public:
  InputConv(int in, int out) {
    torch::nn::Conv2d init = conv3x3(in, out);  // PyTorch's default initialisation
    weight = register_parameter("weight", init->weight.detach().clone());
    bias = register_parameter("bias", init->bias.detach().clone());
  }
  Tensor forward(const Tensor& x, const LabelConditioning&, const Tensor&) override {
    return F::conv2d(x, weight, F::Conv2dFuncOptions().bias(bias).padding(1));
  }
  Tensor weight, bias;
};

class Downsample : public UNetLayer {
 public:
  Downsample(int channels, bool use_conv, int out_channels) {
    if (use_conv) {
      op = register_module("op", conv3x3(channels, out_channels, 2));
    } else if (channels != out_channels) {
      fail("unet: average-pool downsampling cannot change channels ({} -> {})", channels, out_channels);
    }
  }
  Tensor forward(const Tensor& x, const LabelConditioning&, const Tensor&) override {
    return op ? conv2d(op, x) : avg_pool2x(x);
  }
  torch::nn::Conv2d op{nullptr};
};

class Upsample : public UNetLayer {
 public:
  Upsample(int channels, bool use_conv, int out_channels) {
    if (use_conv) conv = register_module("conv", conv3x3(channels, out_channels));
  }
  Tensor forward(const Tensor& x, const LabelConditioning&, const Tensor&) override {
    Tensor h = upsample_nearest2x(x);
    return conv ? conv2d(conv, h) : h;
  }
  torch::nn::Conv2d conv{nullptr};
};

enum class Resample { kNone, kUp, kDown };

Tensor resample(const Tensor& x, Resample mode) {
  switch (mode) {
    case Resample::kUp:
      return upsample_nearest2x(x);
    case Resample::kDown:
      return avg_pool2x(x);
    default:
      return x;
  }
}

// The settings of one ResBlock or SDMResBlock.
struct ResBlockParts {
  int channels, out_channels;
  bool scale_shift;
  double dropout;
  Resample updown;
};

// What ResBlock and SDMResBlock share, built and run once: in_layers (SiLU, conv), emb_layers
// (SiLU, linear), out_layers (SiLU, dropout, conv), skip_connection and the forward
//   h = conv(resample(SiLU(norm_in(x)))); h = norm_out(h) * (1 + scale) + shift  (or norm_out(h + emb))
//   out = skip(resample(x)) + conv(dropout(SiLU(h)))
// They differ only in the norm: GroupNorm as the first entry of in_layers / out_layers, or SPADE
// beside them as in_norm / out_norm (which shifts the Sequential indices).
class ResBlockBase : public UNetLayer {
 public:
  Tensor forward(const Tensor& x_in, const LabelConditioning& cond, const Tensor& emb) override {
    Tensor h = norm_silu_in(x_in, cond);
    Tensor x = x_in;
    if (p_.updown != Resample::kNone) {  // resample between the activation and the conv
      h = resample(h, p_.updown);
      x = resample(x, p_.updown);
    }
    h = conv2d(*in_conv, h);
    Tensor emb_out = emb_linear->forward(torch::silu(emb)).to(h.scalar_type()).unsqueeze(-1).unsqueeze(-1);
    if (p_.scale_shift) {
      auto chunks = emb_out.chunk(2, 1);  // scale, shift: [N, C, 1, 1] each
      h = norm_silu_out(h, cond, {1 + chunks[0], chunks[1]});
    } else {
      h = norm_silu_out(h + emb_out, cond, {});
    }
    h = conv2d(*out_conv, torch::dropout(h, p_.dropout, is_training()));
    const Tensor residual = skip ? conv2d(skip, x) : x;
    return in_place() ? h.add_(residual) : residual + h;
  }

 protected:
  explicit ResBlockBase(const ResBlockParts& p) : p_(p) {}
  // SiLU(norm(x)) and SiLU(norm(h) * (1 + scale) + shift) in the activations' dtype; the norm (and
  // its modulation and SiLU) computed in float32.
  virtual Tensor norm_silu_in(const Tensor& x, const LabelConditioning& cond) = 0;
  virtual Tensor norm_silu_out(const Tensor& h, const LabelConditioning& cond, const Modulation& emb) = 0;

  // The children in the reference's order (out_layers, then skip_connection); `norm` (or nullptr)
  // becomes entry 0 of the Sequential.
  void add_in_layers(std::shared_ptr<torch::nn::Module> norm) {
    in_layers = register_module("in_layers", std::make_shared<IndexedModule>());
    int index = 0;
    if (norm) in_layers->add(index++, std::move(norm));
    in_layers->add(index++, torch::nn::SiLU().ptr());
    in_conv = in_layers->add(index, conv3x3(p_.channels, p_.out_channels).ptr());
  }
  void add_emb_layers(int emb_channels) {
    emb_layers = register_module("emb_layers", std::make_shared<IndexedModule>());
    emb_layers->add(0, torch::nn::SiLU().ptr());
    const int emb_out = p_.scale_shift ? 2 * p_.out_channels : p_.out_channels;
    emb_linear = emb_layers->add(1, torch::nn::Linear(emb_channels, emb_out).ptr());
  }
  void add_out_layers(std::shared_ptr<torch::nn::Module> norm) {
    out_layers = register_module("out_layers", std::make_shared<IndexedModule>());
    int index = 0;
    if (norm) out_layers->add(index++, std::move(norm));
    out_layers->add(index++, torch::nn::SiLU().ptr());
    out_layers->add(index++, torch::nn::Dropout(p_.dropout).ptr());
    out_conv = out_layers->add(index, conv3x3(p_.out_channels, p_.out_channels).ptr());
    if (p_.out_channels != p_.channels)
      skip = register_module("skip_connection", conv1x1(p_.channels, p_.out_channels));
  }

 private:
  ResBlockParts p_;
  std::shared_ptr<IndexedModule> in_layers, emb_layers, out_layers;
  std::shared_ptr<torch::nn::Conv2dImpl> in_conv, out_conv;
  std::shared_ptr<torch::nn::LinearImpl> emb_linear;
  torch::nn::Conv2d skip{nullptr};
};

// guided_diffusion's ResBlock (encoder side): GroupNorm; the timestep added or as scale-shift.
class ResBlock : public ResBlockBase {
 public:
  ResBlock(const ResBlockParts& p, int emb_channels) : ResBlockBase(p) {
    in_norm = normalization(p.channels);
    add_in_layers(in_norm.ptr());
    add_emb_layers(emb_channels);
    out_norm = normalization(p.out_channels);
    add_out_layers(out_norm.ptr());
  }

 private:
  Tensor norm_silu_in(const Tensor& x, const LabelConditioning&) override { return group_norm_silu(in_norm, x); }
  Tensor norm_silu_out(const Tensor& h, const LabelConditioning&, const Modulation& emb) override {
    return group_norm_silu(out_norm, h, {}, emb);
  }
  torch::nn::GroupNorm in_norm{nullptr}, out_norm{nullptr};
};

// SDM's SDMResBlock (middle and decoder): as ResBlock with both norms SPADE-modulated by the
// label map.
class SDMResBlock : public ResBlockBase {
 public:
  SDMResBlock(const ResBlockParts& p, int emb_channels, int label_channels) : ResBlockBase(p) {
    in_norm = register_module("in_norm", SPADEGroupNorm(p.channels, label_channels));
    add_in_layers(nullptr);
    add_emb_layers(emb_channels);
    out_norm = register_module("out_norm", SPADEGroupNorm(p.out_channels, label_channels));
    add_out_layers(nullptr);
  }

 private:
  Tensor norm_silu_in(const Tensor& x, const LabelConditioning& cond) override {
    return in_norm->forward_silu(x, cond.map, cond.cache);
  }
  Tensor norm_silu_out(const Tensor& h, const LabelConditioning& cond, const Modulation& emb) override {
    return out_norm->forward_silu(h, cond.map, cond.cache, emb);
  }
  SPADEGroupNorm in_norm{nullptr}, out_norm{nullptr};
};

// Self-attention over spatial positions, guided_diffusion's AttentionBlock.
class AttentionBlock : public UNetLayer {
 public:
  AttentionBlock(int channels, int num_heads, int num_head_channels, bool new_order)
      : heads_(num_head_channels == -1 ? num_heads : channels / num_head_channels), new_order_(new_order) {
    norm = register_module("norm", normalization(channels));
    qkv = register_module("qkv", torch::nn::Conv1d(torch::nn::Conv1dOptions(channels, 3 * channels, 1)));
    proj_out = register_module("proj_out", torch::nn::Conv1d(torch::nn::Conv1dOptions(channels, channels, 1)));
  }

  Tensor forward(const Tensor& x_in, const LabelConditioning&, const Tensor&) override {
    if (x_in.dim() == 4 && x_in.is_contiguous(torch::MemoryFormat::ChannelsLast)) return forward_tokens(x_in);
    const auto sizes = x_in.sizes();
    const int64_t b = sizes[0], c = sizes[1];
    Tensor x = x_in.reshape({b, c, -1});                     // [B, C, T]
    Tensor qkv_out = qkv->forward(group_norm_f32(norm, x));  // [B, 3C, T]
    const int64_t length = x.size(2), ch = c / heads_;
    Tensor q, k, v;
    if (new_order_) {  // split q/k/v first, then heads (QKVAttention)
      auto parts = qkv_out.chunk(3, 1);
      q = parts[0].reshape({b * heads_, ch, length});
      k = parts[1].reshape({b * heads_, ch, length});
      v = parts[2].reshape({b * heads_, ch, length});
    } else {  // heads first, then q/k/v (QKVAttentionLegacy)
      auto parts = qkv_out.reshape({b * heads_, 3 * ch, length}).split(ch, 1);
      q = parts[0];
      k = parts[1];
      v = parts[2];
    }
    // Scale q and k by ch^-1/4 each, as the reference does (more stable in low precision).
    const double scale = 1.0 / std::sqrt(std::sqrt(static_cast<double>(ch)));
    Tensor weight = torch::bmm((q * scale).transpose(1, 2), k * scale);  // [BH, T(query), S(key)]
    weight = torch::softmax(weight.to(torch::kFloat32), -1).to(weight.scalar_type());
    Tensor a = torch::bmm(v, weight.transpose(1, 2));  // [BH, ch, T]
    Tensor h = proj_out->forward(a.reshape({b, -1, length}));
    return (x + h).reshape(sizes);
  }

 private:
  // The same attention for a channels-last input, computed on its tokens [B, T, C] (a view of it):
  // the 1x1 convolutions become matrix products on the token rows, and the result is a
  // channels-last tensor again with canonical strides, so what follows stays channels-last. (Run on
  // the [B, C, T] layout, the batch-1 output was a view whose batch stride passed
  // is_contiguous(ChannelsLast) yet made GroupNorm and the convolutions after it fall back to NCHW.)
  Tensor forward_tokens(const Tensor& x_in) {
    const int64_t b = x_in.size(0), c = x_in.size(1), height = x_in.size(2), width = x_in.size(3);
    const int64_t length = height * width, ch = c / heads_;
    auto tokens = [&](const Tensor& t) { return t.permute({0, 2, 3, 1}).reshape({b, length, t.size(1)}); };
    Tensor qkv_out = torch::linear(tokens(group_norm_f32(norm, x_in)), qkv->weight.squeeze(-1), qkv->bias);
    // Per head [B * heads, T, ch]; the channel order of q/k/v and heads as in the NCHW path.
    auto heads = [&](const Tensor& t) {
      return t.reshape({b, length, heads_, ch}).permute({0, 2, 1, 3}).reshape({b * heads_, length, ch});
    };
    Tensor q, k, v;
    if (new_order_) {
      q = heads(qkv_out.narrow(2, 0, c));
      k = heads(qkv_out.narrow(2, c, c));
      v = heads(qkv_out.narrow(2, 2 * c, c));
    } else {
      const Tensor per_head = qkv_out.reshape({b, length, heads_, 3 * ch}).permute({0, 2, 1, 3});
      q = per_head.narrow(3, 0, ch).reshape({b * heads_, length, ch});
      k = per_head.narrow(3, ch, ch).reshape({b * heads_, length, ch});
      v = per_head.narrow(3, 2 * ch, ch).reshape({b * heads_, length, ch});
    }
    const double scale = 1.0 / std::sqrt(std::sqrt(static_cast<double>(ch)));
    Tensor weight = torch::bmm(q * scale, (k * scale).transpose(1, 2));  // [BH, T(query), S(key)]
    weight = torch::softmax(weight.to(torch::kFloat32), -1).to(weight.scalar_type());
    Tensor a = torch::bmm(weight, v).reshape({b, heads_, length, ch}).permute({0, 2, 1, 3}).reshape({b, length, c});
    Tensor out = tokens(x_in) + torch::linear(a, proj_out->weight.squeeze(-1), proj_out->bias);  // [B, T, C]
    return out.reshape({b, height, width, c}).permute({0, 3, 1, 2});
  }

  int heads_;
  bool new_order_;
  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv1d qkv{nullptr}, proj_out{nullptr};
};

// guided_diffusion's TimestepEmbedSequential: children under "0", "1", ...
class TimestepEmbedSequential : public UNetLayer {
 public:
  void append(std::shared_ptr<UNetLayer> layer) {
    layers_.push_back(register_module(std::to_string(layers_.size()), std::move(layer)));
  }
  Tensor forward(const Tensor& x, const LabelConditioning& cond, const Tensor& emb) override {
    Tensor h = x;
    for (auto& layer : layers_) h = layer->forward(h, cond, emb);
    return h;
  }

 private:
  std::vector<std::shared_ptr<UNetLayer>> layers_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// SPADE

SPADEGroupNormImpl::SPADEGroupNormImpl(int norm_channels, int label_channels) {
  constexpr int kHidden = 128;  // SDM's nhidden
  norm = register_module("norm",
                         torch::nn::GroupNorm(torch::nn::GroupNormOptions(32, norm_channels).eps(1e-5).affine(false)));
  mlp_shared = register_module("mlp_shared", std::make_shared<IndexedModule>());
  mlp_shared_conv = torch::nn::Conv2d(mlp_shared->add(0, conv3x3(label_channels, kHidden).ptr()));
  mlp_shared->add(1, torch::nn::ReLU().ptr());
  mlp_gamma = register_module("mlp_gamma", conv3x3(kHidden, norm_channels));
  mlp_beta = register_module("mlp_beta", conv3x3(kHidden, norm_channels));
}

std::pair<Tensor, Tensor> SPADEGroupNormImpl::modulation(const Tensor& segmap, int64_t height, int64_t width,
                                                         torch::ScalarType dtype) {
  Tensor seg = F::interpolate(
      segmap.to(dtype), F::InterpolateFuncOptions().size(std::vector<int64_t>{height, width}).mode(torch::kNearest));
  Tensor actv = torch::relu(conv2d(mlp_shared_conv, seg));
  return {1 + conv2d(mlp_gamma, actv), conv2d(mlp_beta, actv)};
}

std::pair<Tensor, Tensor> SPADEGroupNormImpl::maps(const Tensor& x, const Tensor& segmap, SpadeCache* cache) {
  if (!cache) return modulation(segmap, x.size(2), x.size(3), x.scalar_type());
  return cache->next([&] { return modulation(segmap, x.size(2), x.size(3), x.scalar_type()); });
}

Tensor SPADEGroupNormImpl::forward(const Tensor& x, const Tensor& segmap, SpadeCache* cache) {
  Tensor normalized = group_norm_wide(norm, x);
  const auto [scale, shift] = maps(x, segmap, cache);
  return modulate_fresh(normalized, scale, shift);
}

Tensor SPADEGroupNormImpl::forward_silu(const Tensor& x, const Tensor& segmap, SpadeCache* cache,
                                        const Modulation& channel) {
  const auto [scale, shift] = maps(x, segmap, cache);
  return group_norm_silu(norm, x, {scale, shift}, channel);
}

int64_t SpadeCache::bytes() const {
  int64_t total = 0;
  for (const auto& [scale, shift] : maps_) total += scale.nbytes() + shift.nbytes();
  return total;
}

void SpadeCache::clear() {
  owner_ = nullptr;
  key_ = Tensor();
  key_version_ = -1;
  complete_ = false;
  cursor_ = 0;
  maps_.clear();
}

void SpadeCache::begin(const void* owner, const Tensor& y, torch::ScalarType dtype) {
  if (torch::GradMode::is_enabled())
    fail("unet: the SPADE cache is for inference (run under torch::NoGradGuard); training needs the gradients");
  const bool same = complete_ && owner_ == owner && key_.defined() &&
                    key_.unsafeGetTensorImpl() == y.unsafeGetTensorImpl() && key_version_ == y._version() &&
                    dtype_ == dtype;
  if (!same) {
    clear();
    owner_ = owner;
    key_ = y;
    key_version_ = y._version();
    dtype_ = dtype;
  }
  cursor_ = 0;
}

const std::pair<Tensor, Tensor>& SpadeCache::next(const std::function<std::pair<Tensor, Tensor>()>& compute) {
  if (complete_) {
    if (cursor_ >= maps_.size()) fail("unet: SPADE cache visited by more layers than it was filled by");
    return maps_[cursor_++];
  }
  maps_.push_back(compute());
  ++cursor_;
  return maps_.back();
}

void SpadeCache::finish() {
  if (complete_ && cursor_ != maps_.size())
    fail("unet: SPADE cache holds {} layers' maps but the forward used {}", maps_.size(), cursor_);
  complete_ = true;
}

// ---------------------------------------------------------------------------------------------
// UNetModel

UNetModelImpl::UNetModelImpl(const UNetConfig& config) : config_(config) {
  config_.validate();
  const UNetConfig& c = config_;
  const int time_embed_dim = c.model_channels * 4;
  const int heads_up = c.num_heads_upsample == -1 ? c.num_heads : c.num_heads_upsample;
  auto has_attention = [&](int ds) {
    return std::find(c.attention_resolutions.begin(), c.attention_resolutions.end(), ds) !=
           c.attention_resolutions.end();
  };

  time_embed = register_module("time_embed", std::make_shared<IndexedModule>());
  time_embed_0 = torch::nn::Linear(time_embed->add(0, torch::nn::Linear(c.model_channels, time_embed_dim).ptr()));
  time_embed->add(1, torch::nn::SiLU().ptr());
  time_embed_2 = torch::nn::Linear(time_embed->add(2, torch::nn::Linear(time_embed_dim, time_embed_dim).ptr()));

  input_blocks = register_module("input_blocks", torch::nn::ModuleList());
  output_blocks = register_module("output_blocks", torch::nn::ModuleList());
  auto add_input = [&](std::shared_ptr<TimestepEmbedSequential> block) {
    input_blocks->push_back(block);
    inputs_.push_back(block);
  };

  int ch = c.width(0);
  const int input_ch = ch;
  {
    auto first = std::make_shared<TimestepEmbedSequential>();
    first->append(std::make_shared<InputConv>(c.in_channels, ch));
    add_input(first);
  }
  std::vector<int> input_block_chans{ch};
  int ds = 1;
  for (size_t level = 0; level < c.channel_mult.size(); ++level) {
    const int level_width = c.width(level);
    for (int i = 0; i < c.num_res_blocks; ++i) {
      auto block = std::make_shared<TimestepEmbedSequential>();
      block->append(std::make_shared<ResBlock>(
          ResBlockParts{ch, level_width, c.use_scale_shift_norm, c.dropout, Resample::kNone}, time_embed_dim));
      ch = level_width;
      if (has_attention(ds))
        block->append(
            std::make_shared<AttentionBlock>(ch, c.num_heads, c.num_head_channels, c.use_new_attention_order));
      add_input(block);
      input_block_chans.push_back(ch);
    }
    if (level + 1 != c.channel_mult.size()) {
      auto block = std::make_shared<TimestepEmbedSequential>();
      if (c.resblock_updown)
        block->append(std::make_shared<ResBlock>(
            ResBlockParts{ch, ch, c.use_scale_shift_norm, c.dropout, Resample::kDown}, time_embed_dim));
      else
        block->append(std::make_shared<Downsample>(ch, c.conv_resample, ch));
      add_input(block);
      input_block_chans.push_back(ch);
      ds *= 2;
    }
  }

  {
    auto middle = std::make_shared<TimestepEmbedSequential>();
    const ResBlockParts parts{ch, ch, c.use_scale_shift_norm, c.dropout, Resample::kNone};
    middle->append(std::make_shared<SDMResBlock>(parts, time_embed_dim, c.num_classes));
    middle->append(std::make_shared<AttentionBlock>(ch, c.num_heads, c.num_head_channels, c.use_new_attention_order));
    middle->append(std::make_shared<SDMResBlock>(parts, time_embed_dim, c.num_classes));
    middle_block = register_module("middle_block", middle);
  }

  for (int level = static_cast<int>(c.channel_mult.size()) - 1; level >= 0; --level) {
    const int level_width = c.width(level);
    for (int i = 0; i <= c.num_res_blocks; ++i) {
      const int skip_ch = input_block_chans.back();
      input_block_chans.pop_back();
      auto block = std::make_shared<TimestepEmbedSequential>();
      block->append(std::make_shared<SDMResBlock>(
          ResBlockParts{ch + skip_ch, level_width, c.use_scale_shift_norm, c.dropout, Resample::kNone}, time_embed_dim,
          c.num_classes));
      ch = level_width;
      if (has_attention(ds))
        block->append(std::make_shared<AttentionBlock>(ch, heads_up, c.num_head_channels, c.use_new_attention_order));
      if (level && i == c.num_res_blocks) {
        if (c.resblock_updown)
          block->append(std::make_shared<SDMResBlock>(
              ResBlockParts{ch, ch, c.use_scale_shift_norm, c.dropout, Resample::kUp}, time_embed_dim, c.num_classes));
        else
          block->append(std::make_shared<Upsample>(ch, c.conv_resample, ch));
        ds /= 2;
      }
      output_blocks->push_back(block);
      outputs_.push_back(block);
    }
  }

  out = register_module("out", std::make_shared<IndexedModule>());
  out_norm = torch::nn::GroupNorm(out->add(0, normalization(ch).ptr()));
  out->add(1, torch::nn::SiLU().ptr());
  out_conv = torch::nn::Conv2d(out->add(2, conv3x3(input_ch, c.out_channels).ptr()));
}

Tensor UNetModelImpl::forward(const Tensor& x, const Tensor& timesteps, const Tensor& y, SpadeCache* spade_cache) {
  return decode(encode(x, timesteps), y, spade_cache);
}

UNetEncoding UNetModelImpl::encode(const Tensor& x, const Tensor& timesteps) {
  const auto& c = config_;
  TORCH_CHECK(x.dim() == 4 && x.size(1) == c.in_channels, "unet: x must be [N, ", c.in_channels, ", H, W], got ",
              x.sizes());
  TORCH_CHECK(timesteps.dim() == 1 && timesteps.size(0) == x.size(0), "unet: timesteps must be [", x.size(0), "], got ",
              timesteps.sizes());
  const int64_t factor = int64_t{1} << (c.channel_mult.size() - 1);
  TORCH_CHECK(x.size(2) % factor == 0 && x.size(3) % factor == 0, "unet: height and width must be divisible by ",
              factor, ", got ", x.size(2), "x", x.size(3));

  // Parameters decide the compute dtype (fp32, or bf16/fp16 when the model was converted).
  const auto dtype = out_conv->weight.scalar_type();
  UNetEncoding e;
  e.output_dtype = x.scalar_type();
  e.emb = timestep_embedding(timesteps, c.model_channels).to(dtype);
  e.emb = time_embed_2->forward(torch::silu(time_embed_0->forward(e.emb)));
  const LabelConditioning none{};  // the encoder's ResBlocks take no label map
  Tensor h = x.to(dtype);
  e.skips.reserve(inputs_.size());
  for (auto& block : inputs_) {
    h = block->forward(h, none, e.emb);
    e.skips.push_back(h);
  }
  return e;
}

Tensor UNetModelImpl::decode(const UNetEncoding& e, const Tensor& y, SpadeCache* spade_cache) {
  const auto& c = config_;
  TORCH_CHECK(e.skips.size() == inputs_.size() && e.emb.defined(), "unet: decode needs this model's encoding");
  const Tensor& first = e.skips.front();
  TORCH_CHECK(y.dim() == 4 && y.size(0) == e.batch() && y.size(1) == c.num_classes && y.size(2) == first.size(2) &&
                  y.size(3) == first.size(3),
              "unet: y must be [", e.batch(), ", ", c.num_classes, ", ", first.size(2), ", ", first.size(3), "], got ",
              y.sizes());
  const auto dtype = out_conv->weight.scalar_type();
  if (spade_cache) spade_cache->begin(this, y, dtype);
  // The label map in the activations' memory format, so that SPADE's convolutions run in it too.
  const LabelConditioning cond{y.to(dtype).contiguous(first.suggest_memory_format()), spade_cache};
  // Every layer below writes only into tensors it made itself, so the skips stay untouched.
  Tensor h = middle_block->forward(e.skips.back(), cond, e.emb);
  auto skip = e.skips.rbegin();
  for (auto& block : outputs_) {
    h = torch::cat({h, *skip++}, 1);
    h = block->forward(h, cond, e.emb);
  }
  h = conv2d(out_conv, group_norm_silu(out_norm, h));
  if (spade_cache) spade_cache->finish();
  return h.to(e.output_dtype);
}

UNetEncoding UNetEncoding::repeated(int64_t times) const {
  if (times == 1) return *this;
  UNetEncoding r;
  r.output_dtype = output_dtype;
  r.emb = emb.repeat({times, 1});
  r.skips.reserve(skips.size());
  for (const auto& s : skips) r.skips.push_back(torch::cat(std::vector<Tensor>(times, s)));
  return r;
}

// ---------------------------------------------------------------------------------------------
// Inputs

Tensor timestep_embedding(const Tensor& timesteps, int dim, double max_period) {
  const int half = dim / 2;
  auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(timesteps.device());
  // Same op order as the reference, so the float32 rounding matches.
  Tensor freqs = torch::exp(-std::log(max_period) * torch::arange(0, half, opts) / half);
  Tensor args = timesteps.to(torch::kFloat32).unsqueeze(1) * freqs.unsqueeze(0);
  Tensor emb = torch::cat({torch::cos(args), torch::sin(args)}, -1);
  if (dim % 2) emb = torch::cat({emb, torch::zeros_like(emb.narrow(1, 0, 1))}, -1);
  return emb;
}

}  // namespace iidm

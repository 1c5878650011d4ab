#include "autoencoder/autoencoder.h"

#include <cmath>

#include "core/conv.h"
#include "core/error.h"
#include "core/fused_norm.h"
#include "core/norm.h"

namespace iidm {
namespace F = torch::nn::functional;
using torch::Tensor;

// ---------------------------------------------------------------------------------------------
// Configs

void DDConfig::validate() const {
  auto positive = [](int v, const char* name) {
    if (v <= 0) fail("ddconfig: {} must be positive, got {}", name, v);
  };
  positive(z_channels, "z_channels");
  positive(resolution, "resolution");
  positive(in_channels, "in_channels");
  positive(out_ch, "out_ch");
  positive(ch, "ch");
  positive(num_res_blocks, "num_res_blocks");
  if (ch_mult.empty()) fail("ddconfig: ch_mult is empty");
  positive(norm_groups, "norm_groups");
  if (ch % norm_groups) fail("ddconfig: ch {} is not divisible by {} groups", ch, norm_groups);
  for (int m : ch_mult) {
    positive(m, "each ch_mult entry");
    if ((m * ch) % norm_groups)
      fail("ddconfig: channel width {} x {} is not divisible by {} groups", m, ch, norm_groups);
  }
  if (dropout < 0 || dropout >= 1) fail("ddconfig: dropout must be in [0, 1), got {}", dropout);
}

DDConfig DDConfig::from_json(ConfigReader& r) {
  DDConfig c;
  read_fields(r, c);
  const std::string attn_type = r.get<std::string>("attn_type", "vanilla");
  if (attn_type != "vanilla") fail("{}: attn_type '{}' is not supported (only 'vanilla')", r.where(), attn_type);
  return r.validated(c);
}

Json DDConfig::to_json() const { return write_fields(*this); }

void AutoencoderConfig::validate() const {
  ddconfig.validate();
  if (kind != "kl" && kind != "vq") fail("autoencoder config: kind must be 'kl' or 'vq', got '{}'", kind);
  if (embed_dim <= 0) fail("autoencoder config: embed_dim must be positive, got {}", embed_dim);
  if (kind == "kl" && !ddconfig.double_z)
    fail("autoencoder config: a KL autoencoder needs ddconfig.double_z = true (mean and log-variance)");
  if (kind == "vq" && ddconfig.double_z) fail("autoencoder config: a VQ autoencoder needs ddconfig.double_z = false");
  if (kind == "vq" && n_embed <= 0) fail("autoencoder config: a VQ autoencoder needs n_embed > 0");
  if (!(scale_factor > 0) || !std::isfinite(scale_factor))
    fail("autoencoder config: scale_factor must be a positive number, got {}", scale_factor);
}

AutoencoderConfig AutoencoderConfig::from_json(ConfigReader& r) {
  AutoencoderConfig c;
  r.ignore({"note"});
  read_fields(r, c);
  if (c.kind == "autoencoder_kl") c.kind = "kl";  // the parity cases' spelling
  if (c.kind == "autoencoder_vq") c.kind = "vq";
  return r.validated(c);
}

Json AutoencoderConfig::to_json() const { return write_fields(*this); }

// ---------------------------------------------------------------------------------------------
// Blocks

namespace {
torch::nn::GroupNorm normalize(int channels, int groups) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(1e-6).affine(true));
}
torch::nn::Conv2d conv(int in, int out, int kernel, int stride = 1, int padding = 0) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding));
}
Tensor swish(const Tensor& x) { return x * torch::sigmoid(x); }
// nonlinearity(Normalize(x)): one fused pass in float32 for CPU channels-last inference
// (core/fused_norm.h), else LDM's operators in x's dtype.
Tensor norm_swish(torch::nn::GroupNorm& norm, const Tensor& x) {
  if (Tensor fused = fused_group_norm_silu(*norm, x); fused.defined()) return fused;
  return swish(group_norm_f32(norm, x));
}
}  // namespace

ResnetBlockImpl::ResnetBlockImpl(int in_channels, int out_channels, double dropout, int groups) : dropout_(dropout) {
  norm1 = register_module("norm1", normalize(in_channels, groups));
  conv1 = register_module("conv1", conv(in_channels, out_channels, 3, 1, 1));
  norm2 = register_module("norm2", normalize(out_channels, groups));
  conv2 = register_module("conv2", conv(out_channels, out_channels, 3, 1, 1));
  if (in_channels != out_channels) nin_shortcut = register_module("nin_shortcut", conv(in_channels, out_channels, 1));
}

Tensor ResnetBlockImpl::forward(const Tensor& x) {
  Tensor h = conv2d(conv1, norm_swish(norm1, x));
  h = conv2d(conv2, torch::dropout(norm_swish(norm2, h), dropout_, is_training()));
  return (nin_shortcut ? conv2d(nin_shortcut, x) : x) + h;
}

AttnBlockImpl::AttnBlockImpl(int channels, int groups) {
  norm = register_module("norm", normalize(channels, groups));
  q = register_module("q", conv(channels, channels, 1));
  k = register_module("k", conv(channels, channels, 1));
  v = register_module("v", conv(channels, channels, 1));
  proj_out = register_module("proj_out", conv(channels, channels, 1));
}

Tensor AttnBlockImpl::forward(const Tensor& x) {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  Tensor n = group_norm_f32(norm, x);
  Tensor query = conv2d(q, n).reshape({b, c, h * w}).permute({0, 2, 1});  // [B, HW, C]
  Tensor key = conv2d(k, n).reshape({b, c, h * w});                       // [B, C, HW]
  Tensor weights = torch::softmax(torch::bmm(query, key) * std::pow(static_cast<double>(c), -0.5), 2);
  Tensor value = conv2d(v, n).reshape({b, c, h * w});
  Tensor out = torch::bmm(value, weights.permute({0, 2, 1})).reshape({b, c, h, w});
  return x + conv2d(proj_out, out);
}

LevelImpl::LevelImpl() {
  block = register_module("block", torch::nn::ModuleList());
  attn = register_module("attn", torch::nn::ModuleList());
}

namespace {
class ResampleHolder : public torch::nn::Module {
 public:
  ResampleHolder(int channels, bool with_conv, int stride) {
    if (with_conv) conv_ = register_module("conv", conv(channels, channels, 3, stride, stride == 1 ? 1 : 0));
  }
  torch::nn::Conv2d conv_{nullptr};
};
}  // namespace

void LevelImpl::add_resample(const std::string& name, int channels, bool with_conv) {
  auto holder =
      register_module(name, std::make_shared<ResampleHolder>(channels, with_conv, name == "downsample" ? 2 : 1));
  resample_conv = holder->conv_;
  resample = true;
}

// ---------------------------------------------------------------------------------------------
// Encoder / Decoder

EncoderImpl::EncoderImpl(const DDConfig& c) : config_(c) {
  c.validate();
  conv_in = register_module("conv_in", conv(c.in_channels, c.ch, 3, 1, 1));
  down = register_module("down", torch::nn::ModuleList());
  int curr_res = c.resolution;
  int block_in = c.ch;
  const size_t levels = c.ch_mult.size();
  for (size_t i = 0; i < levels; ++i) {
    Level level;
    block_in = c.ch * (i == 0 ? 1 : c.ch_mult[i - 1]);
    const int block_out = c.ch * c.ch_mult[i];
    for (int j = 0; j < c.num_res_blocks; ++j) {
      ResnetBlock rb(block_in, block_out, c.dropout, c.norm_groups);
      level->block->push_back(rb);
      level->blocks.push_back(rb);
      block_in = block_out;
      if (std::count(c.attn_resolutions.begin(), c.attn_resolutions.end(), curr_res)) {
        AttnBlock ab(block_in, c.norm_groups);
        level->attn->push_back(ab);
        level->attns.push_back(ab);
      }
    }
    if (i + 1 != levels) {
      level->add_resample("downsample", block_in, c.resamp_with_conv);
      curr_res /= 2;
    }
    down->push_back(level);
    levels_.push_back(level);
  }
  auto mid = register_module("mid", std::make_shared<torch::nn::Module>());
  mid_block_1 = mid->register_module("block_1", ResnetBlock(block_in, block_in, c.dropout, c.norm_groups));
  mid_attn_1 = mid->register_module("attn_1", AttnBlock(block_in, c.norm_groups));
  mid_block_2 = mid->register_module("block_2", ResnetBlock(block_in, block_in, c.dropout, c.norm_groups));
  norm_out = register_module("norm_out", normalize(block_in, c.norm_groups));
  conv_out = register_module("conv_out", conv(block_in, c.double_z ? 2 * c.z_channels : c.z_channels, 3, 1, 1));
}

Tensor EncoderImpl::forward(const Tensor& x) {
  const int f = config_.downsampling_factor();
  TORCH_CHECK(x.dim() == 4 && x.size(1) == config_.in_channels, "encoder: input must be [N, ", config_.in_channels,
              ", H, W], got ", x.sizes());
  TORCH_CHECK(x.size(2) % f == 0 && x.size(3) % f == 0, "encoder: height and width must be divisible by ", f, ", got ",
              x.size(2), "x", x.size(3));
  Tensor h = conv2d(conv_in, x);
  for (auto& level : levels_) {
    for (size_t j = 0; j < level->blocks.size(); ++j) {
      h = level->blocks[j]->forward(h);
      if (!level->attns.empty()) h = level->attns[j]->forward(h);
    }
    if (level->resample) {
      if (level->resample_conv) {
        // Asymmetric padding (right and bottom only) before the stride-2 conv, as LDM does.
        h = conv2d(level->resample_conv, F::pad(h, F::PadFuncOptions({0, 1, 0, 1})));
      } else {
        h = F::avg_pool2d(h, F::AvgPool2dFuncOptions(2).stride(2));
      }
    }
  }
  h = mid_block_2->forward(mid_attn_1->forward(mid_block_1->forward(h)));
  return conv2d(conv_out, norm_swish(norm_out, h));
}

DecoderImpl::DecoderImpl(const DDConfig& c) : config_(c) {
  c.validate();
  const size_t levels = c.ch_mult.size();
  int block_in = c.ch * c.ch_mult.back();
  int curr_res = c.resolution / (1 << (levels - 1));
  conv_in = register_module("conv_in", conv(c.z_channels, block_in, 3, 1, 1));
  auto mid = register_module("mid", std::make_shared<torch::nn::Module>());
  mid_block_1 = mid->register_module("block_1", ResnetBlock(block_in, block_in, c.dropout, c.norm_groups));
  mid_attn_1 = mid->register_module("attn_1", AttnBlock(block_in, c.norm_groups));
  mid_block_2 = mid->register_module("block_2", ResnetBlock(block_in, block_in, c.dropout, c.norm_groups));
  // Built from the lowest resolution up, but stored by level index like the reference's
  // `self.up.insert(0, up)`.
  std::vector<Level> built(levels, nullptr);
  for (int i = static_cast<int>(levels) - 1; i >= 0; --i) {
    Level level;
    const int block_out = c.ch * c.ch_mult[i];
    for (int j = 0; j <= c.num_res_blocks; ++j) {
      ResnetBlock rb(block_in, block_out, c.dropout, c.norm_groups);
      level->block->push_back(rb);
      level->blocks.push_back(rb);
      block_in = block_out;
      if (std::count(c.attn_resolutions.begin(), c.attn_resolutions.end(), curr_res)) {
        AttnBlock ab(block_in, c.norm_groups);
        level->attn->push_back(ab);
        level->attns.push_back(ab);
      }
    }
    if (i != 0) {
      level->add_resample("upsample", block_in, c.resamp_with_conv);
      curr_res *= 2;
    }
    built[i] = level;
  }
  up = register_module("up", torch::nn::ModuleList());
  for (auto& level : built) up->push_back(level);
  levels_ = built;
  norm_out = register_module("norm_out", normalize(block_in, c.norm_groups));
  conv_out = register_module("conv_out", conv(block_in, c.out_ch, 3, 1, 1));
}

Tensor DecoderImpl::forward(const Tensor& z) {
  TORCH_CHECK(z.dim() == 4 && z.size(1) == config_.z_channels, "decoder: input must be [N, ", config_.z_channels,
              ", h, w], got ", z.sizes());
  Tensor h = conv2d(conv_in, z);
  h = mid_block_2->forward(mid_attn_1->forward(mid_block_1->forward(h)));
  for (int i = static_cast<int>(levels_.size()) - 1; i >= 0; --i) {
    auto& level = levels_[i];
    for (size_t j = 0; j < level->blocks.size(); ++j) {
      h = level->blocks[j]->forward(h);
      if (!level->attns.empty()) h = level->attns[j]->forward(h);
    }
    if (level->resample) {
      h = F::interpolate(h,
                         F::InterpolateFuncOptions().scale_factor(std::vector<double>{2.0, 2.0}).mode(torch::kNearest));
      if (level->resample_conv) h = conv2d(level->resample_conv, h);
    }
  }
  if (config_.give_pre_end) return h;
  h = conv2d(conv_out, norm_swish(norm_out, h));
  return config_.tanh_out ? torch::tanh(h) : h;
}

// ---------------------------------------------------------------------------------------------
// Latent distributions and quantisation

DiagonalGaussian DiagonalGaussian::from_moments(const Tensor& moments) {
  auto parts = moments.chunk(2, 1);
  return {parts[0], torch::clamp(parts[1], -30.0, 20.0)};
}

Tensor DiagonalGaussian::sample(c10::optional<at::Generator> generator) const {
  // Noise is drawn on the CPU generator and moved, so a seed gives the same latent on any device.
  Tensor noise =
      torch::randn(mean.sizes(), generator, torch::TensorOptions().dtype(torch::kFloat32)).to(mean.options());
  return mean + std() * noise;
}

Tensor DiagonalGaussian::kl() const {
  return 0.5 * torch::sum(mean.pow(2) + torch::exp(logvar) - 1.0 - logvar, {1, 2, 3});
}

VectorQuantizerImpl::VectorQuantizerImpl(int n_embed, int embed_dim) {
  embedding = register_module("embedding", torch::nn::Embedding(n_embed, embed_dim));
  // LDM initialises the codebook uniformly in +-1/n_embed.
  torch::NoGradGuard no_grad;
  embedding->weight.uniform_(-1.0 / n_embed, 1.0 / n_embed);
}

Quantized VectorQuantizerImpl::forward(const Tensor& z) {
  const int64_t dim = embedding->weight.size(1);
  TORCH_CHECK(z.dim() == 4 && z.size(1) == dim, "quantizer: input must be [N, ", dim, ", h, w], got ", z.sizes());
  Tensor zp = z.permute({0, 2, 3, 1}).contiguous();  // [N, h, w, C]
  Tensor flat = zp.view({-1, dim});
  const Tensor& e = embedding->weight;
  // |z|^2 + |e|^2 - 2 z.e, the reference's expansion (argmin takes the first index on ties).
  Tensor d = flat.pow(2).sum(1, true) + e.pow(2).sum(1) - 2 * torch::matmul(flat, e.t());
  Tensor indices = torch::argmin(d, 1);
  Tensor zq = embedding->forward(indices).view(zp.sizes());
  zq = zp + (zq - zp).detach();  // straight-through estimator, computed as the reference does
  return {zq.permute({0, 3, 1, 2}).contiguous(), indices.view({z.size(0), z.size(2), z.size(3)})};
}

// ---------------------------------------------------------------------------------------------
// Autoencoder

AutoencoderImpl::AutoencoderImpl(const AutoencoderConfig& config) : config_(config) {
  config_.validate();
  const auto& dd = config_.ddconfig;
  encoder = register_module("encoder", Encoder(dd));
  decoder = register_module("decoder", Decoder(dd));
  const int moments = is_vq() ? config_.embed_dim : 2 * config_.embed_dim;
  quant_conv = register_module("quant_conv", conv(dd.double_z ? 2 * dd.z_channels : dd.z_channels, moments, 1));
  post_quant_conv = register_module("post_quant_conv", conv(config_.embed_dim, dd.z_channels, 1));
  if (is_vq()) quantizer = register_module("quantize", VectorQuantizer(config_.n_embed, config_.embed_dim));
}

Tensor AutoencoderImpl::encode_raw(const Tensor& x) { return conv2d(quant_conv, encoder->forward(x)); }

DiagonalGaussian AutoencoderImpl::encode_kl(const Tensor& x) {
  TORCH_CHECK(!is_vq(), "encode_kl called on a VQ autoencoder");
  return DiagonalGaussian::from_moments(encode_raw(x));
}

Quantized AutoencoderImpl::quantize(const Tensor& h) {
  TORCH_CHECK(is_vq(), "quantize called on a KL autoencoder");
  return quantizer->forward(h);
}

Tensor AutoencoderImpl::decode_raw(const Tensor& z) {
  Tensor q = is_vq() ? quantizer->forward(z).z_q : z;
  return decoder->forward(conv2d(post_quant_conv, q));
}

Tensor AutoencoderImpl::encode(const Tensor& x, bool sample_posterior, c10::optional<at::Generator> generator) {
  Tensor latent;
  if (is_vq()) {
    latent = encode_raw(x);
  } else {
    auto posterior = encode_kl(x);
    latent = sample_posterior ? posterior.sample(generator) : posterior.mode();
  }
  return config_.scale_factor == 1.0 ? latent : latent * config_.scale_factor;
}

Tensor AutoencoderImpl::decode(const Tensor& latent) {
  return decode_raw(config_.scale_factor == 1.0 ? latent : latent / config_.scale_factor);
}

}  // namespace iidm

#pragma once
// LDM's first-stage models (ldm/modules/diffusionmodules/model.py, ldm/models/autoencoder.py):
// the convolutional Encoder/Decoder, AutoencoderKL (diagonal Gaussian latent) and the VQ model
// (IIDM's first stage). Children carry the reference's names so LDM checkpoints load unchanged.
#include <torch/torch.h>

#include <string>
#include <vector>

#include "core/config.h"

namespace iidm {

// LDM's `ddconfig`.
struct DDConfig {
  bool double_z = true;
  int z_channels = 4;
  int resolution = 256;  // only decides at which feature sizes attention runs
  int in_channels = 3;
  int out_ch = 3;
  int ch = 128;
  std::vector<int> ch_mult{1, 2, 4, 4};
  int num_res_blocks = 2;
  std::vector<int> attn_resolutions{};
  double dropout = 0.0;
  bool resamp_with_conv = true;
  bool give_pre_end = false;
  bool tanh_out = false;
  // GroupNorm groups. LDM fixes 32, i.e. 4 channels a group at its ch = 128; narrow models (the
  // demo's ch = 32) need fewer groups, or per-channel normalisation erases the image's colour cast.
  int norm_groups = 32;

  // The JSON keys (core/config.h); "attn_type" is accepted by from_json and must be "vanilla".
  template <class Self, class Field>
  static void fields(Self& c, Field&& field) {
    field("double_z", c.double_z);
    field("z_channels", c.z_channels, kRequired);
    field("resolution", c.resolution);
    field("in_channels", c.in_channels);
    field("out_ch", c.out_ch);
    field("ch", c.ch, kRequired);
    field("ch_mult", c.ch_mult, kRequired);
    field("num_res_blocks", c.num_res_blocks, kRequired);
    field("attn_resolutions", c.attn_resolutions);
    field("dropout", c.dropout);
    field("resamp_with_conv", c.resamp_with_conv);
    field("give_pre_end", c.give_pre_end);
    field("tanh_out", c.tanh_out);
    field("norm_groups", c.norm_groups);
  }

  void validate() const;
  static DDConfig from_json(ConfigReader& reader);
  Json to_json() const;
  int downsampling_factor() const { return 1 << (ch_mult.size() - 1); }
};

// A first-stage model: "kl" (AutoencoderKL) or "vq" (VQModelInterface).
struct AutoencoderConfig {
  std::string kind = "kl";
  DDConfig ddconfig;
  int embed_dim = 4;
  int n_embed = 0;            // vq: codebook size
  double scale_factor = 1.0;  // latent = scale_factor * encoding (LDM's scale_by_std; IIDM: 1)

  // The JSON keys (core/config.h); "note" is accepted as a comment.
  template <class Self, class Field>
  static void fields(Self& c, Field&& field) {
    field("kind", c.kind, kRequired);
    field("ddconfig", c.ddconfig, kRequired);
    field("embed_dim", c.embed_dim, kRequired);
    field("n_embed", c.n_embed, written_if(c.kind == "vq"));
    field("scale_factor", c.scale_factor);
  }

  void validate() const;
  // Reads the fields above ("kind" also as the parity cases' "autoencoder_kl" / "autoencoder_vq");
  // unknown keys are errors.
  static AutoencoderConfig from_json(ConfigReader& reader);
  Json to_json() const;
};

class ResnetBlockImpl : public torch::nn::Module {
 public:
  ResnetBlockImpl(int in_channels, int out_channels, double dropout, int groups = 32);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, nin_shortcut{nullptr};
  double dropout_;
};
TORCH_MODULE(ResnetBlock);

// Single-head self-attention with 1x1 convolutions (LDM's AttnBlock).
class AttnBlockImpl : public torch::nn::Module {
 public:
  explicit AttnBlockImpl(int channels, int groups = 32);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv2d q{nullptr}, k{nullptr}, v{nullptr}, proj_out{nullptr};
};
TORCH_MODULE(AttnBlock);

// One resolution level: `block`, `attn` and `downsample` (encoder) or `upsample` (decoder).
class LevelImpl : public torch::nn::Module {
 public:
  LevelImpl();
  // Adds `downsample` or `upsample` (`name`), holding `conv` when with_conv.
  void add_resample(const std::string& name, int channels, bool with_conv);
  torch::nn::ModuleList block, attn;
  std::vector<ResnetBlock> blocks;
  std::vector<AttnBlock> attns;
  torch::nn::Conv2d resample_conv{nullptr};
  bool resample = false;
};
TORCH_MODULE(Level);

class EncoderImpl : public torch::nn::Module {
 public:
  explicit EncoderImpl(const DDConfig& config);
  torch::Tensor forward(const torch::Tensor& x);  // [N, in_channels, H, W] -> [N, (2x)z, H/f, W/f]

 private:
  DDConfig config_;
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList down;
  std::vector<Level> levels_;
  ResnetBlock mid_block_1{nullptr}, mid_block_2{nullptr};
  AttnBlock mid_attn_1{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(Encoder);

class DecoderImpl : public torch::nn::Module {
 public:
  explicit DecoderImpl(const DDConfig& config);
  torch::Tensor forward(const torch::Tensor& z);  // [N, z, h, w] -> [N, out_ch, h*f, w*f]

 private:
  DDConfig config_;
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList up;
  std::vector<Level> levels_;
  ResnetBlock mid_block_1{nullptr}, mid_block_2{nullptr};
  AttnBlock mid_attn_1{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(Decoder);

// LDM's DiagonalGaussianDistribution over latents.
struct DiagonalGaussian {
  torch::Tensor mean, logvar;  // logvar clamped to [-30, 20]
  static DiagonalGaussian from_moments(const torch::Tensor& moments);
  torch::Tensor std() const { return torch::exp(0.5 * logvar); }
  torch::Tensor mode() const { return mean; }
  torch::Tensor sample(c10::optional<at::Generator> generator = c10::nullopt) const;
  // KL to N(0, I), summed over C, H, W: [N].
  torch::Tensor kl() const;
};

struct Quantized {
  torch::Tensor z_q;      // [N, embed_dim, h, w]
  torch::Tensor indices;  // [N, h, w] int64
};

// LDM's VectorQuantizer2 (only the codebook is a weight): nearest entry by squared L2.
class VectorQuantizerImpl : public torch::nn::Module {
 public:
  VectorQuantizerImpl(int n_embed, int embed_dim);
  Quantized forward(const torch::Tensor& z);
  torch::nn::Embedding embedding{nullptr};
};
TORCH_MODULE(VectorQuantizer);

class AutoencoderImpl : public torch::nn::Module {
 public:
  explicit AutoencoderImpl(const AutoencoderConfig& config);
  const AutoencoderConfig& config() const { return config_; }
  bool is_vq() const { return config_.kind == "vq"; }

  // kl: quant_conv(encoder(x)) = moments [N, 2*embed_dim, h, w]; vq: the pre-quantisation latent
  // h [N, embed_dim, h, w] (what IIDM diffuses).
  torch::Tensor encode_raw(const torch::Tensor& x);
  DiagonalGaussian encode_kl(const torch::Tensor& x);
  Quantized quantize(const torch::Tensor& h);
  // kl: decoder(post_quant_conv(z)); vq: quantises z first, as VQModelInterface.decode does.
  torch::Tensor decode_raw(const torch::Tensor& z);

  // The diffusion latent: scale_factor * (posterior mode | pre-quantisation h); and back.
  // `sample_posterior` draws from the KL posterior instead of taking its mode.
  torch::Tensor encode(const torch::Tensor& x, bool sample_posterior = false,
                       c10::optional<at::Generator> generator = c10::nullopt);
  torch::Tensor decode(const torch::Tensor& latent);

  Encoder encoder{nullptr};
  Decoder decoder{nullptr};
  torch::nn::Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};
  VectorQuantizer quantizer{nullptr};

 private:
  AutoencoderConfig config_;
};
TORCH_MODULE(Autoencoder);

}  // namespace iidm

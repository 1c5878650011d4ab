#include "pipeline/pipeline.h"

#include <map>
#include <opencv2/core.hpp>

#include "core/error.h"
#include "core/state_dict.h"
#include "diffusion/sampler.h"
#include "pipeline/denoiser.h"
#include "postprocess/color_transfer.h"

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

uint64_t derive_seed(uint64_t seed, const std::string& name) {
  // FNV-1a over the name, mixed with the seed by splitmix64: stable across platforms and runs.
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  uint64_t z = seed + 0x9e3779b97f4a7c15ull + h;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

Tensor resize_labels_nearest(const Tensor& labels, int64_t height, int64_t width) {
  TORCH_CHECK(labels.dim() == 3, "labels must be [N, H, W], got ", labels.sizes());
  const int64_t H = labels.size(1), W = labels.size(2);
  if (H == height && W == width) return labels;
  // PIL NEAREST samples the source pixel under the target pixel's centre.
  auto index = [](int64_t out, int64_t in) {
    return torch::floor((torch::arange(out, torch::kFloat64) + 0.5) * (static_cast<double>(in) / out))
        .to(torch::kInt64)
        .clamp_max(in - 1);
  };
  return labels.index_select(1, index(height, H).to(labels.device())).index_select(2, index(width, W).to(labels.device()));
}

Pipeline::Pipeline(ModelConfig config, std::vector<UNetModel> unets, std::vector<double> weights, Autoencoder autoencoder,
                   PipelineOptions options)
    : config_(std::move(config)),
      unets_(std::move(unets)),
      weights_(std::move(weights)),
      autoencoder_(std::move(autoencoder)),
      options_(options) {
  if (unets_.empty()) fail("pipeline: no U-Net");
  if (weights_.empty()) weights_.assign(unets_.size(), 1.0);
  if (weights_.size() != unets_.size()) fail("pipeline: {} ensemble weights for {} U-Nets", weights_.size(), unets_.size());
  if (config_.autoencoder.has_value() != static_cast<bool>(autoencoder_))
    fail("pipeline: the model config {} an autoencoder", config_.autoencoder ? "needs" : "has no");
  for (auto& u : unets_) prepare_for_inference(*u, options_);
  if (autoencoder_) prepare_for_inference(*autoencoder_, options_);
}

Pipeline Pipeline::load(const ModelFiles& files, const PipelineOptions& options) {
  ModelConfig config = ModelConfig::from_file(files.config);
  if (files.unets.empty()) fail("{}: no U-Net weights given", files.config);
  std::vector<UNetModel> unets;
  for (const auto& path : files.unets) {
    UNetModel unet(config.unet);
    load_state_dict(*unet, path);
    unets.push_back(unet);
  }
  Autoencoder ae{nullptr};
  if (config.autoencoder) {
    if (files.autoencoder.empty()) fail("{}: this latent model needs autoencoder weights", files.config);
    ae = Autoencoder(*config.autoencoder);
    LoadOptions lo;
    lo.allow_unexpected = true;  // LDM first-stage checkpoints carry their training loss (discriminator, LPIPS)
    load_state_dict(*ae, files.autoencoder, lo);
  } else if (!files.autoencoder.empty()) {
    fail("{}: a pixel-space model takes no autoencoder weights ({})", files.config, files.autoencoder);
  }
  return Pipeline(std::move(config), std::move(unets), files.unet_weights, ae, options);
}

int Pipeline::size_multiple() const {
  const int unet_factor = 1 << (config_.unet.channel_mult.size() - 1);
  return latent() ? unet_factor * config_.autoencoder->ddconfig.downsampling_factor() : unet_factor;
}

Tensor Pipeline::encode(const Tensor& images) {
  torch::NoGradGuard no_grad;
  auto fmt = options_.channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  Tensor x = images.to(options_.device, options_.precision).contiguous(fmt);
  return autoencoder_->encode(x).to(torch::kFloat32).contiguous();
}

Tensor Pipeline::decode(const Tensor& latents) {
  torch::NoGradGuard no_grad;
  auto fmt = options_.channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  return autoencoder_->decode(latents.to(options_.precision).contiguous(fmt)).to(torch::kFloat32).contiguous();
}

namespace {

cv::Mat to_rgb8(const Tensor& image) {  // [3, H, W] in [-1, 1]
  Tensor bytes = ((image.to(torch::kCPU, torch::kFloat32) + 1.0) * 127.5).round().clamp(0, 255).to(torch::kUInt8);
  bytes = bytes.permute({1, 2, 0}).contiguous();
  return cv::Mat(static_cast<int>(bytes.size(0)), static_cast<int>(bytes.size(1)), CV_8UC3, bytes.data_ptr()).clone();
}

Tensor from_rgb8(const cv::Mat& m) {
  return torch::from_blob(m.data, {m.rows, m.cols, 3}, torch::kUInt8).permute({2, 0, 1}).to(torch::kFloat32).div(127.5).sub(1.0);
}

}  // namespace

GenerationResult Pipeline::generate(const std::vector<GenerationItem>& items, const std::vector<Stage>& stages,
                                    const Progress& progress) {
  torch::NoGradGuard no_grad;
  if (items.empty()) fail("generate: no items");
  if (stages.empty()) fail("generate: no stages");
  const int64_t B = static_cast<int64_t>(items.size());
  const int64_t H = items[0].labels.size(0), W = items[0].labels.size(1);
  const int multiple = size_multiple();
  if (H % multiple || W % multiple)
    fail("generate: image size {}x{} (WxH) must be a multiple of {} for this model", W, H, multiple);
  const bool has_start = items[0].start.defined();
  const bool editing = items[0].edit_mask.defined();
  for (const auto& it : items) {
    if (it.labels.dim() != 2 || it.labels.size(0) != H || it.labels.size(1) != W)
      fail("{}: label map is {} but the batch is {}x{}", it.name, fmt::format("{}", fmt::join(it.labels.sizes(), "x")), H, W);
    if (it.start.defined() != has_start || it.edit_mask.defined() != editing)
      fail("{}: every item of a batch must have the same inputs (start image, edit mask)", it.name);
    if (has_start && (it.start.dim() != 3 || it.start.size(0) != 3 || it.start.size(1) != H || it.start.size(2) != W))
      fail("{}: the start / reference image must be 3x{}x{}", it.name, H, W);
  }
  if (latent() && !has_start) fail("generate: latent (IIDM) generation needs a style reference image");

  const int64_t C = config_.data_channels();
  const int64_t h = latent() ? H / config_.autoencoder->ddconfig.downsampling_factor() : H;
  const int64_t w = latent() ? W / config_.autoencoder->ddconfig.downsampling_factor() : W;

  // Conditioning at the denoising resolution.
  std::vector<Tensor> label_list, instance_list, start_list, mask_list;
  std::vector<at::Generator> generators;
  for (const auto& it : items) {
    label_list.push_back(it.labels.to(torch::kInt64));
    if (config_.unet.instance_edge) {
      if (!it.instance.defined()) fail("{}: this model needs an instance map", it.name);
      instance_list.push_back(it.instance.to(torch::kInt64));
    }
    if (has_start) start_list.push_back(it.start.to(torch::kFloat32));
    if (editing) mask_list.push_back(it.edit_mask.to(torch::kFloat32));
    generators.push_back(at::detail::createCPUGenerator(it.seed));
  }
  Tensor labels = resize_labels_nearest(torch::stack(label_list), h, w);
  Tensor instance = instance_list.empty() ? Tensor() : resize_labels_nearest(torch::stack(instance_list), h, w);
  const Tensor y = one_hot_labels(labels, config_.unet.num_labels(), options_.ignore_label, instance).to(options_.device);
  const Tensor original = has_start ? torch::stack(start_list) : Tensor();  // [B, 3, H, W] pixels
  Tensor pixel_mask, known_latent, denoise_mask;
  if (editing) {
    if (!has_start) fail("generate: editing needs the image to edit");
    pixel_mask = torch::stack(mask_list).unsqueeze(1);  // [B, 1, H, W]
    denoise_mask = (torch::nn::functional::interpolate(pixel_mask, torch::nn::functional::InterpolateFuncOptions()
                                                                         .size(std::vector<int64_t>{h, w})
                                                                         .mode(torch::kArea)) > 0)
                       .to(torch::kFloat32)
                       .to(options_.device);
  }

  std::vector<EnsembleMember> members;
  for (size_t i = 0; i < unets_.size(); ++i) members.push_back({unets_[i], weights_[i]});

  // The image being edited, in the space the sampler works in: encoded once for all stages.
  const Tensor known = editing ? (latent() ? encode(original) : original.to(options_.device)) : Tensor();
  GenerationResult result;
  Tensor current = original;  // pixel images between stages
  std::map<std::string, std::unique_ptr<GaussianDiffusion>> chains;
  for (size_t s = 0; s < stages.size(); ++s) {
    const Stage& stage = stages[s];
    stage.validate(config_.diffusion.steps);
    if (!chains.count(stage.respacing)) {
      DiffusionConfig dc = config_.diffusion;
      dc.timestep_respacing = stage.respacing;
      chains[stage.respacing] = std::make_unique<GaussianDiffusion>(dc);
    }
    const GaussianDiffusion& chain = *chains[stage.respacing];
    const StagePlan plan = plan_stage(stage, chain.num_steps());

    // Colour transfer toward the original reference before every stage but the first.
    const ColorTransfer transfer = parse_color_transfer(stage.color_transfer);
    if (s > 0 && transfer != ColorTransfer::kNone && has_start) {
      std::vector<Tensor> moved;
      for (int64_t b = 0; b < B; ++b)
        moved.push_back(from_rgb8(color_transfer(transfer, to_rgb8(original[b]), to_rgb8(current[b]))));
      current = torch::stack(moved);
    }

    // Starting point on the chain.
    Tensor x;
    Tensor index = torch::full({B}, plan.noise_index, torch::kInt64);
    const bool pure_noise = !current.defined();
    Tensor clean;
    if (pure_noise) {
      if (plan.noise_index != chain.num_steps() - 1)
        fail("generate: stage {} starts part-way (strength {}) but there is no start image", s + 1, stage.strength);
      x = randn_like_on_cpu(torch::empty({B, C, h, w}), generators).to(options_.device);
    } else {
      clean = latent() ? encode(current) : current.to(options_.device);
      x = chain.q_sample(clean, index, randn_like_on_cpu(clean, generators));
    }

    Denoiser denoiser(members, GuidanceOptions{stage.guidance, options_.batched_guidance}, C);
    ModelFn bound = denoiser.bind(y);
    std::vector<int64_t> visited;
    ModelFn recorded = [&](const Tensor& xt, const Tensor& t) {
      visited.push_back(t[0].item<int64_t>());
      auto fmt = options_.channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
      return bound(xt.contiguous(fmt), t).to(torch::kFloat32).contiguous();
    };

    SampleOptions so;
    so.first_index = plan.first_index;
    so.eta = stage.eta;
    so.clip_denoised = stage.clip_denoised == "auto" ? !latent() : stage.clip_denoised == "true";
    so.generators = generators;
    if (editing) {
      // Known-region replacement: outside the mask the sample is the known image noised to the
      // level the chain has reached (index i-1 after step i; clean after the last step).
      so.after_step = [&](const Tensor& sample, int i) {
        Tensor known_t = i > 0 ? chain.q_sample(known, torch::full({B}, i - 1, torch::kInt64), randn_like_on_cpu(known, generators))
                               : known;
        return denoise_mask * sample + (1 - denoise_mask) * known_t;
      };
    }
    if (progress) so.on_progress = [&](int done, int total) { progress(static_cast<int>(s), done, total); };
    Tensor out = make_sampler(stage.sampler)->sample(chain, recorded, x, so);
    current = (latent() ? decode(out) : out).to(torch::kCPU).clamp(-1, 1);
    if (editing) current = pixel_mask * current + (1 - pixel_mask) * original;  // the kept region is exact

    result.stage_timesteps.push_back(visited);
    result.denoising_steps += plan.steps;
    result.unet_forwards_per_image += static_cast<int64_t>(visited.size()) * denoiser.forwards_per_call();
  }
  result.images = current;
  return result;
}

}  // namespace iidm

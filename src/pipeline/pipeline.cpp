#include "pipeline/pipeline.h"

#include <map>

#include "core/conv.h"
#include "core/error.h"
#include "core/image.h"
#include "core/state_dict.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"
#include "pipeline/denoiser.h"
#include "postprocess/color_transfer.h"

namespace iidm {
using torch::Tensor;

namespace {

// One weight per U-Net, each >= 0 and finite, not all zero (they are normalised to sum to 1).
void validate_ensemble_weights(const std::vector<double>& weights, size_t unets) {
  if (weights.size() != unets) fail("ensemble: {} weights for {} U-Nets", weights.size(), unets);
  double total = 0;
  for (double w : weights) {
    if (!(w >= 0) || !std::isfinite(w)) fail("ensemble: weights must be finite and >= 0, got {}", w);
    total += w;
  }
  if (!(total > 0)) fail("ensemble: the weights sum to zero");
}

}  // namespace

Pipeline::Pipeline(ModelConfig config, std::vector<UNetModel> unets, std::vector<double> weights,
                   Autoencoder autoencoder, PipelineOptions options)
    : config_(std::move(config)), unets_(std::move(unets)), weights_(std::move(weights)), options_(options) {
  if (unets_.empty()) fail("pipeline: no U-Net");
  if (weights_.empty()) weights_.assign(unets_.size(), 1.0);
  validate_ensemble_weights(weights_, unets_.size());
  if (config_.autoencoder.has_value() != static_cast<bool>(autoencoder))
    fail("pipeline: the model config {} an autoencoder", config_.autoencoder ? "needs" : "has no");
  if (options_.tile < 0) fail("pipeline: tile size must be >= 0 (0 = whole image), got {}", options_.tile);
  if (autoencoder) codec_.emplace(std::move(autoencoder), options_);
  for (auto& u : unets_) prepare_for_inference(*u, options_);
}

void ModelFiles::validate() const {
  if (unets.empty()) fail("{}: no U-Net weights given", config);
  if (!unet_weights.empty()) validate_ensemble_weights(unet_weights, unets.size());
}

Pipeline Pipeline::load(const ModelFiles& files, const PipelineOptions& options) {
  files.validate();  // before any file is read
  ModelConfig config = ModelConfig::from_file(files.config);
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

MemoryQuery Pipeline::memory_query(int64_t batch, int64_t height, int64_t width,
                                   const std::vector<Stage>& stages) const {
  MemoryQuery q;
  q.batch = batch;
  q.height = height;
  q.width = width;
  q.element_bytes = static_cast<int64_t>(c10::elementSize(options_.precision));
  q.guidance_pair = options_.batched_guidance && std::any_of(stages.begin(), stages.end(), [](const Stage& s) {
                      return s.guidance != 1.0 && s.guidance != 0.0;
                    });
  q.cache_spade = options_.cache_spade;
  q.tile = options_.tile;
  for (const auto& u : unets_) {
    q.weight_bytes += module_bytes(*u);
    q.prepacked_bytes += module_bytes(*u, true);
  }
  if (codec_) {
    q.weight_bytes += module_bytes(codec_->autoencoder());
    q.prepacked_bytes += module_bytes(codec_->autoencoder(), true);
  }
  // Only CPU channels-last inference prepacks (core/conv.h); copies made already are resident.
  if (!(options_.device.is_cpu() && options_.channels_last && prepacked_convolutions_enabled())) q.prepacked_bytes = 0;
  q.weight_bytes += std::min(q.prepacked_bytes, prepacked_convolution_bytes());
  q.prepacked_bytes -= std::min(q.prepacked_bytes, prepacked_convolution_bytes());
  return q;
}

void Pipeline::check_memory(int64_t batch, int64_t height, int64_t width, const std::vector<Stage>& stages,
                            const std::string& what) const {
  iidm::check_memory(config_, memory_query(batch, height, width, stages), options_.memory_limit, what);
}

const GaussianDiffusion& Pipeline::chain(const std::string& respacing) {
  auto& slot = chains_[respacing];
  if (!slot) {
    DiffusionConfig dc = config_.diffusion;
    dc.timestep_respacing = respacing;
    slot = std::make_shared<const GaussianDiffusion>(dc);
  }
  return *slot;
}

void Pipeline::check_stages(const std::vector<Stage>& stages) const {
  if (stages.empty()) fail("generate: no stages");
  for (size_t s = 0; s < stages.size(); ++s) {
    try {
      stages[s].validate(config_.diffusion.steps);
    } catch (const Error& e) {
      fail("round {} of {}: {}", s + 1, stages.size(), e.what());
    }
  }
}

int64_t Pipeline::denoising_steps(const std::vector<Stage>& stages) const {
  check_stages(stages);
  int64_t total = 0;
  for (const auto& stage : stages)
    total +=
        plan_stage(stage, static_cast<int>(space_timesteps(config_.diffusion.steps, stage.respacing).size())).steps;
  return total;
}

struct Pipeline::Batch {
  int64_t size = 0, height = 0, width = 0;      // B and the output H, W
  int64_t latent_height = 0, latent_width = 0;  // h, w: where the sampler works
  bool has_start = false, editing = false;
  Tensor y;                               // [B, L, h, w] one-hot labels (+ edge channel) on the device
  Tensor original;                        // [B, 3, H, W] the start / reference images (pixels, CPU), if any
  Tensor pixel_mask;                      // [B, 1, H, W] editing: 1 = regenerate
  Tensor denoise_mask;                    // [B, 1, h, w] the same at the denoising resolution, on the device
  Tensor known;                           // the image being edited, in the sampler's space, encoded once for all stages
  std::vector<at::Generator> generators;  // one per item, from its seed
  std::vector<EnsembleMember> members;
  std::shared_ptr<ConditioningCache> spade;  // SPADE's maps for y, shared by the stages; null = off
};

Pipeline::Batch Pipeline::prepare_batch(const std::vector<GenerationItem>& items) const {
  if (items.empty()) fail("generate: no items");
  Batch b;
  b.size = static_cast<int64_t>(items.size());
  b.height = items[0].labels.size(0);
  b.width = items[0].labels.size(1);
  const int64_t H = b.height, W = b.width;
  const int multiple = size_multiple();
  if (H % multiple || W % multiple)
    fail("generate: image size {}x{} (WxH) must be a multiple of {} for this model", W, H, multiple);
  b.has_start = items[0].start.defined();
  b.editing = items[0].edit_mask.defined();
  for (const auto& it : items) {
    if (it.labels.dim() != 2 || it.labels.size(0) != H || it.labels.size(1) != W)
      fail("{}: label map is {} but the batch is {}x{}", it.name, fmt::format("{}", fmt::join(it.labels.sizes(), "x")),
           H, W);
    if (it.start.defined() != b.has_start || it.edit_mask.defined() != b.editing)
      fail("{}: every item of a batch must have the same inputs (start image, edit mask)", it.name);
    if (b.has_start && (it.start.dim() != 3 || it.start.size(0) != 3 || it.start.size(1) != H || it.start.size(2) != W))
      fail("{}: the start / reference image must be 3x{}x{}", it.name, H, W);
    if (config_.unet.instance_edge && !it.instance.defined()) fail("{}: this model needs an instance map", it.name);
  }
  if (latent() && !b.has_start) fail("generate: latent (IIDM) generation needs a style reference image");
  if (b.editing && !b.has_start) fail("generate: editing needs the image to edit");

  const int64_t factor = latent() ? config_.autoencoder->ddconfig.downsampling_factor() : 1;
  b.latent_height = H / factor;
  b.latent_width = W / factor;
  const int64_t h = b.latent_height, w = b.latent_width;

  // Conditioning at the denoising resolution.
  std::vector<Tensor> label_list, instance_list, start_list, mask_list;
  for (const auto& it : items) {
    label_list.push_back(it.labels.to(torch::kInt64));
    if (config_.unet.instance_edge) instance_list.push_back(it.instance.to(torch::kInt64));
    if (b.has_start) start_list.push_back(it.start.to(torch::kFloat32));
    if (b.editing) mask_list.push_back(it.edit_mask.to(torch::kFloat32));
    b.generators.push_back(at::detail::createCPUGenerator(it.seed));
  }
  const Tensor labels = resize_labels_nearest(torch::stack(label_list), h, w);
  const Tensor instance = instance_list.empty() ? Tensor() : resize_labels_nearest(torch::stack(instance_list), h, w);
  b.y = one_hot_labels(labels, config_.unet.num_labels(), options_.ignore_label, instance).to(options_.device);
  if (b.has_start) b.original = torch::stack(start_list);
  if (b.editing) {
    b.pixel_mask = torch::stack(mask_list).unsqueeze(1);  // [B, 1, H, W]
    namespace F = torch::nn::functional;
    b.denoise_mask =
        (F::interpolate(b.pixel_mask, F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kArea)) >
         0)
            .to(torch::kFloat32)
            .to(options_.device);
  }
  for (size_t i = 0; i < unets_.size(); ++i) b.members.push_back({unets_[i], weights_[i]});
  if (options_.cache_spade) b.spade = std::make_shared<ConditioningCache>();
  return b;
}

Tensor Pipeline::starting_point(Batch& b, const Tensor& current, const Stage& stage, const GaussianDiffusion& chain,
                                const StagePlan& plan, size_t stage_number) {
  if (!current.defined()) {
    if (plan.noise_index != chain.num_steps() - 1)
      fail("generate: round {} starts part-way (strength {}) but there is no start image", stage_number + 1,
           stage.strength);
    const int64_t C = config_.data_channels();
    return randn_like_on_cpu(torch::empty({b.size, C, b.latent_height, b.latent_width}), b.generators)
        .to(options_.device);
  }
  const Tensor clean = latent() ? encode(current) : current.to(options_.device);
  return chain.q_sample(clean, torch::full({b.size}, plan.noise_index, torch::kInt64),
                        randn_like_on_cpu(clean, b.generators));
}

Tensor Pipeline::run_stage(Batch& b, const Tensor& current_in, const Stage& stage, size_t stage_number,
                           GenerationResult& result, const std::function<void(int64_t)>& on_step) {
  const GaussianDiffusion& chain = this->chain(stage.respacing);
  const StagePlan plan = plan_stage(stage, chain.num_steps());

  // Colour transfer toward the original reference before every stage but the first.
  Tensor current = current_in;
  if (stage_number > 0 && stage.color_transfer != ColorTransfer::kNone && b.has_start) {
    std::vector<Tensor> moved;
    for (int64_t i = 0; i < b.size; ++i)
      moved.push_back(from_rgb8(color_transfer(stage.color_transfer, to_rgb8(b.original[i]), to_rgb8(current[i]))));
    current = torch::stack(moved);
  }
  // The image being edited, in the sampler's space: encoded once for all stages.
  if (b.editing && !b.known.defined()) b.known = latent() ? encode(b.original) : b.original.to(options_.device);
  const Tensor x = starting_point(b, current, stage, chain, plan, stage_number);

  const int64_t C = config_.data_channels();
  Denoiser denoiser(b.members, GuidanceOptions{stage.guidance, options_.batched_guidance}, C, b.spade);
  const ModelFn bound = denoiser.bind(b.y);
  std::vector<int64_t> visited;
  const ModelFn recorded = [&](const Tensor& xt, const Tensor& t) {
    visited.push_back(t[0].item<int64_t>());
    return bound(xt.contiguous(options_.memory_format()), t).to(torch::kFloat32).contiguous();
  };

  SampleOptions so;
  so.first_index = plan.first_index;
  so.eta = stage.eta;
  so.clip_denoised = resolve_clip_denoised(stage.clip_denoised, latent());
  so.generators = b.generators;
  if (b.editing) {
    // Known-region replacement: outside the mask the sample is the known image noised to the
    // level the chain has reached (index i-1 after step i; clean after the last step).
    so.after_step = [&](const Tensor& sample, int i) {
      const Tensor known_t = i > 0 ? chain.q_sample(b.known, torch::full({b.size}, i - 1, torch::kInt64),
                                                    randn_like_on_cpu(b.known, b.generators))
                                   : b.known;
      return b.denoise_mask * sample + (1 - b.denoise_mask) * known_t;
    };
  }
  if (on_step) so.on_progress = [&](int done, int) { on_step(done); };
  const Tensor out = make_sampler(stage.sampler)->sample(chain, recorded, x, so);
  Tensor next = (latent() ? decode(out) : out).to(torch::kCPU).clamp(-1, 1);
  if (b.editing) next = b.pixel_mask * next + (1 - b.pixel_mask) * b.original;  // the kept region is exact

  result.stage_timesteps.push_back(visited);
  result.denoising_steps += plan.steps;
  result.unet_forwards_per_image += static_cast<int64_t>(visited.size()) * denoiser.forwards_per_call();
  return next;
}

GenerationResult Pipeline::generate(const std::vector<GenerationItem>& items, const std::vector<Stage>& stages,
                                    const Progress& progress) {
  torch::NoGradGuard no_grad;
  const int64_t total_steps = denoising_steps(stages);  // checks the stages against this model first
  if (!items.empty() && items[0].labels.dim() == 2)     // before any work at this size
    check_memory(static_cast<int64_t>(items.size()), items[0].labels.size(0), items[0].labels.size(1), stages,
                 items[0].name);
  Batch batch = prepare_batch(items);
  GenerationResult result;
  Tensor current = batch.original;  // pixel images between stages; undefined = start from noise
  for (size_t s = 0; s < stages.size(); ++s) {
    const int64_t done_before = result.denoising_steps;
    current = run_stage(batch, current, stages[s], s, result, [&](int64_t done) {
      if (progress) progress(done_before + done, total_steps);
    });
  }
  result.images = current;
  if (batch.spade) result.spade_cache_bytes = batch.spade->peak_bytes();
  return result;
}

}  // namespace iidm

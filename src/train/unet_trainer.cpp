#include "train/unet_trainer.h"

#include <filesystem>

#include "autoencoder/autoencoder.h"
#include "core/error.h"
#include "core/labels.h"
#include "core/progress.h"
#include "core/runtime.h"
#include "core/safetensors.h"
#include "core/seed.h"
#include "core/state_dict.h"
#include "data/crops.h"
#include "data/dataset.h"
#include "data/sparse.h"
#include "train/checkpoint.h"
#include "train/distributed.h"

namespace iidm {
using torch::Tensor;

// ---------------------------------------------------------------------------------------------
// Data

TrainingData build_training_cache(const std::string& root, int width, int height, const ModelConfig& config,
                                  torch::nn::Module* autoencoder, bool flips, const std::string& cache_path,
                                  bool bf16) {
  const auto pairs = list_landscape_pairs(root);
  const int f = config.autoencoder ? config.autoencoder->ddconfig.downsampling_factor() : 1;
  if (width % f || height % f)
    fail("training size {}x{} is not a multiple of the autoencoder's factor {}", width, height, f);
  auto* ae = dynamic_cast<AutoencoderImpl*>(autoencoder);
  if (config.autoencoder && !ae) fail("a latent model needs its autoencoder to build the training cache");
  std::vector<Tensor> xs, labels;
  ProgressBar bar("encoding", static_cast<int64_t>(pairs.size()));
  torch::NoGradGuard no_grad;
  int64_t done = 0;
  for (const auto& p : pairs) {
    for (bool flip : flips ? std::vector<bool>{false, true} : std::vector<bool>{false}) {
      Sample s = load_sample(p, width, height, flip, config.unet.num_labels());
      Tensor x = s.image;
      if (ae) {
        AutocastGuard autocast(torch::kCPU, bf16);
        x = ae->encode(s.image.unsqueeze(0))[0];
      }
      xs.push_back(x.to(torch::kFloat32).contiguous());
      labels.push_back(resize_labels_nearest(s.labels.unsqueeze(0), x.size(1), x.size(2))[0].to(torch::kUInt8));
    }
    bar.update(++done);
  }
  bar.finish();
  TrainingData data{torch::stack(xs), torch::stack(labels)};
  if (!cache_path.empty())
    save_safetensors(cache_path, {{"x0", data.x0}, {"labels", data.labels}},
                     {{"source", root}, {"size", fmt::format("{}x{}", width, height)}, {"flips", flips ? "1" : "0"}});
  return data;
}

TrainingData load_training_cache(const std::string& path) {
  auto file = SafeTensorsFile::open(path);
  if (!file.contains("x0") || !file.contains("labels")) fail("{}: not a training cache (needs x0 and labels)", path);
  TrainingData d{file.tensor("x0").clone(), file.tensor("labels").clone()};
  if (d.x0.dim() != 4 || d.labels.dim() != 3 || d.x0.size(0) != d.labels.size(0) || d.x0.size(2) != d.labels.size(1) ||
      d.x0.size(3) != d.labels.size(2))
    fail("{}: x0 {} and labels {} do not match", path, fmt::join(d.x0.sizes(), "x"), fmt::join(d.labels.sizes(), "x"));
  return d;
}

// ---------------------------------------------------------------------------------------------
// Config

void UNetTrainConfig::validate() const {
  if (batch_size < 1) fail("train config: batch_size must be positive, got {}", batch_size);
  if (steps < 0) fail("train config: steps must be >= 0, got {}", steps);
  if (!(adam.lr > 0)) fail("train config: lr must be positive, got {}", adam.lr);
  if (!(ema_decay >= 0 && ema_decay < 1)) fail("train config: ema_decay must be in [0, 1), got {}", ema_decay);
  if (crop < 0) fail("train config: crop must be >= 0, got {}", crop);
  for (double p : {label_drop, sparse_prob, sparse_share})
    if (!(p >= 0 && p <= 1)) fail("train config: probabilities and shares must be in [0, 1], got {}", p);
}

UNetTrainConfig UNetTrainConfig::from_json(ConfigReader& r) {
  UNetTrainConfig c;
  c.batch_size = r.get("batch_size", c.batch_size);
  c.steps = r.get("steps", c.steps);
  c.adam.lr = r.get("lr", c.adam.lr);
  c.adam.weight_decay = r.get("weight_decay", c.adam.weight_decay);
  c.adam.eps = r.get("adam_eps", c.adam.eps);
  c.ema_decay = r.get("ema_decay", c.ema_decay);
  c.ema_warmup = r.get("ema_warmup", c.ema_warmup);
  c.grad_clip = r.get("grad_clip", c.grad_clip);
  c.label_drop = r.get("label_drop", c.label_drop);
  c.sparse_prob = r.get("sparse_prob", c.sparse_prob);
  c.sparse_share = r.get("sparse_share", c.sparse_share);
  c.ignore_label = r.get("ignore_label", c.ignore_label);
  c.crop = r.get("crop", c.crop);
  c.bf16 = r.get("bf16", c.bf16);
  c.seed = r.get("seed", c.seed);
  return r.validated(c);
}

Json UNetTrainConfig::to_json() const {
  return Json{{"batch_size", batch_size},
              {"steps", steps},
              {"lr", adam.lr},
              {"weight_decay", adam.weight_decay},
              {"adam_eps", adam.eps},
              {"ema_decay", ema_decay},
              {"ema_warmup", ema_warmup},
              {"grad_clip", grad_clip},
              {"label_drop", label_drop},
              {"sparse_prob", sparse_prob},
              {"sparse_share", sparse_share},
              {"ignore_label", ignore_label},
              {"crop", crop},
              {"bf16", bf16},
              {"seed", seed}};
}

// ---------------------------------------------------------------------------------------------
// Trainer

UNetTrainer::UNetTrainer(ModelConfig model_config, UNetTrainConfig config, TrainingData data, Distributed* distributed)
    : model_config_(std::move(model_config)), config_(config), data_(std::move(data)), distributed_(distributed) {
  config_.validate();
  if (data_.x0.size(0) == 0) fail("training: the data set is empty");
  if (data_.x0.size(1) != model_config_.data_channels())
    fail("training: the data has {} channels, the model denoises {}", data_.x0.size(1), model_config_.data_channels());
  const int world = distributed_ ? distributed_->world_size() : 1;
  if (config_.crop > 0 && (config_.crop > data_.x0.size(2) || config_.crop > data_.x0.size(3)))
    fail("training: crop {} is larger than the {}x{} training maps", config_.crop, data_.x0.size(3), data_.x0.size(2));
  if (config_.batch_size % world)
    fail("training: the global batch {} does not split evenly over {} processes", config_.batch_size, world);
  torch::manual_seed(config_.seed);
  model_ = UNetModel(model_config_.unet);
  model_->train();
  if (distributed_) distributed_->broadcast_parameters(*model_);
  params_ = model_->parameters();
  optimizer_ = std::make_unique<AdamW>(params_, config_.adam);
  ema_ = std::make_unique<Ema>(params_, config_.ema_decay, config_.ema_warmup);
  DiffusionConfig dc = model_config_.diffusion;
  dc.timestep_respacing = "";  // training always uses the full chain
  diffusion_ = std::make_unique<GaussianDiffusion>(dc);
}

UNetTrainer::~UNetTrainer() = default;

void UNetTrainer::init_weights(const std::string& path) {
  load_state_dict(*model_, path);
  if (distributed_) distributed_->broadcast_parameters(*model_);
  ema_ = std::make_unique<Ema>(params_, config_.ema_decay, config_.ema_warmup);
}

UNetTrainer::StepLoss UNetTrainer::train_step() {
  const int64_t B = config_.batch_size, N = data_.x0.size(0);
  const int world = distributed_ ? distributed_->world_size() : 1, rank = distributed_ ? distributed_->rank() : 0;
  // All draws of this step for the whole global batch, from (seed, step).
  auto gen = at::detail::createCPUGenerator(derive_seed(config_.seed, "step:" + std::to_string(step_)));
  Tensor index = torch::randint(N, {B}, gen, torch::kInt64);
  Tensor drop = torch::rand({B}, gen) < config_.label_drop;
  Tensor sparse = torch::rand({B}, gen) < config_.sparse_prob;
  Tensor t = torch::randint(diffusion_->num_steps(), {B}, gen, torch::kInt64);
  // Mirrored copies are in the cache (build_training_cache adds them unless told not to), so crops
  // are not flipped here.
  const auto crops = random_crops({data_.x0, data_.labels}, index, config_.crop, /*flip=*/false, gen);
  Tensor x0 = crops[0], labels = crops[1].to(torch::kInt64);
  Tensor noise = torch::randn(x0.sizes(), gen);
  SparseMaskOptions so;
  so.share = config_.sparse_share;
  so.ignore_label = config_.ignore_label;
  for (int64_t i = 0; i < B; ++i)
    if (sparse[i].item<bool>()) labels[i].copy_(classwise_sparse_mask(labels[i], so, gen));
  Tensor y = one_hot_labels(labels, model_config_.unet.num_labels(), config_.ignore_label);
  y = y * (~drop).to(torch::kFloat32).view({-1, 1, 1, 1});
  // Dropout (if any) draws from the global generator: seed it per step too.
  torch::manual_seed(derive_seed(config_.seed, "dropout:" + std::to_string(step_) + ":" + std::to_string(rank)));

  // This process's slice of the global batch.
  const int64_t local = B / world, first = rank * local;
  auto slice = [&](const Tensor& a) { return a.narrow(0, first, local); };
  Tensor y_local = slice(y);
  ModelFn fn = [&](const Tensor& x, const Tensor& model_t) {
    AutocastGuard autocast(x.device(), config_.bf16);
    return model_->forward(x, model_t, y_local).to(torch::kFloat32);
  };
  optimizer_->zero_grad();
  LossTerms terms = diffusion_->training_losses(fn, slice(x0), slice(t), slice(noise));
  // Sum over local samples / global batch: summed over processes this is the global mean.
  Tensor loss = terms.loss.sum() / static_cast<double>(B);
  loss.backward();
  StepLoss out;
  out.loss = loss.item<double>();
  out.mse = terms.mse.sum().item<double>() / B;
  out.vb = terms.vb.defined() ? terms.vb.sum().item<double>() / B : 0.0;
  if (distributed_) {
    distributed_->all_reduce_gradients(params_);
    out.loss = distributed_->all_reduce_sum(out.loss);
    out.mse = distributed_->all_reduce_sum(out.mse);
    out.vb = distributed_->all_reduce_sum(out.vb);
  }
  if (config_.grad_clip > 0) clip_grad_norm(params_, config_.grad_clip);
  optimizer_->step();
  ema_->update(params_);
  ++step_;
  return out;
}

namespace {
constexpr const char* kUNetCheckpointFormat = "iidm-unet-train-checkpoint-1";
}

void UNetTrainer::save_checkpoint(const std::string& path) const {
  if (distributed_ && distributed_->rank() != 0) return;
  const auto names = parameter_names(*model_);
  CheckpointWriter w(kUNetCheckpointFormat);
  w.add_module("model.", *model_);
  w.add_ema("", names, *ema_);
  w.add_optimizer("", names, *optimizer_);
  w.set("step", std::to_string(step_));
  w.set("seed", std::to_string(config_.seed));
  w.set("train_config", config_.to_json().dump());
  w.set("unet_config", model_config_.unet.to_json().dump());
  w.write(path);
}

void UNetTrainer::resume(const std::string& path) {
  CheckpointReader r(path, kUNetCheckpointFormat);
  r.require_seed(config_.seed);
  r.load_module("model.", *model_);
  const auto names = parameter_names(*model_);
  r.load_ema("", names, *ema_);
  r.load_optimizer("", names, *optimizer_);
  step_ = r.meta_int("step");
  if (distributed_) distributed_->broadcast_parameters(*model_);
}

UNetModel UNetTrainer::ema_model() const {
  UNetModel copy(model_config_.unet);
  torch::NoGradGuard no_grad;
  auto dst = copy->parameters();
  for (size_t i = 0; i < dst.size(); ++i) dst[i].copy_(ema_->shadow()[i]);
  auto src_buffers = model_->buffers(), dst_buffers = copy->buffers();
  for (size_t i = 0; i < dst_buffers.size(); ++i) dst_buffers[i].copy_(src_buffers[i]);
  copy->eval();
  return copy;
}

void UNetTrainer::export_weights(const std::string& path, bool ema, torch::ScalarType dtype) const {
  if (distributed_ && distributed_->rank() != 0) return;
  // Parameters come first in state_dict(), in the order of params_ (and of the EMA shadow).
  auto named = state_dict(*model_);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (size_t i = 0; i < named.size(); ++i) {
    Tensor value = ema && i < params_.size() ? ema_->shadow()[i] : named[i].second;
    tensors.emplace_back(named[i].first, value.is_floating_point() ? value.detach().to(dtype) : value.detach());
  }
  save_safetensors(path, tensors, {{"step", std::to_string(step_)}, {"weights", ema ? "ema" : "model"}});
}

}  // namespace iidm

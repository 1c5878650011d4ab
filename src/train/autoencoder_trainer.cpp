#include "train/autoencoder_trainer.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "core/image.h"
#include "core/progress.h"
#include "core/runtime.h"
#include "core/seed.h"
#include "core/state_dict.h"
#include "data/crops.h"
#include "train/checkpoint.h"

namespace iidm {
namespace fs = std::filesystem;
using torch::Tensor;

// ---------------------------------------------------------------------------------------------
// Config

void AutoencoderTrainConfig::validate() const {
  if (batch_size < 1) fail("autoencoder training: batch_size must be positive, got {}", batch_size);
  if (steps < 0) fail("autoencoder training: steps must be >= 0, got {}", steps);
  if (crop < 0) fail("autoencoder training: crop must be >= 0, got {}", crop);
  if (!(adam.lr > 0)) fail("autoencoder training: lr must be positive, got {}", adam.lr);
  for (double w : {kl_weight, codebook_weight, commitment, disc_weight})
    if (!(w >= 0)) fail("autoencoder training: loss weights must be >= 0, got {}", w);
  if (disc_start >= 0 && (disc_channels < 1 || disc_layers < 1))
    fail("autoencoder training: the discriminator needs >= 1 channel and layer");
}

AutoencoderTrainConfig AutoencoderTrainConfig::from_json(ConfigReader& r) {
  AutoencoderTrainConfig c;
  c.batch_size = r.get("batch_size", c.batch_size);
  c.steps = r.get("steps", c.steps);
  c.crop = r.get("crop", c.crop);
  c.adam.lr = r.get("lr", c.adam.lr);
  c.adam.weight_decay = r.get("weight_decay", c.adam.weight_decay);
  c.kl_weight = r.get("kl_weight", c.kl_weight);
  c.codebook_weight = r.get("codebook_weight", c.codebook_weight);
  c.commitment = r.get("commitment", c.commitment);
  c.disc_start = r.get("disc_start", c.disc_start);
  c.disc_weight = r.get("disc_weight", c.disc_weight);
  c.disc_channels = r.get("disc_channels", c.disc_channels);
  c.disc_layers = r.get("disc_layers", c.disc_layers);
  c.bf16 = r.get("bf16", c.bf16);
  c.seed = r.get("seed", c.seed);
  return r.validated(c);
}

Json AutoencoderTrainConfig::to_json() const {
  return Json{{"batch_size", batch_size},
              {"steps", steps},
              {"crop", crop},
              {"lr", adam.lr},
              {"weight_decay", adam.weight_decay},
              {"kl_weight", kl_weight},
              {"codebook_weight", codebook_weight},
              {"commitment", commitment},
              {"disc_start", disc_start},
              {"disc_weight", disc_weight},
              {"disc_channels", disc_channels},
              {"disc_layers", disc_layers},
              {"bf16", bf16},
              {"seed", seed}};
}

// ---------------------------------------------------------------------------------------------
// Data

Tensor load_image_set(const std::string& root, int width, int height) {
  const fs::path dir = fs::path(root) / "imgs";
  if (!fs::is_directory(dir)) fail("{}: no imgs/ folder (expected the competition layout)", root);
  std::vector<std::string> paths;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string ext = e.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
    if (e.is_regular_file() && (ext == ".jpg" || ext == ".jpeg" || ext == ".png")) paths.push_back(e.path().string());
  }
  std::sort(paths.begin(), paths.end());
  if (paths.empty()) fail("{}: no images", dir.string());
  std::vector<Tensor> images;
  ProgressBar bar("reading images", static_cast<int64_t>(paths.size()));
  for (const auto& p : paths) {
    images.push_back(read_image(p, width, height)[0]);
    bar.update(static_cast<int64_t>(images.size()));
  }
  bar.finish();
  return torch::stack(images);
}

// ---------------------------------------------------------------------------------------------
// Trainer

AutoencoderTrainer::AutoencoderTrainer(AutoencoderConfig model_config, AutoencoderTrainConfig config, Tensor images,
                                       torch::Device device)
    : model_config_(std::move(model_config)), config_(config), images_(std::move(images)), device_(device) {
  config_.validate();
  model_config_.validate();
  if (images_.dim() != 4 || images_.size(1) != model_config_.ddconfig.in_channels || images_.size(0) == 0)
    fail("autoencoder training: images must be [N, {}, H, W] with N > 0, got {}", model_config_.ddconfig.in_channels,
         fmt::join(images_.sizes(), "x"));
  const int f = model_config_.ddconfig.downsampling_factor();
  const int64_t H = images_.size(2), W = images_.size(3);
  if (config_.crop > 0 && (config_.crop > H || config_.crop > W))
    fail("autoencoder training: crop {} is larger than the {}x{} images", config_.crop, W, H);
  const int64_t h = config_.crop > 0 ? config_.crop : H, w = config_.crop > 0 ? config_.crop : W;
  if (h % f || w % f) fail("autoencoder training: the training size {}x{} is not a multiple of the factor {}", w, h, f);
  if (config_.disc_start >= 0 && std::min(h, w) < 3 * (int64_t{1} << std::min(config_.disc_layers, 20)))
    fail("autoencoder training: {}x{} is too small for a {}-layer discriminator", w, h, config_.disc_layers);

  torch::manual_seed(config_.seed);
  model_ = Autoencoder(model_config_);
  model_->to(device_);
  model_->train();
  params_ = model_->parameters();
  optimizer_ = std::make_unique<AdamW>(params_, config_.adam);
  if (config_.disc_start >= 0) {
    disc_ = NLayerDiscriminator(model_config_.ddconfig.out_ch, config_.disc_channels, config_.disc_layers);
    disc_->to(device_);
    disc_->train();
    disc_params_ = disc_->parameters();
    disc_optimizer_ = std::make_unique<AdamW>(disc_params_, config_.adam);
  }
}

void AutoencoderTrainer::init_weights(const std::string& path) { load_state_dict(*model_, path); }

Tensor AutoencoderTrainer::batch(at::Generator& gen) const {
  Tensor index = torch::randint(images_.size(0), {config_.batch_size}, gen, torch::kInt64);
  return random_crops({images_}, index, config_.crop, /*flip=*/true, gen)[0].to(device_);
}

AutoencoderTrainer::StepLoss AutoencoderTrainer::train_step() {
  auto gen = at::detail::createCPUGenerator(derive_seed(config_.seed, "ae-step:" + std::to_string(step_)));
  const Tensor x = batch(gen);
  const double B = static_cast<double>(x.size(0));
  const bool use_disc = disc_ && step_ >= config_.disc_start;
  StepLoss out;

  // Generator (autoencoder) update.
  Tensor xrec, loss, nll, g_loss;
  {
    AutocastGuard autocast(device_, config_.bf16);
    if (model_->is_vq()) {
      // VQ-VAE: codebook term pulls the entries to the encodings, the commitment term (beta) the
      // encodings to their entries; the decoder sees the straight-through estimate.
      Tensor h = model_->encode_raw(x).to(torch::kFloat32);
      Tensor indices = model_->quantizer->forward(h.detach()).indices;
      Tensor e = model_->quantizer->embedding->forward(indices).permute({0, 3, 1, 2});
      Tensor reg = (e - h.detach()).pow(2).mean() + config_.commitment * (e.detach() - h).pow(2).mean();
      Tensor zq = h + (e - h).detach();
      xrec = model_->decoder->forward(model_->post_quant_conv->forward(zq)).to(torch::kFloat32);
      // taming's VQLPIPSWithDiscriminator: mean reconstruction error.
      nll = (x - xrec).abs().mean();
      loss = nll + config_.codebook_weight * reg;
      out.reg = reg.item<double>();
    } else {
      DiagonalGaussian posterior = model_->encode_kl(x);
      posterior.mean = posterior.mean.to(torch::kFloat32);
      posterior.logvar = posterior.logvar.to(torch::kFloat32);
      Tensor z = posterior.sample(gen);
      xrec = model_->decode_raw(z).to(torch::kFloat32);
      // LDM's LPIPSWithDiscriminator (logvar 0): per-sample sums, averaged over the batch.
      nll = (x - xrec).abs().sum() / B;
      Tensor kl = posterior.kl().sum() / B;
      loss = nll + config_.kl_weight * kl;
      out.reg = kl.item<double>();
    }
    if (use_disc) {
      g_loss = -disc_->forward(xrec).to(torch::kFloat32).mean();
      // LDM's adaptive weight: balance the two gradients at the decoder's last layer.
      const Tensor last = model_->decoder->named_parameters()["conv_out.weight"];  // a handle: the dict is a temporary
      Tensor nll_grad = torch::autograd::grad({nll}, {last}, {}, true)[0];
      Tensor g_grad = torch::autograd::grad({g_loss}, {last}, {}, true)[0];
      Tensor d_weight = (nll_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach() * config_.disc_weight;
      loss = loss + d_weight * g_loss;
      out.g = g_loss.item<double>();
      out.d_weight = d_weight.item<double>();
    }
  }
  optimizer_->zero_grad();
  if (disc_) disc_->zero_grad();
  loss.backward();
  optimizer_->step();
  out.loss = loss.item<double>();
  out.l1 = (x - xrec.detach()).abs().mean().item<double>();

  // Discriminator update: hinge loss on real images and detached reconstructions.
  if (use_disc) {
    Tensor d_loss;
    {
      AutocastGuard autocast(device_, config_.bf16);
      Tensor real = disc_->forward(x).to(torch::kFloat32), fake = disc_->forward(xrec.detach()).to(torch::kFloat32);
      d_loss = 0.5 * (torch::relu(1.0 - real).mean() + torch::relu(1.0 + fake).mean());
    }
    disc_optimizer_->zero_grad();
    d_loss.backward();
    disc_optimizer_->step();
    out.d = d_loss.item<double>();
  }
  ++step_;
  return out;
}

namespace {
constexpr const char* kAutoencoderCheckpointFormat = "iidm-autoencoder-train-checkpoint-1";
}

void AutoencoderTrainer::save_checkpoint(const std::string& path) const {
  CheckpointWriter w(kAutoencoderCheckpointFormat);
  w.add_module("model.", *model_);
  w.add_optimizer("", parameter_names(*model_), *optimizer_);
  if (disc_) {
    w.add_module("disc.", *disc_);
    w.add_optimizer("disc_", parameter_names(*disc_), *disc_optimizer_);
  }
  w.set("step", std::to_string(step_));
  w.set("seed", std::to_string(config_.seed));
  w.set("train_config", config_.to_json().dump());
  w.set("autoencoder_config", model_config_.to_json().dump());
  w.write(path);
}

void AutoencoderTrainer::resume(const std::string& path) {
  CheckpointReader r(path, kAutoencoderCheckpointFormat);
  r.require_seed(config_.seed);
  r.load_module("model.", *model_);
  r.load_optimizer("", parameter_names(*model_), *optimizer_);
  const bool has_disc = Json::parse(r.meta("train_config")).value("disc_start", -1) >= 0;
  if (has_disc != static_cast<bool>(disc_))
    fail("{}: written {} a discriminator, but this run is configured {} one", path, has_disc ? "with" : "without",
         disc_ ? "with" : "without");
  if (disc_) {
    r.load_module("disc.", *disc_);
    r.load_optimizer("disc_", parameter_names(*disc_), *disc_optimizer_);
  }
  step_ = r.meta_int("step");
}

void AutoencoderTrainer::export_weights(const std::string& path) const {
  save_state_dict(*model_, path, false,
                  {{"step", std::to_string(step_)}, {"autoencoder_config", model_config_.to_json().dump()}});
}

double AutoencoderTrainer::measure_scale_factor(int count) {
  torch::NoGradGuard no_grad;
  model_->eval();
  const int64_t n = std::min<int64_t>(count, images_.size(0));
  std::vector<Tensor> latents;
  for (int64_t i = 0; i < n; i += 8) {
    Tensor x = images_.narrow(0, i, std::min<int64_t>(8, n - i)).to(device_);
    latents.push_back(model_->is_vq() ? model_->encode_raw(x) : model_->encode_kl(x).mode());
  }
  model_->train();
  const double std = torch::cat(latents).to(torch::kFloat64).std().item<double>();
  if (!(std > 0)) fail("autoencoder: the latents have no spread (std {}); the model is not trained", std);
  return 1.0 / std;
}

Tensor AutoencoderTrainer::reconstruction_grid(int count) {
  torch::NoGradGuard no_grad;
  model_->eval();
  Tensor x = images_.narrow(0, 0, std::min<int64_t>(count, images_.size(0))).to(device_);
  Tensor h = model_->encode_raw(x);
  Tensor xrec = model_->decode_raw(model_->is_vq() ? h : DiagonalGaussian::from_moments(h).mode());
  model_->train();
  auto row = [](const Tensor& t) { return torch::cat(t.unbind(0), 2); };
  return torch::cat({row(x), row(xrec.clamp(-1, 1))}, 1).cpu();
}

}  // namespace iidm

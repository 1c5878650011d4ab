// `iidm train-unet`: train the denoiser (hybrid loss, CFG label drop, sparse masking, EMA) from the
// competition layout or a pre-encoded cache; resumable, multi-process with torchrun/Slurm variables.
#include <filesystem>

#include "autoencoder/autoencoder.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/image.h"
#include "core/progress.h"
#include "core/runtime.h"
#include "core/state_dict.h"
#include "pipeline/preview.h"
#include "train/distributed.h"
#include "train/unet_trainer.h"

namespace iidm::cli {
namespace fs = std::filesystem;

std::function<int()> add_train_unet_command(CLI::App& app, const CommonOptions&) {
  auto* cmd = app.add_subcommand("train-unet",
                                 "Train the SDM/IIDM U-Net; writes OUT/checkpoint.safetensors (resumable) and "
                                 "OUT/unet-ema.safetensors (for generate/batch). Multi-process: set MASTER_ADDR, "
                                 "MASTER_PORT, RANK, WORLD_SIZE (or Slurm's) for each process");
  struct Args {
    std::string model, data, cache, autoencoder, out, size = "512x384", init, export_precision = "fp32";
    int save_every = 500, log_every = 50, sample_every = 500;
    bool no_flip = false;
    UNetTrainConfig train;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--model", a->model, "Model config (configs/models/*.json)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--data", a->data, "Training set in the competition layout (imgs/ + labels/)");
  cmd->add_option(
      "--cache", a->cache,
      "Training cache (safetensors with x0 + labels): read if it exists, else built from --data and written");
  cmd->add_option("--autoencoder", a->autoencoder, "Autoencoder weights, to encode --data (latent models)");
  cmd->add_option("--size", a->size, "Training image size WxH")->capture_default_str();
  cmd->add_flag("--no-flip", a->no_flip, "Do not add horizontally flipped copies to the cache");
  cmd->add_option("--out", a->out, "Output folder")->required();
  cmd->add_option("--init", a->init, "Initial U-Net weights (fine-tuning)")->check(CLI::ExistingFile);
  cmd->add_option("--steps", a->train.steps, "Total optimisation steps (a resumed run continues to this)")
      ->capture_default_str();
  cmd->add_option("--batch-size", a->train.batch_size, "Global batch size")->capture_default_str();
  cmd->add_option("--lr", a->train.adam.lr, "AdamW learning rate")->capture_default_str();
  cmd->add_option("--weight-decay", a->train.adam.weight_decay, "AdamW weight decay")->capture_default_str();
  cmd->add_option("--adam-eps", a->train.adam.eps, "AdamW epsilon")->capture_default_str();
  cmd->add_option("--ema-decay", a->train.ema_decay, "EMA decay")->capture_default_str();
  cmd->add_flag("!--no-ema-warmup", a->train.ema_warmup, "Use the full EMA decay from the first step");
  cmd->add_option("--grad-clip", a->train.grad_clip, "Clip the gradient norm (<= 0: off)")->capture_default_str();
  cmd->add_option("--label-drop", a->train.label_drop, "Probability of an all-zero label map (CFG)")
      ->capture_default_str();
  cmd->add_option("--sparse-prob", a->train.sparse_prob, "Probability of class-wise sparse masking")
      ->capture_default_str();
  cmd->add_option("--sparse-share", a->train.sparse_share, "Share of each class's pixels sparse masking removes")
      ->capture_default_str();
  cmd->add_option("--export-precision", a->export_precision,
                  "Storage precision of the exported weights: fp32 | fp16 | bf16")
      ->capture_default_str();
  cmd->add_option("--crop", a->train.crop, "Train on square random crops of the cached maps (0: whole)")
      ->capture_default_str();
  cmd->add_flag("--bf16", a->train.bf16, "Mixed precision: bfloat16 matmuls and convolutions (autocast)");
  cmd->add_option("--seed", a->train.seed, "Training seed")->capture_default_str();
  cmd->add_option("--save-every", a->save_every, "Checkpoint every N steps")->capture_default_str();
  cmd->add_option("--log-every", a->log_every, "Print the loss every N steps")->capture_default_str();
  cmd->add_option("--sample-every", a->sample_every,
                  "Write a sample grid (mask | reference | sample) to OUT/samples every N steps (0: never)")
      ->capture_default_str();
  return [a]() {
    ModelConfig config = ModelConfig::from_file(a->model);
    const torch::ScalarType dtype = parse_precision(a->export_precision);  // checked before hours of training
    std::unique_ptr<Distributed> dist;
    if (auto env = DistributedEnv::from_environment()) dist = std::make_unique<Distributed>(*env);
    const bool leader = !dist || dist->rank() == 0;
    const ImageSize size = parse_size(a->size);
    const int W = size.width, H = size.height;
    fs::create_directories(a->out);

    Autoencoder ae{nullptr};
    if (config.autoencoder && !a->autoencoder.empty()) {
      ae = Autoencoder(*config.autoencoder);
      LoadOptions lo;
      lo.allow_unexpected = true;  // e.g. an LDM checkpoint's discriminator (loss.*)
      load_state_dict(*ae, a->autoencoder, lo);
      ae->eval();
    }
    TrainingData data;
    if (!a->cache.empty() && fs::exists(a->cache)) {
      data = load_training_cache(a->cache);
    } else {
      if (a->data.empty()) fail("give --data (and optionally --cache to keep the encoded set), or an existing --cache");
      if (config.autoencoder && !ae) fail("{}: a latent model needs --autoencoder to encode the data", a->model);
      // Every process encodes the same set (deterministic); only rank 0 writes the cache file.
      data = build_training_cache(a->data, W, H, config, ae ? ae.ptr().get() : nullptr, !a->no_flip,
                                  leader ? a->cache : std::string(), a->train.bf16);
    }
    UNetTrainer trainer(config, a->train, data, dist.get());
    const std::string checkpoint = (fs::path(a->out) / "checkpoint.safetensors").string();
    if (fs::exists(checkpoint)) {
      trainer.resume(checkpoint);
      if (leader) fmt::print(stderr, "resumed {} at step {}\n", checkpoint, trainer.step());
    } else if (!a->init.empty()) {
      trainer.init_weights(a->init);
    }
    // Sample grids (mask | reference | sample per row) from the EMA weights, IIDM-style: the
    // reference is another training item, noised to strength 0.7 and denoised under the mask.
    const bool grids = leader && a->sample_every > 0 && (!config.autoencoder || ae);
    if (leader && a->sample_every > 0 && !grids)
      fmt::print(stderr, "no sample grids: a latent model needs --autoencoder for them\n");
    auto write_grid = [&] {
      write_image((fs::path(a->out) / "samples" / fmt::format("step-{:06}.png", trainer.step())).string(),
                  training_preview(config, trainer.ema_model(), ae, data.x0, data.labels, a->train.ignore_label));
    };
    if (grids) fs::create_directories(fs::path(a->out) / "samples");

    ProgressBar bar("training", a->train.steps, trainer.step());
    double loss_sum = 0;
    int loss_count = 0;
    while (trainer.step() < a->train.steps) {
      auto loss = trainer.train_step();
      loss_sum += loss.loss;
      ++loss_count;
      if (leader)
        bar.update(trainer.step(), fmt::format("loss {:.4f} (mse {:.4f}, vb {:.4f})", loss.loss, loss.mse, loss.vb));
      if (leader && a->log_every > 0 && trainer.step() % a->log_every == 0) {
        fmt::print(stderr, "\nstep {} mean loss {:.5f}\n", trainer.step(), loss_sum / loss_count);
        loss_sum = 0;
        loss_count = 0;
      }
      if (a->save_every > 0 && trainer.step() % a->save_every == 0) trainer.save_checkpoint(checkpoint);
      if (grids && trainer.step() % a->sample_every == 0) write_grid();
    }
    bar.finish();
    trainer.save_checkpoint(checkpoint);
    trainer.export_weights((fs::path(a->out) / "unet-ema.safetensors").string(), true, dtype);
    trainer.export_weights((fs::path(a->out) / "unet.safetensors").string(), false, dtype);
    if (dist) dist->barrier();
    if (leader) fmt::print("trained to step {}; weights in {}\n", trainer.step(), a->out);
    return 0;
  };
}

}  // namespace iidm::cli

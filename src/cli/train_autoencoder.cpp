// `iidm train-autoencoder`: train a KL or VQ first stage on the competition layout's images;
// resumable, with reconstruction grids; writes weights plus a config carrying the latent scale.
#include <filesystem>

#include "cli/commands.h"
#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/image.h"
#include "core/progress.h"
#include "core/runtime.h"
#include "train/autoencoder_trainer.h"

namespace iidm::cli {
namespace fs = std::filesystem;

// An autoencoder config file (configs/models/vq-f4.json) or a model file with an "autoencoder".
AutoencoderConfig read_autoencoder_config(const std::string& path) {
  Json json = read_json_file(path);
  if (json.is_object() && json.contains("autoencoder")) {
    ConfigReader reader(json["autoencoder"], path + ": autoencoder");
    return AutoencoderConfig::from_json(reader);
  }
  ConfigReader reader(json, path);
  return AutoencoderConfig::from_json(reader);
}

std::function<int()> add_train_autoencoder_command(CLI::App& app, const CommonOptions& common) {
  auto* cmd = app.add_subcommand("train-autoencoder",
                                 "Train a KL or VQ autoencoder (L1 + KL | codebook, optional patch discriminator); "
                                 "writes OUT/checkpoint.safetensors (resumable), OUT/autoencoder.safetensors and "
                                 "OUT/autoencoder.json (the config with the measured latent scale)");
  struct Args {
    std::string model, data, out, size = "512x384", init, scale_factor = "auto";
    int save_every = 500, log_every = 100, sample_every = 500;
    AutoencoderTrainConfig train;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--model", a->model, "Autoencoder config (configs/models/vq-f4.json) or a model config with one")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--data", a->data, "Training images in the competition layout (imgs/)")->required();
  cmd->add_option("--size", a->size, "Image size WxH the set is read at")->capture_default_str();
  cmd->add_option("--out", a->out, "Output folder")->required();
  cmd->add_option("--init", a->init, "Initial weights (fine-tuning)")->check(CLI::ExistingFile);
  cmd->add_option("--steps", a->train.steps, "Total steps (a resumed run continues to this)")->capture_default_str();
  cmd->add_option("--batch-size", a->train.batch_size, "Batch size")->capture_default_str();
  cmd->add_option("--crop", a->train.crop, "Train on square random crops of this size (0: whole images)")
      ->capture_default_str();
  cmd->add_option("--lr", a->train.adam.lr, "Learning rate (Adam, betas 0.5/0.9 as LDM)")->capture_default_str();
  cmd->add_option("--kl-weight", a->train.kl_weight, "KL weight (kl models)")->capture_default_str();
  cmd->add_option("--codebook-weight", a->train.codebook_weight, "Codebook term weight (vq models)")
      ->capture_default_str();
  cmd->add_option("--commitment", a->train.commitment, "Commitment beta (vq models)")->capture_default_str();
  cmd->add_option("--disc-start", a->train.disc_start, "Step from which the patch discriminator trains (< 0: none)")
      ->capture_default_str();
  cmd->add_option("--disc-weight", a->train.disc_weight, "Discriminator weight (scales the adaptive weight)")
      ->capture_default_str();
  cmd->add_option("--disc-channels", a->train.disc_channels, "Discriminator width")->capture_default_str();
  cmd->add_option("--disc-layers", a->train.disc_layers, "Discriminator depth")->capture_default_str();
  cmd->add_flag("--bf16", a->train.bf16, "Mixed precision: bfloat16 matmuls and convolutions (autocast)");
  cmd->add_option("--seed", a->train.seed, "Training seed")->capture_default_str();
  cmd->add_option("--scale-factor", a->scale_factor,
                  "Latent scale written to autoencoder.json: auto (kl: 1/std of the latents, LDM's scale_by_std; "
                  "vq: 1, as IIDM) or a number")
      ->capture_default_str();
  cmd->add_option("--save-every", a->save_every, "Checkpoint every N steps")->capture_default_str();
  cmd->add_option("--log-every", a->log_every, "Print mean losses every N steps")->capture_default_str();
  cmd->add_option("--sample-every", a->sample_every,
                  "Write a reconstruction grid to OUT/samples every N steps (0: never)")
      ->capture_default_str();
  return [a, &common]() {
    AutoencoderConfig config = read_autoencoder_config(a->model);
    const ImageSize size = parse_size(a->size);
    const int W = size.width, H = size.height;
    double fixed_scale = 0;
    if (a->scale_factor != "auto") {
      try {
        fixed_scale = std::stod(a->scale_factor);
      } catch (const std::exception&) {
      }
      if (!(fixed_scale > 0)) fail("--scale-factor must be 'auto' or a positive number, got '{}'", a->scale_factor);
    }
    fs::create_directories(fs::path(a->out) / "samples");
    AutoencoderTrainer trainer(config, a->train, load_image_set(a->data, W, H), parse_device(common.device));
    const std::string checkpoint = (fs::path(a->out) / "checkpoint.safetensors").string();
    if (fs::exists(checkpoint)) {
      trainer.resume(checkpoint);
      fmt::print(stderr, "resumed {} at step {}\n", checkpoint, trainer.step());
    } else if (!a->init.empty()) {
      trainer.init_weights(a->init);
    }
    auto write_grid = [&] {
      write_image((fs::path(a->out) / "samples" / fmt::format("step-{:06}.png", trainer.step())).string(),
                  trainer.reconstruction_grid());
    };
    ProgressBar bar("training", a->train.steps, trainer.step());
    AutoencoderTrainer::StepLoss sum;
    int count = 0;
    while (trainer.step() < a->train.steps) {
      const auto l = trainer.train_step();
      sum.loss += l.loss, sum.l1 += l.l1, sum.reg += l.reg, sum.g += l.g, sum.d += l.d;
      ++count;
      bar.update(trainer.step(), fmt::format("l1 {:.4f} reg {:.3g}{}", l.l1, l.reg,
                                             l.d_weight > 0 ? fmt::format(" g {:.3f} d {:.3f}", l.g, l.d) : ""));
      if (a->log_every > 0 && trainer.step() % a->log_every == 0) {
        fmt::print(stderr, "\nstep {} mean loss {:.5f} l1 {:.5f} reg {:.5g} g {:.4f} d {:.4f}\n", trainer.step(),
                   sum.loss / count, sum.l1 / count, sum.reg / count, sum.g / count, sum.d / count);
        sum = {};
        count = 0;
      }
      if (a->save_every > 0 && trainer.step() % a->save_every == 0) trainer.save_checkpoint(checkpoint);
      if (a->sample_every > 0 && trainer.step() % a->sample_every == 0) write_grid();
    }
    bar.finish();
    trainer.save_checkpoint(checkpoint);
    write_grid();
    const std::string weights = (fs::path(a->out) / "autoencoder.safetensors").string();
    trainer.export_weights(weights);
    config.scale_factor = fixed_scale > 0 ? fixed_scale : config.kind == "kl" ? trainer.measure_scale_factor() : 1.0;
    write_file_atomic((fs::path(a->out) / "autoencoder.json").string(), config.to_json().dump(2) + "\n");
    fmt::print("trained to step {}; weights in {}, config (scale_factor {:.6g}) in {}\n", trainer.step(), weights,
               config.scale_factor, (fs::path(a->out) / "autoencoder.json").string());
    return 0;
  };
}

}  // namespace iidm::cli

// `iidm train-segmenter`: train the segmentation network that measures mask accuracy; resumable;
// prints the held-out pixel accuracy when given a validation set.
#include <filesystem>

#include "cli/commands.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/runtime.h"
#include "train/segmenter_trainer.h"

namespace iidm::cli {
namespace fs = std::filesystem;

std::function<int()> add_train_segmenter_command(CLI::App& app, const CommonOptions& common) {
  auto* cmd =
      app.add_subcommand("train-segmenter",
                         "Train the segmentation network (mask accuracy of generated images); writes "
                         "OUT/checkpoint.safetensors (resumable), OUT/segmenter.safetensors and OUT/segmenter.json");
  struct Args {
    std::string model, data, validation, out, size = "512x384";
    int save_every = 500, log_every = 100;
    SegmenterTrainConfig train;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--model", a->model, "Segmenter config JSON (num_classes, channels, channel_mult, blocks)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--data", a->data, "Training set in the competition layout (imgs/ + labels/)")->required();
  cmd->add_option("--validation", a->validation, "Held-out set (imgs/ + labels/): pixel accuracy at the end");
  cmd->add_option("--size", a->size, "Image size WxH the sets are read at")->capture_default_str();
  cmd->add_option("--out", a->out, "Output folder")->required();
  cmd->add_option("--steps", a->train.steps, "Total steps (a resumed run continues to this)")->capture_default_str();
  cmd->add_option("--batch-size", a->train.batch_size, "Batch size")->capture_default_str();
  cmd->add_option("--crop", a->train.crop, "Square random crops of this size (0: whole images)")->capture_default_str();
  cmd->add_option("--lr", a->train.adam.lr, "AdamW learning rate")->capture_default_str();
  cmd->add_option("--weight-decay", a->train.adam.weight_decay, "AdamW weight decay")->capture_default_str();
  cmd->add_flag("--bf16", a->train.bf16, "Mixed precision: bfloat16 matmuls and convolutions (autocast)");
  cmd->add_option("--seed", a->train.seed, "Training seed")->capture_default_str();
  cmd->add_option("--save-every", a->save_every, "Checkpoint every N steps")->capture_default_str();
  cmd->add_option("--log-every", a->log_every, "Print the mean loss every N steps")->capture_default_str();
  return [a, &common]() {
    const SegmenterConfig config = SegmenterConfig::from_file(a->model);
    const ImageSize size = parse_size(a->size);
    const int W = size.width, H = size.height;
    const torch::Device device = parse_device(common.device);
    fs::create_directories(a->out);
    SegmenterTrainer trainer(config, a->train, load_labelled_images(a->data, W, H, config.num_classes), device);
    const std::string checkpoint = (fs::path(a->out) / "checkpoint.safetensors").string();
    if (fs::exists(checkpoint)) {
      trainer.resume(checkpoint);
      fmt::print(stderr, "resumed {} at step {}\n", checkpoint, trainer.step());
    }
    ProgressBar bar("training", a->train.steps, trainer.step());
    double sum = 0;
    int count = 0;
    while (trainer.step() < a->train.steps) {
      const double loss = trainer.train_step();
      sum += loss;
      ++count;
      bar.update(trainer.step(), fmt::format("loss {:.4f}", loss));
      if (a->log_every > 0 && trainer.step() % a->log_every == 0) {
        fmt::print(stderr, "\nstep {} mean loss {:.5f}\n", trainer.step(), sum / count);
        sum = 0;
        count = 0;
      }
      if (a->save_every > 0 && trainer.step() % a->save_every == 0) trainer.save_checkpoint(checkpoint);
    }
    bar.finish();
    trainer.save_checkpoint(checkpoint);
    const std::string weights = (fs::path(a->out) / "segmenter.safetensors").string();
    trainer.export_weights(weights);
    write_file_atomic((fs::path(a->out) / "segmenter.json").string(), config.to_json().dump(2) + "\n");
    fmt::print("trained to step {}; weights in {}\n", trainer.step(), weights);
    if (!a->validation.empty()) {
      const LabelledImages held_out = load_labelled_images(a->validation, W, H, config.num_classes);
      fmt::print("held-out pixel accuracy: {:.4f} ({} images of {})\n",
                 evaluate_segmenter(trainer.model(), held_out, device), held_out.images.size(0), a->validation);
    }
    return 0;
  };
}

}  // namespace iidm::cli

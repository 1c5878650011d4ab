// `iidm distill`: progressive distillation rounds; each writes a student checkpoint that every
// pipeline command loads (sample it on the chain it names, with guidance 1).
#include <filesystem>

#include "autoencoder/autoencoder.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/state_dict.h"
#include "train/distill.h"

namespace iidm::cli {
namespace fs = std::filesystem;

std::function<int()> add_distill_command(CLI::App& app, const CommonOptions&) {
  auto* cmd = app.add_subcommand("distill",
                                 "Progressive distillation: halve the sampling steps per round "
                                 "(two guided teacher DDIM steps -> one student step)");
  struct Args {
    std::string model, teacher, cache, out;
    int rounds = 1, save_every = 100;
    std::string clip_denoised = "auto";
    DistillConfig config;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--model", a->model, "Model config")->required()->check(CLI::ExistingFile);
  cmd->add_option("--teacher", a->teacher, "Teacher U-Net weights")->required()->check(CLI::ExistingFile);
  cmd->add_option("--cache", a->cache, "Training cache written by train-unet (x0 + labels)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", a->out, "Output folder (student-ddimK.safetensors per round)")->required();
  cmd->add_option("--teacher-steps", a->config.teacher_steps,
                  "The first teacher's chain, ddimN (N even; 40 -> 20 -> 10 -> 5)")
      ->capture_default_str();
  cmd->add_option("--rounds", a->rounds, "Rounds (each halves the steps)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--guidance", a->config.guidance, "Teacher guidance scale, distilled into the student")
      ->capture_default_str();
  cmd->add_option("--clip-denoised", a->clip_denoised,
                  "Clip the teacher's x0 predictions to [-1, 1] as the sampler will (auto: pixel models only); "
                  "sample the students the same way")
      ->check(CLI::IsMember({"auto", "true", "false"}))
      ->capture_default_str();
  cmd->add_option("--iterations", a->config.iterations, "Optimisation steps per round")->capture_default_str();
  cmd->add_option("--batch-size", a->config.batch_size, "Batch size")->capture_default_str();
  cmd->add_option("--lr", a->config.adam.lr, "AdamW learning rate")->capture_default_str();
  cmd->add_option("--seed", a->config.seed, "Seed")->capture_default_str();
  cmd->add_option("--save-every", a->save_every,
                  "Checkpoint every N iterations to OUT/checkpoint.safetensors (0: at the end of rounds only)")
      ->capture_default_str();
  return [a]() {
    a->config.clip_denoised = parse_clip_denoised(a->clip_denoised);
    ModelConfig config = ModelConfig::from_file(a->model);
    // Refuse a plan that fails in a later round before spending the earlier ones.
    Distiller::check_rounds(config.diffusion, a->config.teacher_steps, a->rounds);
    Distiller distiller(config, a->config, load_training_cache(a->cache), a->teacher);
    fs::create_directories(a->out);
    // A run that was stopped continues from its checkpoint: rounds already done are not redone, and
    // a round in progress goes on from its last saved iteration as if it had never stopped.
    const std::string checkpoint = (fs::path(a->out) / "checkpoint.safetensors").string();
    if (fs::exists(checkpoint)) {
      distiller.resume(checkpoint);
      fmt::print(stderr, "resumed {}: {} round(s) done{}\n", checkpoint, distiller.rounds_done(),
                 distiller.in_round()
                     ? fmt::format(", round {} at iteration {}", distiller.rounds_done() + 1, distiller.iteration())
                     : "");
    }
    if (distiller.rounds_done() >= a->rounds)
      fmt::print("all {} round(s) already done (ddim{}); students in {}\n", a->rounds, distiller.teacher_steps(),
                 a->out);
    for (int round = distiller.rounds_done(); round < a->rounds; ++round) {
      const int from = distiller.teacher_steps();
      if (!distiller.in_round()) distiller.start_round();
      ProgressBar bar(fmt::format("round {} ({} -> {} steps)", round + 1, from, from / 2), a->config.iterations,
                      distiller.iteration());
      while (distiller.iteration() < a->config.iterations) {
        const double l = distiller.step();
        bar.update(distiller.iteration(), fmt::format("loss {:.4f}", l));
        if (a->save_every > 0 && distiller.iteration() % a->save_every == 0 &&
            distiller.iteration() < a->config.iterations)
          distiller.save_checkpoint(checkpoint);
      }
      bar.finish();
      const double loss = distiller.end_round();
      const std::string path =
          (fs::path(a->out) / fmt::format("student-ddim{}.safetensors", distiller.teacher_steps())).string();
      distiller.export_teacher(path);
      distiller.save_checkpoint(checkpoint);  // after the student, so a kill in between only re-exports it
      fmt::print("round {}: {} -> {} steps, final loss {:.3g}; wrote {} (sample with --steps ddim{} --guidance 1)\n",
                 round + 1, from, distiller.teacher_steps(), loss, path, distiller.teacher_steps());
    }
    return 0;
  };
}

}  // namespace iidm::cli

#pragma once
// Progressive distillation (Salimans & Ho 2022) for few-step, interactive generation: a student
// initialised from the teacher learns to do in ONE DDIM step what the teacher's sampler does in TWO
// (with classifier-free guidance folded in); each round halves the step count and the student
// becomes the next round's teacher. Students are ordinary U-Net checkpoints, sampled with guidance 1
// on the chain they were distilled for (`ddimK`), with the same x0 clipping as the teacher.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "diffusion/gaussian_diffusion.h"
#include "diffusion/sampler.h"
#include "pipeline/model_config.h"
#include "train/optim.h"
#include "train/unet_trainer.h"

namespace iidm {

struct DistillConfig {
  int teacher_steps = 40;  // the first round's teacher chain (ddimN); the student gets N/2 (T=1000: 40, 20, 10, 5)
  double guidance = 1.0;   // the teacher's guidance scale, distilled into the student
  // Whether the teacher's DDIM steps clamp x0 predictions to [-1, 1] as the sampler will (kAuto:
  // pixel models clip, latent models do not, as the pipeline resolves it).
  ClipDenoised clip_denoised = ClipDenoised::kAuto;
  int batch_size = 8;
  int iterations = 500;  // optimisation steps per round
  AdamWOptions adam{};
  double ema_decay = 0.999;
  double grad_clip = 1.0;
  uint64_t seed = 0;
  void validate() const;
};

class Distiller {
 public:
  Distiller(ModelConfig model_config, DistillConfig config, TrainingData data, const std::string& teacher_weights);
  // Distils the current teacher (N steps) into a student (N/2 steps): config.iterations steps.
  // Returns the mean loss of the round's last tenth. Afterwards the student (its EMA) is the
  // teacher and teacher_steps() has halved. The same as start_round, step until iteration() reaches
  // config.iterations, end_round.
  double run_round(const std::function<void(int done, int total, double loss)>& progress = {});
  // A round step by step, so that a command can checkpoint inside it. start_round makes the
  // student (a copy of the teacher), its AdamW and its EMA; step() is one optimisation step and
  // returns its loss; end_round is run_round's ending. Iteration i of a round draws its batch from
  // (seed, teacher steps, i), so a resumed round continues exactly.
  void start_round();
  double step();
  double end_round();
  bool in_round() const { return static_cast<bool>(student_); }
  int iteration() const { return iteration_; }
  int teacher_steps() const { return teacher_steps_; }
  // How many rounds are done: log2(config.teacher_steps / teacher_steps()).
  int rounds_done() const;
  // Everything needed to continue exactly, between rounds or inside one: the teacher, the guidance
  // still to distil, and inside a round the student, AdamW, EMA and iteration. Written atomically.
  void save_checkpoint(const std::string& path) const;
  // Refuses a checkpoint of another seed, first teacher chain or U-Net.
  void resume(const std::string& path);
  // The current teacher's weights (after a round: the latest student, EMA).
  void export_teacher(const std::string& path) const;
  UNetModel& teacher() { return teacher_; }
  // Throws unless `rounds` rounds can start from a ddim`teacher_steps` teacher: every teacher chain
  // even, and each student chain every other step of its teacher's.
  static void check_rounds(const DiffusionConfig& diffusion, int teacher_steps, int rounds);

  // Where the teacher's DDIM sampler takes z [B, C, H, W] (labels y) that sits at student indices
  // `index` [B] (of the teacher_steps() / 2 chain) in the span of one student step: two teacher
  // steps (2i -> 2i-1 -> 2i-2); one at i = 0 (to x0); three from the top, which the sampler starts
  // from pure noise (see teacher_target in distill.cpp).
  torch::Tensor teacher_target(const torch::Tensor& z, const torch::Tensor& y, const torch::Tensor& index);
  // The loss on a batch (x0 noised with `noise` at student indices `index`; pure noise at the top):
  // the squared distance between the student's one DDIM step and teacher_target, averaged.
  torch::Tensor loss(UNetModel& student, const torch::Tensor& x0, const torch::Tensor& y, const torch::Tensor& index,
                     const torch::Tensor& noise);

 private:
  // Makes the respaced chains for halving teacher_steps_ (throws when it cannot be halved).
  void prepare_round();
  // Drops the round in progress (student, AdamW, EMA): between rounds again.
  void clear_round();

  ModelConfig model_config_;
  DistillConfig config_;
  TrainingData data_;
  UNetModel teacher_{nullptr};
  int teacher_steps_ = 0;
  bool clip_ = false;
  // The current round's respaced chains: the teacher's (ddimN) and the student's (ddimN/2).
  std::unique_ptr<GaussianDiffusion> teacher_chain_, student_chain_;
  // The round in progress (null between rounds).
  UNetModel student_{nullptr};
  std::vector<torch::Tensor> params_;
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<Ema> ema_;
  int iteration_ = 0;
  double tail_sum_ = 0;  // the losses of the round's last tenth
  int tail_count_ = 0;
};

}  // namespace iidm

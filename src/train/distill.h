#pragma once
// Progressive distillation (Salimans & Ho 2022) for few-step, interactive generation: a student
// initialised from the teacher learns to do in ONE DDIM step what the teacher does in TWO (with
// classifier-free guidance folded in); each round halves the step count and the student becomes
// the next round's teacher. Students are ordinary U-Net checkpoints, sampled with guidance 1 on
// the chain they were distilled for (`ddimK`).
#include <torch/torch.h>

#include <memory>
#include <string>

#include "pipeline/model_config.h"
#include "train/optim.h"
#include "train/unet_trainer.h"

namespace iidm {

struct DistillConfig {
  int teacher_steps = 40;     // the first round's teacher chain (ddimN); the student gets N/2 (T=1000: 40, 20, 10, 5)
  double guidance = 1.0;      // the teacher's guidance scale, distilled into the student
  int batch_size = 8;
  int iterations = 500;       // optimisation steps per round
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
  // teacher and teacher_steps() has halved.
  double run_round(const std::function<void(int done, int total, double loss)>& progress = {});
  int teacher_steps() const { return teacher_steps_; }
  // The current teacher's weights (after a round: the latest student, EMA).
  void export_teacher(const std::string& path) const;
  UNetModel& teacher() { return teacher_; }

  // One distillation loss on a batch: the student's epsilon error against the epsilon that gives
  // the two-step teacher target in one step (the SNR-weighted x0 error), averaged.
  torch::Tensor loss(UNetModel& student, const torch::Tensor& x0, const torch::Tensor& y, const torch::Tensor& index,
                     const torch::Tensor& noise);

 private:
  ModelConfig model_config_;
  DistillConfig config_;
  TrainingData data_;
  UNetModel teacher_{nullptr};
  int teacher_steps_;
  int64_t total_steps_ = 0;
};

}  // namespace iidm

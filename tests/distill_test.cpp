// Progressive distillation on a tiny model: the target is where the teacher's own sampler goes, and
// after one round the student's N/2-step samples are closer to the teacher's N-step samples than
// the teacher's own N/2-step samples are, from the same noise and labels.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <map>

#include "data/landscape.h"
#include "diffusion/sampler.h"
#include "tiny_models.h"
#include "train/distill.h"

namespace iidm {
namespace {

TrainingData landscapes(int count, int W, int H) {
  std::vector<torch::Tensor> xs, labels;
  for (int i = 0; i < count; ++i) {
    Landscape l = generate_landscape(2000 + i, W, H);
    xs.push_back(
        torch::from_blob(l.image.data, {H, W, 3}, torch::kUInt8).permute({2, 0, 1}).to(torch::kFloat32) / 127.5 - 1);
    labels.push_back(torch::from_blob(l.labels.data, {H, W}, torch::kUInt8).clone());
  }
  return {torch::stack(xs), torch::stack(labels)};
}

// One intra-op thread for the test's duration: tensors this small gain little from more, and on a
// busy machine the threads' spinning costs many times the work.
class OneThread {
 public:
  OneThread() : saved_(torch::get_num_threads()) { torch::set_num_threads(1); }
  ~OneThread() { torch::set_num_threads(saved_); }

 private:
  int saved_;
};

// Deterministic DDIM on ddim`steps` from pure noise, as the pipeline samples a pixel model
// (guidance 1, x0 clipped). `states`, when given, receives the state each step lands on, by the
// index it lands on (-1: the sample).
torch::Tensor sample(UNetModel& model, const ModelConfig& config, int steps, const torch::Tensor& xT,
                     const torch::Tensor& y, std::map<int, torch::Tensor>* states = nullptr) {
  DiffusionConfig dc = config.diffusion;
  dc.timestep_respacing = "ddim" + std::to_string(steps);
  const GaussianDiffusion d(dc);
  model->eval();
  ModelFn fn = [&](const torch::Tensor& x, const torch::Tensor& t) { return model->forward(x, t, y); };
  SampleOptions o;
  o.clip_denoised = true;
  if (states) o.after_step = [&](const torch::Tensor& x, int i) { return (*states)[i - 1] = x; };
  return make_sampler("ddim")->sample(d, fn, xT, o);
}

TEST(Distillation, TargetIsWhereTheTeachersSamplerGoes) {
  OneThread one_thread;
  test::TempDir dir;
  const auto files = test::write_tiny_model(dir, false);
  const ModelConfig config = ModelConfig::from_file(files.config);
  const TrainingData data = landscapes(2, 8, 8);
  DistillConfig dc;
  dc.teacher_steps = 10;
  Distiller distiller(config, dc, data, files.unet);
  UNetModel teacher(config.unet);
  load_state_dict(*teacher, files.unet);
  torch::NoGradGuard no_grad;
  torch::manual_seed(1);
  const torch::Tensor xT = torch::randn({2, 3, 8, 8});
  const torch::Tensor y = one_hot_labels(data.labels.to(torch::kInt64), 29);
  std::map<int, torch::Tensor> at;  // the teacher's states by ddim10 index
  at[9] = xT;
  const torch::Tensor x0 = sample(teacher, config, 10, xT, y, &at);
  // Student step i of ddim5 starts where the teacher is at index 2i (the top: from the pure noise
  // the teacher starts from at 9) and ends where the teacher is at 2i - 2 (i = 0: the sample).
  for (int i = 0; i < 5; ++i) {
    const torch::Tensor from = i == 4 ? xT : at[2 * i], to = i == 0 ? x0 : at[2 * i - 2];
    const torch::Tensor index = torch::full({2}, i, torch::kInt64);
    EXPECT_TRUE(torch::allclose(distiller.teacher_target(from, y, index), to, 1e-4, 1e-5)) << "student step " << i;
  }
  // A batch mixing positions (three teacher steps for one sample, two for the other).
  const torch::Tensor mixed =
      distiller.teacher_target(torch::stack({xT[0], at[2][1]}), y, torch::tensor({4, 1}, torch::kInt64));
  EXPECT_TRUE(torch::allclose(mixed, torch::stack({at[6][0], at[0][1]}), 1e-4, 1e-5));

  DistillConfig odd = dc;
  odd.teacher_steps = 7;
  test::expect_error([&] { odd.validate(); }, {"even"});
  // T = 1000: ddim14 has stride 72, ddim7 stride 143.
  test::expect_error([&] { Distiller::check_rounds(config.diffusion, 14, 1); }, {"ddim7", "every other step"});
  test::expect_error([&] { Distiller::check_rounds(config.diffusion, 40, 4); }, {"round 4", "ddim5"});
  Distiller::check_rounds(config.diffusion, 40, 3);
}

TEST(Distillation, StudentWithHalfTheStepsStaysCloseToItsTeacher) {
  OneThread one_thread;
  const auto start = std::chrono::steady_clock::now();
  test::TempDir dir;
  // The tests' tiny U-Net cut to one level without attention: on CPU a U-Net this small costs per
  // operation more than per pixel, and this halves the test's time; distillation does not care.
  ModelConfig config;
  config.unet = test::tiny_unet_config(29);
  config.unet.channel_mult = {1};
  config.unet.attention_resolutions = {};
  config.unet.resblock_updown = false;
  config.validate();  // the default diffusion: T = 1000, linear, learned sigma, as the tiny pixel model
  const TrainingData data = landscapes(8, 8, 8);
  // A teacher with some structure: a briefly trained tiny model. Its samples are still far from the
  // data, but the student is asked to follow the teacher, not the data.
  UNetTrainConfig tc;
  tc.batch_size = 8;
  tc.adam.lr = 5e-3;
  tc.seed = 3;
  UNetTrainer trainer(config, tc, data);
  for (int i = 0; i < 60; ++i) trainer.train_step();
  trainer.export_weights(dir.file("teacher.safetensors"), false);

  DistillConfig dc;
  dc.teacher_steps = 10;
  dc.iterations = 60;
  dc.batch_size = 4;
  dc.adam.lr = 1e-4;  // 2e-4 and up did worse: at high noise a small epsilon change is a large x0 change
  dc.ema_decay = 0.9;
  dc.seed = 4;
  Distiller distiller(config, dc, data, dir.file("teacher.safetensors"));
  distiller.run_round();
  EXPECT_EQ(distiller.teacher_steps(), 5);
  distiller.export_teacher(dir.file("student.safetensors"));
  UNetModel teacher(config.unet), student(config.unet);
  load_state_dict(*teacher, dir.file("teacher.safetensors"));
  load_state_dict(*student, dir.file("student.safetensors"));

  torch::NoGradGuard no_grad;
  torch::manual_seed(9);
  const int n = 32;
  const torch::Tensor xT = torch::randn({n, 3, 8, 8});
  const torch::Tensor y = one_hot_labels(data.labels.repeat({n / 8, 1, 1}).to(torch::kInt64), 29);
  const torch::Tensor reference = sample(teacher, config, 10, xT, y);
  const double naive = (sample(teacher, config, 5, xT, y) - reference).abs().mean().item<double>();
  const double distilled = (sample(student, config, 5, xT, y) - reference).abs().mean().item<double>();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("mean |x - teacher ddim10|: student ddim5 %.5f, teacher ddim5 %.5f (ratio %.3f); %.1f s\n", distilled,
              naive, distilled / naive, seconds);
  // Closer than the teacher's own half-step samples, and not by a hair.
  EXPECT_LT(distilled, 0.95 * naive) << "student " << distilled << " vs teacher at half the steps " << naive;
}

}  // namespace
}  // namespace iidm

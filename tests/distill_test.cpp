// Progressive distillation on a tiny model: the target is where the teacher's own sampler goes, and
// after one round the student's N/2-step samples are closer to the teacher's N-step samples than
// the teacher's own N/2-step samples are, from the same noise and labels.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>

#include "core/fs.h"
#include "core/image.h"
#include "core/labels.h"
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
    xs.push_back(from_rgb8(l.image));
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

std::vector<torch::Tensor> teacher_parameters(Distiller& d) {
  std::vector<torch::Tensor> out;
  for (const auto& p : d.teacher()->parameters()) out.push_back(p.detach().clone());
  return out;
}

// A distillation stopped inside a round, or between rounds, and continued from its checkpoint by a
// new Distiller ends with the same teacher, bit for bit, as one that ran without stopping.
TEST(Distillation, ResumedRunsEqualAnUninterruptedOne) {
  OneThread one_thread;
  test::TempDir dir;
  const auto files = test::write_tiny_model(dir, false);
  const ModelConfig config = ModelConfig::from_file(files.config);
  const TrainingData data = landscapes(4, 8, 8);
  DistillConfig dc;
  dc.teacher_steps = 20;  // two rounds: 20 -> 10 -> 5
  dc.iterations = 4;
  dc.batch_size = 2;
  dc.guidance = 2.0;  // distilled in round 1, 1 afterwards: the checkpoint must carry which
  dc.seed = 5;

  Distiller straight(config, dc, data, files.unet);
  const double tail1 = straight.run_round();
  const double tail2 = straight.run_round();
  EXPECT_EQ(straight.rounds_done(), 2);
  const auto expected = teacher_parameters(straight);

  // Stopped after 3 of round 1's 4 iterations...
  const std::string mid = dir.file("mid.safetensors"), between = dir.file("between.safetensors");
  {
    Distiller first(config, dc, data, files.unet);
    first.start_round();
    for (int i = 0; i < 3; ++i) first.step();
    first.save_checkpoint(mid);
  }
  // ...continued by a new Distiller, as a restarted process would, then stopped between rounds...
  {
    Distiller second(config, dc, data, files.unet);
    second.resume(mid);
    EXPECT_TRUE(second.in_round());
    EXPECT_EQ(second.iteration(), 3);
    EXPECT_EQ(second.rounds_done(), 0);
    second.step();
    EXPECT_DOUBLE_EQ(second.end_round(), tail1) << "the round's tail loss survives the resume";
    second.save_checkpoint(between);
  }
  // ...and finished by a third.
  Distiller third(config, dc, data, files.unet);
  third.resume(between);
  EXPECT_FALSE(third.in_round());
  EXPECT_EQ(third.rounds_done(), 1);
  EXPECT_EQ(third.teacher_steps(), 10);
  EXPECT_DOUBLE_EQ(third.run_round(), tail2);
  const auto got = teacher_parameters(third);
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(torch::equal(got[i], expected[i])) << "parameter " << i;

  // Checkpoints of another run are refused, naming the file and the reason.
  DistillConfig other_seed = dc;
  other_seed.seed = 6;
  Distiller a(config, other_seed, data, files.unet);
  test::expect_error([&] { a.resume(mid); }, {mid, "seed"});
  DistillConfig other_chain = dc;
  other_chain.teacher_steps = 10;
  Distiller b(config, other_chain, data, files.unet);
  test::expect_error([&] { b.resume(mid); }, {mid, "ddim20"});
  const std::string bytes = read_file(mid);
  std::ofstream(dir.file("truncated.safetensors"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  Distiller c(config, dc, data, files.unet);
  test::expect_error([&] { c.resume(dir.file("truncated.safetensors")); }, {dir.file("truncated.safetensors")});
}

}  // namespace
}  // namespace iidm

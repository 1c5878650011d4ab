// Training on generated landscapes with a tiny U-Net: the loss falls, a resumed run equals an
// uninterrupted one, two processes on loopback equal one process with the same global batch, and
// a damaged checkpoint is refused.
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/fs.h"
#include "core/image.h"
#include "core/safetensors.h"
#include "data/landscape.h"
#include "tiny_models.h"
#include "train/unet_trainer.h"

namespace iidm {
namespace {
namespace fs = std::filesystem;

TrainingData landscapes(int count, int W = 32, int H = 24) {
  std::vector<torch::Tensor> xs, labels;
  for (int i = 0; i < count; ++i) {
    Landscape l = generate_landscape(1000 + i, W, H);
    xs.push_back(from_rgb8(l.image));
    labels.push_back(torch::from_blob(l.labels.data, {H, W}, torch::kUInt8).clone());
  }
  return {torch::stack(xs), torch::stack(labels)};
}

UNetTrainConfig small_config() {
  UNetTrainConfig c;
  c.batch_size = 4;
  c.adam.lr = 1e-3;
  c.ema_decay = 0.99;
  c.label_drop = 0.2;
  c.sparse_prob = 0.3;
  c.seed = 11;
  return c;
}

std::vector<torch::Tensor> parameters_of(UNetTrainer& t) {
  std::vector<torch::Tensor> out;
  for (auto& p : t.model()->parameters()) out.push_back(p.detach().clone());
  return out;
}

TEST(Training, LossFallsOnGeneratedLandscapes) {
  test::TempDir dir;
  const auto model = test::write_tiny_model(dir, false);
  UNetTrainer trainer(ModelConfig::from_file(model.config), small_config(), landscapes(16));
  std::vector<double> losses;
  for (int i = 0; i < 40; ++i) losses.push_back(trainer.train_step().loss);
  const double first = (losses[0] + losses[1] + losses[2] + losses[3] + losses[4]) / 5;
  const double last = (losses[35] + losses[36] + losses[37] + losses[38] + losses[39]) / 5;
  EXPECT_LT(last, 0.7 * first) << "first " << first << " last " << last;
}

TEST(Training, Bf16OnCropsLossFalls) {
  test::TempDir dir;
  const auto model = test::write_tiny_model(dir, false);
  UNetTrainConfig c = small_config();
  c.bf16 = true;
  c.crop = 16;
  UNetTrainer trainer(ModelConfig::from_file(model.config), c, landscapes(16));
  std::vector<double> losses;
  for (int i = 0; i < 40; ++i) losses.push_back(trainer.train_step().loss);
  const double first = (losses[0] + losses[1] + losses[2] + losses[3] + losses[4]) / 5;
  const double last = (losses[35] + losses[36] + losses[37] + losses[38] + losses[39]) / 5;
  EXPECT_LT(last, 0.7 * first) << "first " << first << " last " << last;
  for (const auto& p : trainer.model()->parameters()) ASSERT_EQ(p.scalar_type(), torch::kFloat32);
  c.crop = 25;
  test::expect_error([&] { UNetTrainer(ModelConfig::from_file(model.config), c, landscapes(2)); }, {"crop 25"});
}

TEST(Training, ResumedRunEqualsUninterruptedRun) {
  test::TempDir dir;
  const auto model = test::write_tiny_model(dir, false);
  const ModelConfig config = ModelConfig::from_file(model.config);
  const TrainingData data = landscapes(8);
  UNetTrainer straight(config, small_config(), data);
  for (int i = 0; i < 6; ++i) straight.train_step();

  {
    UNetTrainer first_half(config, small_config(), data);
    for (int i = 0; i < 3; ++i) first_half.train_step();
    first_half.save_checkpoint(dir.file("ckpt.safetensors"));
  }
  UNetTrainer resumed(config, small_config(), data);
  resumed.resume(dir.file("ckpt.safetensors"));
  EXPECT_EQ(resumed.step(), 3);
  for (int i = 0; i < 3; ++i) resumed.train_step();
  auto a = parameters_of(straight), b = parameters_of(resumed);
  for (size_t i = 0; i < a.size(); ++i) ASSERT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
  // The exported EMA weights agree too.
  straight.export_weights(dir.file("a.safetensors"));
  resumed.export_weights(dir.file("b.safetensors"));
  EXPECT_EQ(read_file(dir.file("a.safetensors")), read_file(dir.file("b.safetensors")));
}

TEST(Training, DamagedOrForeignCheckpointsAreRefused) {
  test::TempDir dir;
  const auto model = test::write_tiny_model(dir, false);
  const ModelConfig config = ModelConfig::from_file(model.config);
  UNetTrainer trainer(config, small_config(), landscapes(4));
  trainer.train_step();
  trainer.save_checkpoint(dir.file("ckpt.safetensors"));
  const std::string bytes = read_file(dir.file("ckpt.safetensors"));
  std::ofstream(dir.file("truncated.safetensors"), std::ios::binary) << bytes.substr(0, bytes.size() - 100);
  UNetTrainer other(config, small_config(), landscapes(4));
  test::expect_error([&] { other.resume(dir.file("truncated.safetensors")); },
                     {dir.file("truncated.safetensors"), "truncated"});
  // A plain weights file is not a training checkpoint.
  test::expect_error([&] { other.resume(model.unet); }, {model.unet, "not a training checkpoint"});
  UNetTrainConfig different = small_config();
  different.seed = 12;
  UNetTrainer reseeded(config, different, landscapes(4));
  test::expect_error([&] { reseeded.resume(dir.file("ckpt.safetensors")); }, {"seed 11", "seed 12"});
}

int run(std::vector<std::string> args, std::vector<std::string> env = {}) {
  const pid_t pid = fork();
  if (pid == 0) {
    for (auto& e : env) putenv(e.data());
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(Training, TwoProcessesOnLoopbackEqualOneProcess) {
  test::TempDir dir;
  const auto model = test::write_tiny_model(dir, false);
  const TrainingData data = landscapes(8);
  save_safetensors(dir.file("cache.safetensors"), {{"x0", data.x0}, {"labels", data.labels}});
  auto args = [&](const std::string& out) {
    return std::vector<std::string>{IIDM_CLI, "--threads", "1", "train-unet", "--model", model.config, "--cache",
                                    dir.file("cache.safetensors"), "--out", out, "--steps", "4", "--batch-size", "4",
                                    "--lr", "1e-3", "--seed", "5", "--log-every", "0",
                                    // Adam divides each gradient by its own magnitude, so parameters whose true
                                    // gradient is ~0 (conv biases before a GroupNorm) move by +-lr on rounding
                                    // noise alone. A large epsilon makes the update proportional to the
                                    // gradient, so the comparison measures the all-reduce, not that noise.
                                    "--adam-eps", "1"};
  };
  ASSERT_EQ(run(args(dir.file("one"))), 0);
  const std::string port = std::to_string(29600 + getpid() % 1000);
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank) {
    const pid_t pid = fork();
    if (pid == 0) {
      std::vector<std::string> env{"MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + port, "RANK=" + std::to_string(rank),
                                   "WORLD_SIZE=2"};
      for (auto& e : env) putenv(e.data());
      auto a = args(dir.file("two"));
      std::vector<char*> argv;
      for (auto& s : a) argv.push_back(s.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "a training process failed";
  }
  auto one = SafeTensorsFile::open(dir.file("one/unet.safetensors"));
  auto two = SafeTensorsFile::open(dir.file("two/unet.safetensors"));
  ASSERT_EQ(one.names(), two.names());
  double worst = 0;
  for (const auto& name : one.names())
    worst = std::max(worst, (one.tensor(name) - two.tensor(name)).abs().max().item<double>());
  EXPECT_LT(worst, 1e-6) << "largest parameter difference";
}

}  // namespace
}  // namespace iidm

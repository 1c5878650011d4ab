// `iidm batch` as users run it, in real processes: bad items are reported while the rest is
// produced; two shards reproduce the single run byte for byte; a run killed midway and resumed
// yields the full set with no broken file.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <set>
#include <thread>

#include "core/fs.h"
#include "tiny_models.h"

namespace iidm {
namespace {
namespace fs = std::filesystem;

struct Dataset {
  std::string labels, refs;
  std::set<std::string> good, bad;
};

Dataset make_dataset(const test::TempDir& dir) {
  Dataset d{dir.file("labels"), dir.file("imgs"), {}, {}};
  fs::create_directories(d.labels);
  fs::create_directories(d.refs);
  cv::RNG rng(3);
  Json mapping = Json::object();
  for (int i = 0; i < 9; ++i) {
    const std::string stem = fmt::format("scene{:02}", i);
    cv::Mat label(24, 32, CV_8UC1, cv::Scalar(1));
    label.rowRange(0, 6 + i).setTo(5);
    cv::Mat ref(24, 32, CV_8UC3);
    rng.fill(ref, cv::RNG::UNIFORM, 0, 255);
    cv::imwrite(d.refs + "/" + stem + "_ref.jpg", ref);
    mapping[stem + ".png"] = stem + "_ref.jpg";
    std::string bad;
    if (i == 2) {
      mapping[stem + ".png"] = "missing.jpg";
      bad = "missing reference";
    }
    if (i == 4) {
      label.at<uint8_t>(3, 3) = 77;
      bad = "out of range";
    }
    if (i == 6) {
      cv::resize(label, label, cv::Size(16, 12), 0, 0, cv::INTER_NEAREST);
      bad = "wrong size";
    }
    if (i == 7) {
      std::ofstream(d.labels + "/" + stem + ".png") << "this is not a png";
      d.bad.insert(stem);
      continue;
    }
    cv::imwrite(d.labels + "/" + stem + ".png", label);
    (bad.empty() ? d.good : d.bad).insert(stem);
  }
  mapping["ghost.png"] = "scene00_ref.jpg";  // names a label that does not exist
  d.bad.insert("ghost");
  std::ofstream(d.labels + "/label_to_img.json") << mapping.dump(1);
  return d;
}

std::vector<std::string> batch_args(const test::TinyModel& m, const Dataset& d, const std::string& out) {
  return {IIDM_CLI,       "--threads", "1",        "batch",  "--model", m.config, "--unet", m.unet,   "--autoencoder",
          m.autoencoder,  "--labels",  d.labels,   "--refs", d.refs,    "--out",  out,      "--size", "32x24",
          "--batch-size", "2",         "--preset", "fast",   "--seed",  "7"};
}

pid_t spawn(std::vector<std::string> args, const std::vector<std::string>& env = {}) {
  const pid_t pid = fork();
  if (pid == 0) {
    for (const auto& e : env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

int run(std::vector<std::string> args, const std::vector<std::string>& env = {}) {
  int status = 0;
  waitpid(spawn(std::move(args), env), &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::set<std::string> images_in(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".jpg") out.insert(e.path().stem().string());
  return out;
}

std::set<std::string> failed_in(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().rfind("failures", 0) != 0) continue;
    std::ifstream in(e.path());
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line))
      EXPECT_TRUE(names.insert(line.substr(0, line.find('\t'))).second) << "reported twice: " << line;
  }
  return names;
}

TEST(BatchCli, ReportsBadItemsShardsExactlyAndResumesAfterAKill) {
  test::TempDir dir;
  const test::TinyModel model = test::write_tiny_model(dir, true);
  const Dataset data = make_dataset(dir);

  // 1. One run: every good item produced, every bad item reported with its reason, exit 1.
  const std::string full = dir.file("full");
  EXPECT_EQ(run(batch_args(model, data, full)), 1);
  EXPECT_EQ(images_in(full), data.good);
  EXPECT_EQ(failed_in(full), data.bad);
  const std::string failures = read_file(full + "/failures.tsv");
  for (const char* reason : {"missing.jpg, which does not exist", "label value 77", "is 16x12, expected 32x24",
                             "cannot decode", "ghost.png, which is not in"})
    EXPECT_NE(failures.find(reason), std::string::npos) << reason << " not in\n" << failures;
  const Json summary = Json::parse(read_file(full + "/summary.json"));
  EXPECT_EQ(summary["produced"].get<int>(), static_cast<int>(data.good.size()));
  EXPECT_EQ(summary["unet_forwards_per_image"].get<int>(), 40);

  // 2. Two shards (one by flag, one by torchrun-style variables) reproduce it byte for byte.
  const std::string sharded = dir.file("sharded");
  auto shard0 = batch_args(model, data, sharded);
  shard0.insert(shard0.end(), {"--shard", "0/2"});
  const pid_t a = spawn(shard0);
  const pid_t b = spawn(batch_args(model, data, sharded), {"RANK=1", "WORLD_SIZE=2"});
  int sa = 0, sb = 0;
  waitpid(a, &sa, 0);
  waitpid(b, &sb, 0);
  EXPECT_EQ(images_in(sharded), data.good);
  EXPECT_EQ(failed_in(sharded), data.bad);
  for (const auto& stem : data.good)
    EXPECT_EQ(read_file(full + "/" + stem + ".jpg"), read_file(sharded + "/" + stem + ".jpg")) << stem;

  // 3. Kill a run as soon as its first image lands, then resume.
  const std::string resumed = dir.file("resumed");
  const pid_t victim = spawn(batch_args(model, data, resumed));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline && (!fs::exists(resumed) || images_in(resumed).empty()))
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  kill(victim, SIGKILL);
  waitpid(victim, nullptr, 0);
  const auto partial = images_in(resumed);
  EXPECT_GE(partial.size(), 1u);
  EXPECT_LT(partial.size(), data.good.size()) << "the run finished before it could be killed";
  for (const auto& e : fs::directory_iterator(resumed)) {
    if (e.path().extension() != ".jpg") continue;
    EXPECT_FALSE(cv::imread(e.path().string()).empty()) << "broken file " << e.path();
  }
  EXPECT_EQ(run(batch_args(model, data, resumed)), 1);
  EXPECT_EQ(images_in(resumed), data.good);
  for (const auto& stem : data.good)
    EXPECT_EQ(read_file(full + "/" + stem + ".jpg"), read_file(resumed + "/" + stem + ".jpg")) << stem;
  for (const auto& e : fs::directory_iterator(resumed))
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << "leftover " << e.path();
  const Json resumed_summary = Json::parse(read_file(resumed + "/summary.json"));
  EXPECT_EQ(resumed_summary["already_done"].get<size_t>(), partial.size());
}

}  // namespace
}  // namespace iidm

// The library's generation runner, called directly (no child process): bad items are reported
// while the rest is produced, shards reproduce the single run byte for byte, a rerun skips what
// exists and regenerates what is missing, and a killed run's temporary files are cleaned.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <set>

#include "core/fs.h"
#include "pipeline/runner.h"
#include "tiny_models.h"

namespace iidm {
namespace {
namespace fs = std::filesystem;

struct Layout {
  std::string labels, refs, json;
};

// Seven scenes: 0, 1, 3 and 5 good; 2 a reference that is not an image (fails at generation);
// 4 a label out of range; 6 a wrong size. Plus a JSON entry for a label that does not exist.
Layout make_layout(const test::TempDir& dir) {
  Layout l{dir.file("labels"), dir.file("imgs"), dir.file("labels/label_to_img.json")};
  fs::create_directories(l.labels);
  fs::create_directories(l.refs);
  cv::RNG rng(5);
  Json mapping = Json::object();
  for (int i = 0; i < 7; ++i) {
    const std::string stem = fmt::format("scene{}", i);
    cv::Mat label(24, 32, CV_8UC1, cv::Scalar(2));
    label.rowRange(0, 5 + i).setTo(7);
    if (i == 4) label.at<uint8_t>(1, 1) = 40;
    if (i == 6) label = label.rowRange(0, 12).clone();
    cv::imwrite(l.labels + "/" + stem + ".png", label);
    cv::Mat ref(24, 32, CV_8UC3);
    rng.fill(ref, cv::RNG::UNIFORM, 0, 255);
    if (i == 2)
      std::ofstream(l.refs + "/" + stem + ".jpg") << "not a jpeg";
    else
      cv::imwrite(l.refs + "/" + stem + ".jpg", ref);
    mapping[stem + ".png"] = stem + ".jpg";
  }
  mapping["ghost.png"] = "scene0.jpg";
  std::ofstream(l.json) << mapping.dump(1);
  return l;
}

Pipeline load(const test::TinyModel& m) {
  ModelFiles files;
  files.config = m.config;
  files.unets = {m.unet};
  files.autoencoder = m.autoencoder;
  return Pipeline::load(files, {});
}

RunOptions options(const std::string& out, Shard shard = {}) {
  RunOptions o;
  o.out_dir = out;
  o.extension = "png";
  o.width = 32;
  o.height = 24;
  o.batch_size = 2;
  o.shard = shard;
  o.seed = 11;
  Stage s;
  s.respacing = "ddim4";
  s.strength = 0.75;
  s.guidance = 2.0;
  o.stages = {s};
  return o;
}

std::set<std::string> names(const std::vector<RunFailure>& failures) {
  std::set<std::string> out;
  for (const auto& f : failures) out.insert(f.name);
  return out;
}

TEST(GenerationRunner, ReportsBadItemsShardsExactlyAndResumes) {
  test::TempDir dir;
  const test::TinyModel model = test::write_tiny_model(dir, true);
  const Layout layout = make_layout(dir);
  const ItemListing listing = list_competition_items(layout.labels, layout.json, layout.refs);
  ASSERT_EQ(listing.items.size(), 7u);
  ASSERT_EQ(listing.orphans.size(), 1u);
  EXPECT_EQ(listing.orphans[0].name, "ghost");
  Pipeline pipeline = load(model);

  // One run over everything.
  const std::string single = dir.file("single");
  GenerationRunner runner(pipeline, options(single));
  int64_t images_seen = 0;
  RunCallbacks callbacks;
  callbacks.on_image = [&](int64_t made, int64_t to_make) {
    EXPECT_EQ(made, ++images_seen);
    EXPECT_EQ(to_make, 5);  // 0, 1, 2, 3, 5 pass validation; 2 fails when its reference is read
  };
  const RunSummary summary = runner.run(listing.items, listing.orphans, callbacks);
  EXPECT_EQ(summary.plan.items, 7u);
  EXPECT_EQ(summary.plan.invalid, 2u);
  EXPECT_EQ(summary.produced, 3);  // scene2 shares its batch with scene3: the batch fails as a whole
  EXPECT_FALSE(summary.ok());
  EXPECT_EQ(names(summary.failures), (std::set<std::string>{"scene2", "scene3", "scene4", "scene6", "ghost"}));
  for (const auto& f : summary.failures) {
    if (f.name == "scene4") EXPECT_NE(f.reason.find("label value 40 outside 0..28"), std::string::npos) << f.reason;
    if (f.name == "scene6") EXPECT_NE(f.reason.find("expected 32x24"), std::string::npos) << f.reason;
    if (f.name == "scene2") EXPECT_NE(f.reason.find("scene2.jpg"), std::string::npos) << f.reason;
  }
  for (const char* made : {"scene0", "scene1", "scene5"}) EXPECT_TRUE(fs::exists(runner.output_path(made))) << made;
  EXPECT_FALSE(fs::exists(runner.output_path("scene3")));
  const std::string tsv = read_file(summary.failures_path);
  EXPECT_NE(tsv.find("ghost\t"), std::string::npos);
  EXPECT_EQ(read_json_file(summary.summary_path).at("produced").get<int>(), 3);

  // Two shards into another folder: the same files, byte for byte, and each failure once.
  const std::string sharded = dir.file("sharded");
  std::vector<RunFailure> shard_failures;
  for (int i = 0; i < 2; ++i) {
    GenerationRunner shard_runner(pipeline, options(sharded, Shard{i, 2}));
    const RunSummary s = shard_runner.run(listing.items, listing.orphans);
    shard_failures.insert(shard_failures.end(), s.failures.begin(), s.failures.end());
    EXPECT_TRUE(fs::exists(s.summary_path));
    EXPECT_NE(s.summary_path.find(fmt::format("-{}-of-2", i)), std::string::npos);
  }
  EXPECT_EQ(shard_failures.size(), summary.failures.size());
  EXPECT_EQ(names(shard_failures), names(summary.failures));
  for (const char* made : {"scene0", "scene1", "scene5"})
    EXPECT_EQ(read_file(fs::path(single) / (std::string(made) + ".png")),
              read_file(fs::path(sharded) / (std::string(made) + ".png")))
        << made;

  // A rerun makes nothing; a deleted output is made again, identical; a killed run's temporary
  // file of this shard is removed.
  const std::string before = read_file(runner.output_path("scene5"));
  fs::remove(runner.output_path("scene5"));
  const std::string stale = runner.output_path("scene1") + ".tmp.12345";
  std::ofstream(stale) << "half";
  const RunSummary again = runner.run(listing.items, listing.orphans);
  EXPECT_EQ(again.plan.to_make, 3);  // scene5, and scene2 and scene3 whose batch failed
  EXPECT_EQ(again.plan.already_done, 2);
  EXPECT_EQ(again.produced, 1);
  EXPECT_EQ(read_file(runner.output_path("scene5")), before);
  EXPECT_FALSE(fs::exists(stale));
}

TEST(GenerationRunner, RefusesBadOptionsBeforeWork) {
  test::TempDir dir;
  const test::TinyModel model = test::write_tiny_model(dir, true);
  Pipeline pipeline = load(model);
  RunOptions o = options(dir.file("out"));
  o.width = 30;  // not a multiple of the model's 4
  EXPECT_THROW(GenerationRunner(pipeline, o), Error);
  o = options(dir.file("out"));
  o.extension = "gif";
  EXPECT_THROW(GenerationRunner(pipeline, o), Error);
  o = options(dir.file("out"));
  o.stages.clear();
  EXPECT_THROW(GenerationRunner(pipeline, o), Error);
  EXPECT_THROW(Shard::parse("2/2"), Error);
  EXPECT_THROW(Shard::parse("1/2x"), Error);
  EXPECT_THROW(Shard::parse("1"), Error);
  EXPECT_EQ(Shard::parse("1/3").count, 3);
  EXPECT_FALSE(fs::exists(dir.file("out")));  // nothing written for refused options
  // Two items of one name would write one file twice.
  GenerationRunner runner(pipeline, options(dir.file("out")));
  RunItem item{"same", dir.file("x.png"), "", ""};
  EXPECT_THROW(runner.run({item, item}), Error);
}

}  // namespace
}  // namespace iidm

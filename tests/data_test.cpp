// Data: the procedural landscapes (deterministic, exact labels, varied styles), the competition
// layout reader, and class-wise sparse masks that remove exactly the configured share per class.
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <set>

#include "data/crops.h"
#include "data/dataset.h"
#include "data/landscape.h"
#include "data/sparse.h"
#include "test_util.h"

namespace iidm {
namespace {

TEST(Landscape, DeterministicBySeedAndVaried) {
  Landscape a = generate_landscape(7, 128, 96), b = generate_landscape(7, 128, 96), c = generate_landscape(8, 128, 96);
  EXPECT_EQ(cv::norm(a.image, b.image, cv::NORM_INF), 0);
  EXPECT_EQ(cv::norm(a.labels, b.labels, cv::NORM_INF), 0);
  EXPECT_GT(cv::norm(a.image, c.image, cv::NORM_L1), 0);
  EXPECT_EQ(a.image.size(), cv::Size(128, 96));
  std::set<std::string> times, seasons;
  std::set<int> classes;
  for (uint64_t s = 0; s < 40; ++s) {
    Landscape l = generate_landscape(s, 64, 48);
    times.insert(l.style.time_of_day);
    seasons.insert(l.style.season);
    for (int y = 0; y < l.labels.rows; ++y)
      for (int x = 0; x < l.labels.cols; ++x) classes.insert(l.labels.at<uint8_t>(y, x));
  }
  EXPECT_GE(times.size(), 5u);
  EXPECT_EQ(seasons.size(), 4u);
  for (int required : {kSky, kMountain, kTree, kGrass, kRock})
    EXPECT_TRUE(classes.count(required)) << kLandscapeClasses[required];
  EXPECT_TRUE(classes.count(kSea) || classes.count(kLake) || classes.count(kRiver));
  for (int c : classes) EXPECT_LT(c, 29);
}

TEST(Landscape, SkyIsOnTopAndGroundAtTheBottom) {
  for (uint64_t s = 0; s < 10; ++s) {
    Landscape l = generate_landscape(s, 96, 72);
    EXPECT_EQ(l.labels.at<uint8_t>(0, 48), kSky) << s;
    EXPECT_NE(l.labels.at<uint8_t>(71, 48), kSky) << s;
  }
}

TEST(SparseMask, RemovesTheConfiguredSharePerClass) {
  torch::Tensor labels = torch::zeros({48, 64}, torch::kInt64);
  labels.narrow(0, 0, 20).fill_(1);
  labels.narrow(0, 20, 10).fill_(5);
  labels.narrow(1, 0, 7).fill_(12);
  auto gen = at::detail::createCPUGenerator(3);
  for (double share : {0.0, 0.3, 0.75, 1.0}) {
    SparseMaskOptions o;
    o.share = share;
    torch::Tensor masked = classwise_sparse_mask(labels, o, gen);
    for (int64_t c : {0, 1, 5, 12}) {
      const int64_t count = (labels == c).sum().item<int64_t>();
      const int64_t removed = ((labels == c) & (masked == 255)).sum().item<int64_t>();
      EXPECT_EQ(removed, std::llround(share * count)) << "class " << c << " share " << share;
      // Kept pixels keep their class.
      EXPECT_TRUE(torch::equal(masked.masked_select((labels == c) & (masked != 255)),
                               labels.masked_select((labels == c) & (masked != 255))));
    }
  }
  // Each class gets its own pattern: the removed sets of two equal-shaped classes differ.
  torch::Tensor halves = torch::zeros({32, 32}, torch::kInt64);
  halves.narrow(1, 16, 16).fill_(1);
  SparseMaskOptions o;
  o.share = 0.5;
  torch::Tensor m = classwise_sparse_mask(halves, o, gen);
  EXPECT_FALSE(torch::equal(m.narrow(1, 0, 16) == 255, m.narrow(1, 16, 16) == 255));
  test::expect_error(
      [&] {
        SparseMaskOptions bad;
        bad.share = 1.5;
        classwise_sparse_mask(halves, bad, gen);
      },
      {"share"});
}

TEST(Dataset, PairsByStemAndReportsUnmatchedFiles) {
  test::TempDir dir;
  std::filesystem::create_directories(dir.file("imgs"));
  std::filesystem::create_directories(dir.file("labels"));
  for (int i = 0; i < 3; ++i) {
    Landscape l = generate_landscape(i, 32, 24);
    cv::imwrite(dir.file("imgs/" + std::to_string(i) + ".jpg"), l.image);
    cv::imwrite(dir.file("labels/" + std::to_string(i) + ".png"), l.labels);
  }
  auto pairs = list_landscape_pairs(dir.path().string());
  ASSERT_EQ(pairs.size(), 3u);
  EXPECT_EQ(pairs[1].stem, "1");
  Sample s = load_sample(pairs[0], 32, 24, false, 29);
  Sample f = load_sample(pairs[0], 32, 24, true, 29);
  EXPECT_TRUE(torch::equal(s.labels.flip({1}), f.labels));
  EXPECT_EQ(s.image.sizes(), (std::vector<int64_t>{3, 24, 32}));
  test::expect_error([&] { load_sample(pairs[0], 32, 24, false, 3); }, {"label value", "outside 0..2"});
  std::ofstream(dir.file("labels/orphan.png")) << "x";
  test::expect_error([&] { list_landscape_pairs(dir.path().string()); }, {"1 unmatched", "orphan.png"});
  test::expect_error([&] { list_landscape_pairs(dir.file("nowhere")); }, {"competition layout"});
}

}  // namespace
}  // namespace iidm

// Crops of an image and of its label map come from the same window (and the same flip), so the
// pair stays aligned; a batch with neither crops nor flips consumes no random numbers.
TEST(RandomCrops, ImageAndLabelsStayAlignedAndFlipsMirror) {
  const int64_t N = 3, H = 10, W = 14;
  // Every pixel's value says where it is: image channel 0 = x, channel 1 = y + 100 * item; labels = x.
  torch::Tensor xs = torch::arange(W, torch::kFloat32).view({1, 1, 1, W}).expand({N, 1, H, W});
  torch::Tensor ys = torch::arange(H, torch::kFloat32).view({1, 1, H, 1}).expand({N, 1, H, W}) +
                     100 * torch::arange(N, torch::kFloat32).view({N, 1, 1, 1});
  torch::Tensor images = torch::cat({xs, ys}, 1).contiguous();
  torch::Tensor labels = torch::arange(W, torch::kInt64).view({1, 1, W}).expand({N, H, W}).contiguous();
  torch::Tensor index = torch::tensor({2, 0, 1, 2, 2, 0, 1, 1}, torch::kInt64);
  auto gen = at::detail::createCPUGenerator(7);
  const auto crops = iidm::random_crops({images, labels}, index, 6, /*flip=*/true, gen);
  ASSERT_EQ(crops[0].sizes(), (std::vector<int64_t>{8, 2, 6, 6}));
  ASSERT_EQ(crops[1].sizes(), (std::vector<int64_t>{8, 6, 6}));
  int flipped = 0;
  for (int64_t i = 0; i < 8; ++i) {
    // The labels carry x, as the image's channel 0 does, through crop and flip alike.
    EXPECT_TRUE(torch::equal(crops[0][i][0].to(torch::kInt64), crops[1][i]));
    // Rows are whole rows of the indexed item: y + 100 * item, constant along x.
    const torch::Tensor y = crops[0][i][1];
    EXPECT_EQ(static_cast<int64_t>(y[0][0].item<float>()) / 100, index[i].item<int64_t>());
    EXPECT_TRUE(torch::equal(y, y.select(1, 0).unsqueeze(1).expand({6, 6})));
    // x runs by +1 (as is) or -1 (mirrored) across the window.
    const float step = crops[0][i][0][0][1].item<float>() - crops[0][i][0][0][0].item<float>();
    EXPECT_TRUE(step == 1.0f || step == -1.0f);
    flipped += step < 0;
  }
  EXPECT_GT(flipped, 0);
  EXPECT_LT(flipped, 8);

  auto a = at::detail::createCPUGenerator(11), b = at::detail::createCPUGenerator(11);
  const auto whole = iidm::random_crops({images}, index, 0, /*flip=*/false, a);
  EXPECT_TRUE(torch::equal(whole[0], images.index_select(0, index)));
  EXPECT_TRUE(torch::equal(torch::rand({4}, a), torch::rand({4}, b)));
  EXPECT_THROW(iidm::random_crops({images}, index, 11, false, a), std::exception);
  EXPECT_THROW(iidm::random_crops({images, labels.narrow(2, 0, 5)}, index, 4, false, a), std::exception);
}

// The measures of src/metrics on inputs with known answers: the Fréchet distance against the
// parity case, mask accuracy and mIoU on hand-made maps, style similarity, KID, diversity, the
// competition score, TorchScript networks (tiny modules made by tools/make_torchscript_fixtures.py),
// the real-feature cache, and folder scoring with a truncated image and a missing output.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>

#include "core/fs.h"
#include "core/image.h"
#include "core/safetensors.h"
#include "metrics/competition.h"
#include "metrics/diversity.h"
#include "metrics/feature_stats.h"
#include "metrics/frechet.h"
#include "metrics/histogram.h"
#include "metrics/kid.h"
#include "metrics/networks.h"
#include "metrics/score.h"
#include "metrics/segmentation.h"
#include "metrics/style.h"
#include "test_util.h"

namespace iidm {
namespace {
namespace fs = std::filesystem;
using torch::Tensor;

const std::string kFixtures = std::string(IIDM_SOURCE_DIR) + "/tests/data/torchscript";

TEST(Metrics, FrechetDistanceMatchesTheParityCase) {
  const SafeTensorsFile io = SafeTensorsFile::open(std::string(IIDM_PARITY_DIR) + "/frechet_distance/io.safetensors");
  const GaussianStats a = gaussian_stats(to_eigen(io.tensor("features_a")));
  const GaussianStats b = gaussian_stats(to_eigen(io.tensor("features_b")));
  const double reference = io.tensor("fid").item<double>();
  EXPECT_NEAR(frechet_distance(a, b), reference, 1e-6 * std::abs(reference));
  EXPECT_NEAR(frechet_distance(a, a), 0.0, 1e-9);
}

TEST(Metrics, MaskAccuracyAndMiouOnHandMadeMaps) {
  // labels: 0 0 | 1 1 / 2 2 | 255 255; prediction gets one class-1 pixel wrong (as 0).
  const Tensor labels = torch::tensor({0, 0, 1, 1, 2, 2, 255, 255}, torch::kInt64).reshape({2, 4});
  const Tensor predicted = torch::tensor({0, 0, 0, 1, 2, 2, 1, 1}, torch::kInt64).reshape({2, 4});
  ConfusionMatrix m(3);
  m.add(predicted, labels);
  EXPECT_EQ(m.pixels(), 6);  // the two unlabelled pixels are not counted
  EXPECT_DOUBLE_EQ(m.pixel_accuracy(), 5.0 / 6.0);
  // IoU: class 0 = 2/(2+1) (one false positive), class 1 = 1/2, class 2 = 1.
  const auto iou = m.iou_per_class();
  EXPECT_DOUBLE_EQ(iou[0], 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(iou[1], 0.5);
  EXPECT_DOUBLE_EQ(iou[2], 1.0);
  EXPECT_DOUBLE_EQ(m.mean_iou(), (2.0 / 3.0 + 0.5 + 1.0) / 3.0);

  // A class absent from the labels has no IoU; predicting it only hurts the true class.
  ConfusionMatrix absent(4);
  absent.add(torch::tensor({3, 0}, torch::kInt64), torch::tensor({0, 0}, torch::kInt64));
  EXPECT_TRUE(std::isnan(absent.iou_per_class()[3]));
  EXPECT_DOUBLE_EQ(absent.mean_iou(), 0.5);
  EXPECT_DOUBLE_EQ(absent.pixel_accuracy(), 0.5);

  // Accumulating two maps = one map holding both.
  ConfusionMatrix twice(3);
  twice.add(predicted, labels);
  twice.add(predicted, labels);
  EXPECT_DOUBLE_EQ(twice.mean_iou(), m.mean_iou());
  EXPECT_EQ(twice.pixels(), 12);

  test::expect_error([&] { m.add(predicted, torch::full({2, 4}, 7, torch::kInt64)); }, {"label value 7"});
  test::expect_error([&] { m.add(predicted, labels.narrow(1, 0, 2)); }, {"differ in shape"});
}

Tensor gradient_image(int64_t h, int64_t w, double tint) {
  const Tensor ramp = torch::linspace(-1, 1, w).expand({h, w});
  return torch::stack({ramp * 0.9, (ramp * -0.5 + tint).clamp(-1, 1), torch::full({h, w}, tint)});
}

TEST(Metrics, StyleSimilarityOfAnImageWithItselfIsOneAndWithItsInverseLower) {
  const Tensor image = gradient_image(16, 24, 0.3);
  EXPECT_NEAR(color_histogram_correlation(image, image), 1.0, 1e-12);
  EXPECT_LT(color_histogram_correlation(image, -image), 0.5);

  // Three outputs that each copy their own reference: all closest to their own.
  std::vector<std::pair<std::string, Tensor>> refs = {
      {"a", gradient_image(16, 24, -0.6)}, {"b", gradient_image(16, 24, 0.1)}, {"c", gradient_image(16, 24, 0.7)}};
  const StyleSummary same = style_similarity({refs[0].second, refs[1].second, refs[2].second}, {"a", "b", "c"}, refs);
  EXPECT_NEAR(same.mean_own, 1.0, 1e-12);
  EXPECT_DOUBLE_EQ(same.closest_share, 1.0);
  EXPECT_GT(same.mean_margin, 0.0);
  EXPECT_EQ(same.references, 3);
  // Swapped references: own is another image's palette, so not closest.
  const StyleSummary swapped = style_similarity({refs[1].second, refs[0].second}, {"a", "b"}, refs);
  EXPECT_DOUBLE_EQ(swapped.closest_share, 0.0);
  EXPECT_LT(swapped.mean_margin, 0.0);
}

TEST(Metrics, KidOfASetWithItselfIsNearZeroAndGrowsWithAShift) {
  torch::manual_seed(0);
  const Eigen::MatrixXd x = to_eigen(torch::randn({200, 16}, torch::kFloat64));
  const Eigen::MatrixXd y = to_eigen(torch::randn({200, 16}, torch::kFloat64));
  const double same = kernel_inception_distance(x, x).mean, fresh = kernel_inception_distance(x, y).mean;
  const Eigen::MatrixXd shifted = y.array() + 0.5;
  const double shift = kernel_inception_distance(x, shifted).mean;
  const Eigen::MatrixXd far = y.array() + 1.0;
  // A set against itself: only the O(1/n) term of the cross kernel's diagonal is left (the
  // estimator assumes independent sets), small against what a shift of half a standard deviation gives.
  EXPECT_LT(std::abs(same), shift / 10);
  EXPECT_LT(std::abs(fresh), shift / 10);
  EXPECT_GT(kernel_inception_distance(x, far).mean, shift);
  // Subsets: seeded, so repeatable; a spread is reported.
  const KidResult sub = kernel_inception_distance(x, shifted, 20, 50, 7);
  EXPECT_EQ(sub.subsets, 20);
  EXPECT_EQ(sub.subset_size, 50);
  EXPECT_GT(sub.stddev, 0.0);
  EXPECT_EQ(kernel_inception_distance(x, shifted, 20, 50, 7).mean, sub.mean);
  // The unbiased estimate by hand for two 2-point sets in 1-d: k(a, b) = (ab + 1)^3.
  Eigen::MatrixXd p(2, 1), q(2, 1);
  p << 0, 1;
  q << 1, 2;
  auto k = [](double a, double b) { return std::pow(a * b + 1, 3); };
  const double by_hand = (2 * k(0, 1)) / 2 + (2 * k(1, 2)) / 2 - 2 * (k(0, 1) + k(0, 2) + k(1, 1) + k(1, 2)) / 4;
  EXPECT_NEAR(polynomial_mmd_unbiased(p, q), by_hand, 1e-12);
}

TEST(Metrics, CompetitionScoreTermByTerm) {
  const CompetitionScore s = competition_score(0.8, 0.6, 40.0);
  EXPECT_DOUBLE_EQ(s.style_term, 0.3 * 0.8);
  EXPECT_DOUBLE_EQ(s.fid_term, 0.5 * 0.6);
  EXPECT_DOUBLE_EQ(s.score, 0.8 * (0.24 + 0.3));
  EXPECT_TRUE(s.aesthetic_omitted);
}

TEST(Metrics, PixelDiversityIsZeroForCopiesAndKnownForOpposites) {
  const Tensor black = torch::full({3, 4, 4}, -1.0), white = torch::full({3, 4, 4}, 1.0);
  const DiversityResult copies = sample_diversity({{black, black, black}});
  EXPECT_EQ(copies.measure, "pixel-rms");
  EXPECT_DOUBLE_EQ(copies.mean, 0.0);
  EXPECT_EQ(copies.pairs, 3);
  // Pairs (b, w), (b, b), (w, b): distances 1, 0, 1.
  EXPECT_NEAR(sample_diversity({{black, white, black}, {white}}).mean, 2.0 / 3.0, 1e-12);
  EXPECT_EQ(sample_diversity({{black, white}, {white}}).groups, 1) << "a single sample is no group";
}

TEST(Metrics, DiversityThroughATorchScriptDistanceNetwork) {
  // distance.pt: mean |x - y| per pair, returned as LPIPS does ([N, 1, 1, 1]).
  auto lpips = load_torchscript_distance(kFixtures + "/distance.pt");
  const Tensor black = torch::full({3, 4, 4}, -1.0), white = torch::full({3, 4, 4}, 1.0);
  const DiversityResult result = sample_diversity({{black, white, black}}, lpips.get());
  EXPECT_EQ(result.measure, "lpips");
  EXPECT_NEAR(result.mean, (2.0 + 0.0 + 2.0) / 3.0, 1e-6);
  EXPECT_EQ(result.pairs, 3);
}

TEST(Metrics, TorchScriptSegmenterAndFeatureNetworkAreLoadedAndUsed) {
  // segmenter.pt: class = the dominant RGB channel, logits at half size (upsampled here).
  auto segmenter = load_torchscript_segmenter(kFixtures + "/segmenter.pt");
  Tensor image = torch::full({1, 3, 8, 8}, -1.0);
  image.index_put_({0, 0, torch::indexing::Slice(0, 4)}, 1.0);  // top half red
  image.index_put_({0, 2, torch::indexing::Slice(4, 8)}, 1.0);  // bottom half blue
  const Tensor predicted = segmenter->predict(image);
  ASSERT_EQ(predicted.sizes(), (std::vector<int64_t>{1, 8, 8}));
  EXPECT_EQ(predicted[0][0][0].item<int64_t>(), 0);
  EXPECT_EQ(predicted[0][7][7].item<int64_t>(), 2);
  ConfusionMatrix m(3);
  Tensor labels = torch::zeros({8, 8}, torch::kInt64);
  labels.narrow(0, 4, 4).fill_(2);
  m.add(predicted[0], labels);
  EXPECT_DOUBLE_EQ(m.pixel_accuracy(), 1.0);

  // features.pt: per-channel mean and std of the [0, 1] image (resized to 299 first; constant
  // channels stay constant).
  auto features = load_torchscript_features(kFixtures + "/features.pt");
  EXPECT_TRUE(features->user_supplied());
  const Tensor f = features->features(torch::stack({torch::full({3, 10, 12}, 0.5), torch::full({3, 10, 12}, -1.0)}));
  ASSERT_EQ(f.sizes(), (std::vector<int64_t>{2, 6}));
  EXPECT_NEAR(f[0][0].item<double>(), 0.75, 1e-6);
  EXPECT_NEAR(f[1][2].item<double>(), 0.0, 1e-6);
  EXPECT_NEAR(f[0][3].item<double>(), 0.0, 1e-6);
  EXPECT_NE(features->identity().find("features.pt"), std::string::npos);

  test::expect_error([&] { load_torchscript_features(kFixtures + "/missing.pt"); }, {"missing.pt", "no such file"});
  test::TempDir dir;
  std::ofstream(dir.file("junk.pt")) << "not a module";
  test::expect_error([&] { load_torchscript_segmenter(dir.file("junk.pt")); }, {"junk.pt", "not a TorchScript"});
}

// Writes an image whose colour follows the label map: class 0 red, 1 green, 2 blue.
void write_labelled(const std::string& dir, const std::string& stem, int split) {
  Tensor labels = torch::zeros({16, 16}, torch::kUInt8);
  labels.narrow(1, split, 16 - split).fill_(2);
  cv::Mat map(16, 16, CV_8UC1, labels.data_ptr());
  cv::imwrite(dir + "/labels/" + stem + ".png", map);
  Tensor image = torch::full({3, 16, 16}, -1.0);
  image[0].narrow(1, 0, split).fill_(1.0);
  image[2].narrow(1, split, 16 - split).fill_(1.0);
  write_image(dir + "/images/" + stem + ".png", image);
  write_image(dir + "/real/" + stem + ".png", image);
}

TEST(Metrics, ScoringAFolderReportsBadItemsByNameAndScoresTheRest) {
  test::TempDir dir;
  for (const char* sub : {"labels", "images", "real"}) fs::create_directories(dir.file(sub));
  for (int i = 0; i < 4; ++i) write_labelled(dir.path().string(), "item" + std::to_string(i), 4 + 2 * i);
  // item1's output is truncated; item4 has a label map and no output; item5 an output and no map.
  const std::string truncated = read_file(dir.file("images/item1.png"));
  std::ofstream(dir.file("images/item1.png"), std::ios::binary) << truncated.substr(0, truncated.size() / 2);
  fs::copy_file(dir.file("labels/item0.png"), dir.file("labels/item4.png"));
  fs::copy_file(dir.file("images/item0.png"), dir.file("images/item5.png"));

  const ScoreListing listing = list_score_items(dir.file("images"), dir.file("labels"));
  ASSERT_EQ(listing.items.size(), 4u);
  ASSERT_EQ(listing.failures.size(), 2u);
  EXPECT_EQ(listing.failures[0].name, "item4");
  EXPECT_NE(listing.failures[0].reason.find("no output"), std::string::npos) << listing.failures[0].reason;
  EXPECT_EQ(listing.failures[1].name, "item5");
  EXPECT_NE(listing.failures[1].reason.find("no label map"), std::string::npos) << listing.failures[1].reason;
  auto segmenter = load_torchscript_segmenter(kFixtures + "/segmenter.pt");
  auto features = load_torchscript_features(kFixtures + "/features.pt", 32);
  ScoreOptions options;
  options.real_dir = dir.file("real");
  options.real_stats_cache = dir.file("real-stats.safetensors");
  const ScoreReport report = score_images(listing.items, *segmenter, features.get(), options);
  ASSERT_EQ(report.failures.size(), 1u);
  EXPECT_EQ(report.failures[0].name, "item1");
  EXPECT_NE(report.failures[0].reason.find("item1.png"), std::string::npos) << report.failures[0].reason;
  ASSERT_EQ(report.items.size(), 3u);
  EXPECT_DOUBLE_EQ(report.mask_accuracy, 1.0) << "images drawn from their maps";
  EXPECT_DOUBLE_EQ(report.miou, 1.0);
  ASSERT_TRUE(report.fid && report.kid);
  EXPECT_EQ(report.real_images, 4);
  EXPECT_FALSE(report.competition) << "no references: no style term";

  // The real features are cached with the network's identity and reused.
  const SafeTensorsFile cache = SafeTensorsFile::open(options.real_stats_cache);
  EXPECT_EQ(cache.metadata().at("network"), features->identity());
  const FeatureSet again = folder_features(*features, options.real_dir, 16, 16, options.real_stats_cache);
  EXPECT_TRUE(again.from_cache);
  // Another image size is another cache key: recomputed.
  EXPECT_FALSE(folder_features(*features, options.real_dir, 32, 32, options.real_stats_cache).from_cache);
}

}  // namespace
}  // namespace iidm

// Colour transfer methods beyond the parity case: identities and the statistics they promise.
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "postprocess/color_transfer.h"
#include "test_util.h"

namespace iidm {
namespace {

cv::Mat random_image(int seed, cv::Scalar low, cv::Scalar high) {
  cv::Mat m(40, 56, CV_8UC3);
  cv::RNG rng(seed);
  rng.fill(m, cv::RNG::UNIFORM, low, high);
  cv::GaussianBlur(m, m, cv::Size(5, 5), 0);  // smooth, image-like
  return m;
}

double max_abs_diff(const cv::Mat& a, const cv::Mat& b) { return cv::norm(a, b, cv::NORM_INF); }

TEST(ColorTransfer, HistogramMatchesTheReferenceDistribution) {
  const cv::Mat ref = random_image(1, {100, 20, 0}, {255, 120, 80}), src = random_image(2, {0, 0, 100}, {90, 200, 255});
  EXPECT_EQ(max_abs_diff(color_transfer_histogram(src, src), src), 0);  // an image matched to itself
  const cv::Mat out = color_transfer_histogram(ref, src);
  cv::Scalar out_mean, out_std, ref_mean, ref_std;
  cv::meanStdDev(out, out_mean, out_std);
  cv::meanStdDev(ref, ref_mean, ref_std);
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(out_mean[c], ref_mean[c], 2.0) << c;
    EXPECT_NEAR(out_std[c], ref_std[c], 2.0) << c;
  }
}

TEST(ColorTransfer, ReinhardMovesColourStatisticsTowardTheReference) {
  const cv::Mat ref = random_image(3, {150, 60, 20}, {255, 160, 90}),
                src = random_image(4, {10, 60, 120}, {80, 160, 255});
  EXPECT_LE(max_abs_diff(color_transfer_reinhard(src, src), src), 2);  // near-identity up to rounding
  const cv::Mat out = color_transfer_reinhard(ref, src);
  cv::Scalar out_mean, ref_mean, src_mean, dummy;
  cv::meanStdDev(out, out_mean, dummy);
  cv::meanStdDev(ref, ref_mean, dummy);
  cv::meanStdDev(src, src_mean, dummy);
  for (int c = 0; c < 3; ++c) EXPECT_LT(std::abs(out_mean[c] - ref_mean[c]), std::abs(src_mean[c] - ref_mean[c])) << c;
}

TEST(ColorTransfer, IidmLabOfAnImageOntoItselfIsNearIdentity) {
  const cv::Mat src = random_image(5, {0, 0, 0}, {255, 255, 255});
  // Lab round trips in 8 bits lose a little; the transfer itself adds nothing.
  cv::Mat lab, back;
  cv::cvtColor(src, lab, cv::COLOR_RGB2Lab);
  cv::cvtColor(lab, back, cv::COLOR_Lab2RGB);
  EXPECT_LE(max_abs_diff(color_transfer_iidm_lab(src, src), back), 1);
}

TEST(ColorTransfer, NamesAndBadInputs) {
  EXPECT_EQ(parse_color_transfer("iidm-lab"), ColorTransfer::kIidmLab);
  EXPECT_EQ(to_string(parse_color_transfer("histogram")), "histogram");
  test::expect_error([] { parse_color_transfer("lab"); }, {"unknown colour transfer 'lab'"});
  test::expect_error([] { color_transfer_reinhard(cv::Mat(), cv::Mat(4, 4, CV_8UC3)); }, {"reference image"});
  const cv::Mat src = random_image(6, {0, 0, 0}, {255, 255, 255});
  EXPECT_EQ(max_abs_diff(color_transfer(ColorTransfer::kNone, src, src), src), 0);
}

}  // namespace
}  // namespace iidm

#include "postprocess/color_transfer.h"

#include <opencv2/imgproc.hpp>

#include <cmath>

#include "core/error.h"

namespace iidm {
namespace {

void check_rgb8(const cv::Mat& image, const char* what) {
  if (image.empty() || image.type() != CV_8UC3)
    fail("colour transfer: the {} image must be non-empty 8-bit RGB, got type {} size {}x{}", what, image.type(),
         image.cols, image.rows);
}

// numpy.around(x, 2): scale, round half to even, unscale.
double round2(double x) { return std::nearbyint(x * 100.0) / 100.0; }

}  // namespace

cv::Mat color_transfer_iidm_lab(const cv::Mat& reference_rgb, const cv::Mat& source_rgb) {
  check_rgb8(reference_rgb, "reference");
  check_rgb8(source_rgb, "source");
  cv::Mat ref_lab, src_lab;
  cv::cvtColor(reference_rgb, ref_lab, cv::COLOR_RGB2Lab);
  cv::cvtColor(source_rgb, src_lab, cv::COLOR_RGB2Lab);
  cv::Scalar ref_mean, ref_std, src_mean, src_std;
  cv::meanStdDev(ref_lab, ref_mean, ref_std);
  cv::meanStdDev(src_lab, src_mean, src_std);
  float shift_src[3], gain[3], shift_ref[3];
  for (int c = 0; c < 3; ++c) {
    const double sm = round2(src_mean[c]), ss = round2(src_std[c]);
    const double rm = round2(ref_mean[c]), rs = round2(ref_std[c]);
    // A flat source channel has no spread to rescale: keep its deviations (zero) and move the mean.
    shift_src[c] = static_cast<float>(sm);
    gain[c] = static_cast<float>(ss > 0 ? rs / ss : 1.0);
    shift_ref[c] = static_cast<float>(rm);
  }
  cv::Mat out_lab(src_lab.size(), CV_8UC3);
  for (int y = 0; y < src_lab.rows; ++y) {
    const cv::Vec3b* in = src_lab.ptr<cv::Vec3b>(y);
    cv::Vec3b* out = out_lab.ptr<cv::Vec3b>(y);
    for (int x = 0; x < src_lab.cols; ++x)
      for (int c = 0; c < 3; ++c) {
        // float32 arithmetic in the reference's order; nearbyint rounds half to even like np.round.
        const float v = (static_cast<float>(in[x][c]) - shift_src[c]) * gain[c] + shift_ref[c];
        const float r = std::nearbyint(v);
        out[x][c] = static_cast<uint8_t>(r < 0 ? 0 : (r > 255 ? 255 : r));
      }
  }
  cv::Mat out_rgb;
  cv::cvtColor(out_lab, out_rgb, cv::COLOR_Lab2RGB);
  return out_rgb;
}

}  // namespace iidm

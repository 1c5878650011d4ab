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

namespace iidm {

ColorTransfer parse_color_transfer(const std::string& name) {
  if (name == "none") return ColorTransfer::kNone;
  if (name == "iidm-lab" || name == "iidm_lab") return ColorTransfer::kIidmLab;
  if (name == "reinhard") return ColorTransfer::kReinhard;
  if (name == "histogram") return ColorTransfer::kHistogram;
  fail("unknown colour transfer '{}' (expected none, iidm-lab, reinhard or histogram)", name);
}

std::string to_string(ColorTransfer method) {
  switch (method) {
    case ColorTransfer::kIidmLab:
      return "iidm-lab";
    case ColorTransfer::kReinhard:
      return "reinhard";
    case ColorTransfer::kHistogram:
      return "histogram";
    default:
      return "none";
  }
}

cv::Mat color_transfer(ColorTransfer method, const cv::Mat& reference_rgb, const cv::Mat& source_rgb) {
  switch (method) {
    case ColorTransfer::kIidmLab:
      return color_transfer_iidm_lab(reference_rgb, source_rgb);
    case ColorTransfer::kReinhard:
      return color_transfer_reinhard(reference_rgb, source_rgb);
    case ColorTransfer::kHistogram:
      return color_transfer_histogram(reference_rgb, source_rgb);
    default:
      return source_rgb.clone();
  }
}

namespace {

// RGB (0..1) -> log10 LMS -> l-alpha-beta, Reinhard et al.'s matrices.
void rgb_to_lab_reinhard(const cv::Mat& rgb8, cv::Mat& lab) {
  lab.create(rgb8.size(), CV_32FC3);
  const double s3 = std::sqrt(3.0), s6 = std::sqrt(6.0), s2 = std::sqrt(2.0);
  for (int y = 0; y < rgb8.rows; ++y) {
    const cv::Vec3b* in = rgb8.ptr<cv::Vec3b>(y);
    cv::Vec3f* out = lab.ptr<cv::Vec3f>(y);
    for (int x = 0; x < rgb8.cols; ++x) {
      const double r = in[x][0] / 255.0, g = in[x][1] / 255.0, b = in[x][2] / 255.0;
      // A small floor keeps log finite on black pixels.
      const double L = std::log10(std::max(0.3811 * r + 0.5783 * g + 0.0402 * b, 1e-4));
      const double M = std::log10(std::max(0.1967 * r + 0.7244 * g + 0.0782 * b, 1e-4));
      const double S = std::log10(std::max(0.0241 * r + 0.1288 * g + 0.8444 * b, 1e-4));
      out[x] = cv::Vec3f(static_cast<float>((L + M + S) / s3), static_cast<float>((L + M - 2 * S) / s6),
                         static_cast<float>((L - M) / s2));
    }
  }
}

cv::Mat lab_reinhard_to_rgb(const cv::Mat& lab) {
  cv::Mat rgb8(lab.size(), CV_8UC3);
  const double s3 = std::sqrt(3.0), s6 = std::sqrt(6.0), s2 = std::sqrt(2.0);
  for (int y = 0; y < lab.rows; ++y) {
    const cv::Vec3f* in = lab.ptr<cv::Vec3f>(y);
    cv::Vec3b* out = rgb8.ptr<cv::Vec3b>(y);
    for (int x = 0; x < lab.cols; ++x) {
      const double l = in[x][0], a = in[x][1], b = in[x][2];
      const double L = std::pow(10.0, l / s3 + a / s6 + b / s2);
      const double M = std::pow(10.0, l / s3 + a / s6 - b / s2);
      const double S = std::pow(10.0, l / s3 - 2 * a / s6);
      const double rgb[3] = {4.4679 * L - 3.5873 * M + 0.1193 * S, -1.2186 * L + 2.3809 * M - 0.1624 * S,
                             0.0497 * L - 0.2439 * M + 1.2045 * S};
      for (int c = 0; c < 3; ++c) out[x][c] = cv::saturate_cast<uint8_t>(std::lround(rgb[c] * 255.0));
    }
  }
  return rgb8;
}

}  // namespace

cv::Mat color_transfer_reinhard(const cv::Mat& reference_rgb, const cv::Mat& source_rgb) {
  check_rgb8(reference_rgb, "reference");
  check_rgb8(source_rgb, "source");
  cv::Mat ref, src;
  rgb_to_lab_reinhard(reference_rgb, ref);
  rgb_to_lab_reinhard(source_rgb, src);
  cv::Scalar rm, rs, sm, ss;
  cv::meanStdDev(ref, rm, rs);
  cv::meanStdDev(src, sm, ss);
  for (int y = 0; y < src.rows; ++y) {
    cv::Vec3f* p = src.ptr<cv::Vec3f>(y);
    for (int x = 0; x < src.cols; ++x)
      for (int c = 0; c < 3; ++c) {
        const double gain = ss[c] > 1e-12 ? rs[c] / ss[c] : 1.0;
        p[x][c] = static_cast<float>((p[x][c] - sm[c]) * gain + rm[c]);
      }
  }
  return lab_reinhard_to_rgb(src);
}

cv::Mat color_transfer_histogram(const cv::Mat& reference_rgb, const cv::Mat& source_rgb) {
  check_rgb8(reference_rgb, "reference");
  check_rgb8(source_rgb, "source");
  cv::Mat out = source_rgb.clone();
  for (int c = 0; c < 3; ++c) {
    double ref_hist[256] = {0}, src_hist[256] = {0};
    for (int y = 0; y < reference_rgb.rows; ++y)
      for (int x = 0; x < reference_rgb.cols; ++x) ref_hist[reference_rgb.at<cv::Vec3b>(y, x)[c]] += 1;
    for (int y = 0; y < source_rgb.rows; ++y)
      for (int x = 0; x < source_rgb.cols; ++x) src_hist[source_rgb.at<cv::Vec3b>(y, x)[c]] += 1;
    double ref_cdf[256], src_cdf[256], ra = 0, sa = 0;
    const double rn = static_cast<double>(reference_rgb.total()), sn = static_cast<double>(source_rgb.total());
    for (int v = 0; v < 256; ++v) {
      ra += ref_hist[v];
      sa += src_hist[v];
      ref_cdf[v] = ra / rn;
      src_cdf[v] = sa / sn;
    }
    uint8_t lut[256];
    int r = 0;
    for (int v = 0; v < 256; ++v) {
      // The smallest reference level whose CDF reaches the source level's (monotone in v).
      while (r < 255 && ref_cdf[r] < src_cdf[v] - 1e-12) ++r;
      lut[v] = static_cast<uint8_t>(r);
    }
    for (int y = 0; y < out.rows; ++y) {
      cv::Vec3b* p = out.ptr<cv::Vec3b>(y);
      for (int x = 0; x < out.cols; ++x) p[x][c] = lut[p[x][c]];
    }
  }
  return out;
}

}  // namespace iidm

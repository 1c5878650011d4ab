#pragma once
// Colour transfer between refinement rounds: bring the reference's colours back onto a generated
// image. Images are 8-bit RGB (CV_8UC3, RGB order).
#include <opencv2/core.hpp>

#include <string>

namespace iidm {

enum class ColorTransfer { kNone, kIidmLab, kReinhard, kHistogram };

// "none" | "iidm-lab" | "reinhard" | "histogram"; throws iidm::Error listing the choices.
ColorTransfer parse_color_transfer(const std::string& name);
std::string to_string(ColorTransfer method);

// Brings the colours of `reference_rgb` onto `source_rgb` (sizes may differ). kNone returns a copy.
cv::Mat color_transfer(ColorTransfer method, const cv::Mat& reference_rgb, const cv::Mat& source_rgb);

// IIDM's transfer: OpenCV 8-bit Lab, per-channel mean/std (rounded to 2 decimals), then
// (s - mean_s) * std_r / std_s + mean_r in float32, rounded, clipped, back to RGB.
cv::Mat color_transfer_iidm_lab(const cv::Mat& reference_rgb, const cv::Mat& source_rgb);
// Reinhard et al. 2001: match per-channel mean and std in the decorrelated l-alpha-beta space
// (log LMS), in floating point.
cv::Mat color_transfer_reinhard(const cv::Mat& reference_rgb, const cv::Mat& source_rgb);
// Per-channel histogram matching: each source level maps to the reference level with the same CDF.
cv::Mat color_transfer_histogram(const cv::Mat& reference_rgb, const cv::Mat& source_rgb);

}  // namespace iidm

#pragma once
// Colour transfer between refinement rounds: bring the reference's colours back onto a generated
// image. Images are 8-bit RGB (CV_8UC3, RGB order).
#include <opencv2/core.hpp>

#include <string>

namespace iidm {

// IIDM's transfer: OpenCV 8-bit Lab, per-channel mean/std (rounded to 2 decimals), then
// (s - mean_s) * std_r / std_s + mean_r in float32, rounded, clipped, back to RGB.
cv::Mat color_transfer_iidm_lab(const cv::Mat& reference_rgb, const cv::Mat& source_rgb);

}  // namespace iidm

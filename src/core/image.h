#pragma once
// Image files <-> tensors, and tensors <-> 8-bit RGB images (for OpenCV's colour transfers). Images
// are RGB in [-1, 1] as [1, 3, H, W] (files) or [3, H, W] float32. Errors name the file. Label
// maps are in core/labels.h.
#include <torch/types.h>

#include <opencv2/core/mat.hpp>
#include <string>

namespace iidm {

// Reads any image OpenCV can decode (8-bit; grey is expanded to RGB). Resized with area/bicubic
// interpolation to width x height when both are > 0 and differ from the file.
torch::Tensor read_image(const std::string& path, int width = 0, int height = 0);
// The same from a file's bytes (an upload); `source_name` starts every error message.
torch::Tensor decode_image(const std::string& bytes, const std::string& source_name, int width = 0, int height = 0);
// OpenCV's decoding of a file's bytes (cv::IMREAD_* flags), refusing empty, unreadable and
// truncated input with a message that starts with `source_name`.
cv::Mat imdecode_checked(const std::string& bytes, const std::string& source_name, int flags);
// [3, H, W] (or [1, 3, H, W]) in [-1, 1] as the bytes of a PNG file: what write_image stores.
std::string encode_png(const torch::Tensor& image);
// Writes [1 or none, 3, H, W] in [-1, 1] (clamped, rounded) as PNG/JPEG by extension, atomically.
void write_image(const std::string& path, const torch::Tensor& image, int jpeg_quality = 95);

// [3, H, W] in [-1, 1] (any device, floating dtype) -> H x W 8-bit RGB (CV_8UC3): the bytes
// write_image stores (rounded, clamped).
cv::Mat to_rgb8(const torch::Tensor& image);
// 8-bit RGB (CV_8UC3) -> [3, H, W] float32 in [-1, 1], owning its data. Its strides keep the
// pixels' interleaved order (a permuted view); call .contiguous() where a packed tensor matters.
torch::Tensor from_rgb8(const cv::Mat& rgb);

}  // namespace iidm

#include "core/image.h"

#include <torch/torch.h>

#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "core/error.h"
#include "core/fs.h"

namespace iidm {

namespace {
cv::Mat imread_checked(const std::string& path, int flags) {
  if (!std::filesystem::exists(path)) fail("{}: no such file", path);
  cv::Mat image;
  try {
    image = cv::imread(path, flags);
  } catch (const cv::Exception& e) {
    fail("{}: cannot decode image: {}", path, e.what());
  }
  if (image.empty()) fail("{}: cannot decode image (unreadable, truncated or not an image)", path);
  return image;
}

// BGR from a decoder -> [1, 3, H, W] RGB in [-1, 1], resized as read_image promises.
torch::Tensor to_tensor_resized(cv::Mat bgr, int width, int height) {
  if (width > 0 && height > 0 && (bgr.cols != width || bgr.rows != height)) {
    const bool shrink = bgr.cols > width && bgr.rows > height;
    cv::resize(bgr, bgr, cv::Size(width, height), 0, 0, shrink ? cv::INTER_AREA : cv::INTER_CUBIC);
  }
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return from_rgb8(rgb).unsqueeze(0).contiguous();
}

// One image [3, H, W] (or a batch of one) -> BGR 8-bit, for the encoders.
cv::Mat to_bgr8(const torch::Tensor& image) {
  torch::Tensor t = image.detach();
  if (t.dim() == 4) {
    TORCH_CHECK(t.size(0) == 1, "write_image: one image at a time, got a batch of ", t.size(0));
    t = t[0];
  }
  TORCH_CHECK(t.dim() == 3 && t.size(0) == 3, "write_image: expected [3, H, W], got ", t.sizes());
  cv::Mat bgr;
  cv::cvtColor(to_rgb8(t), bgr, cv::COLOR_RGB2BGR);
  return bgr;
}
}  // namespace

torch::Tensor read_image(const std::string& path, int width, int height) {
  return to_tensor_resized(imread_checked(path, cv::IMREAD_COLOR), width, height);
}

cv::Mat imdecode_checked(const std::string& bytes, const std::string& source_name, int flags) {
  if (bytes.empty()) fail("{}: empty file (not an image)", source_name);
  cv::Mat image;
  try {
    image = cv::imdecode(cv::Mat(1, static_cast<int>(bytes.size()), CV_8U, const_cast<char*>(bytes.data())), flags);
  } catch (const cv::Exception& e) {
    fail("{}: cannot decode image: {}", source_name, e.what());
  }
  if (image.empty()) fail("{}: cannot decode image (unreadable, truncated or not an image)", source_name);
  return image;
}

torch::Tensor decode_image(const std::string& bytes, const std::string& source_name, int width, int height) {
  return to_tensor_resized(imdecode_checked(bytes, source_name, cv::IMREAD_COLOR), width, height);
}

std::string encode_png(const torch::Tensor& image) {
  std::vector<uchar> encoded;
  if (!cv::imencode(".png", to_bgr8(image), encoded)) fail("cannot encode a PNG image");
  return std::string(encoded.begin(), encoded.end());
}

void write_image(const std::string& path, const torch::Tensor& image, int jpeg_quality) {
  const cv::Mat bgr = to_bgr8(image);
  std::string ext = std::filesystem::path(path).extension().string();
  for (auto& c : ext) c = static_cast<char>(std::tolower(c));
  if (ext != ".png" && ext != ".jpg" && ext != ".jpeg") fail("{}: output must be .png, .jpg or .jpeg", path);
  std::vector<uchar> encoded;
  std::vector<int> params;
  if (ext != ".png") params = {cv::IMWRITE_JPEG_QUALITY, jpeg_quality};
  if (!cv::imencode(ext, bgr, encoded, params)) fail("{}: cannot encode image", path);
  write_file_atomic(path, std::string(encoded.begin(), encoded.end()));
}

cv::Mat to_rgb8(const torch::Tensor& image) {
  TORCH_CHECK(image.dim() == 3 && image.size(0) == 3, "to_rgb8: expected [3, H, W], got ", image.sizes());
  torch::Tensor bytes =
      ((image.to(torch::kCPU, torch::kFloat32) + 1.0) * 127.5).round().clamp(0, 255).to(torch::kUInt8);
  bytes = bytes.permute({1, 2, 0}).contiguous();
  return cv::Mat(static_cast<int>(bytes.size(0)), static_cast<int>(bytes.size(1)), CV_8UC3, bytes.data_ptr()).clone();
}

torch::Tensor from_rgb8(const cv::Mat& rgb) {
  TORCH_CHECK(rgb.type() == CV_8UC3, "from_rgb8: expected an 8-bit 3-channel image, got OpenCV type ", rgb.type());
  const int64_t row_stride = static_cast<int64_t>(rgb.step[0]);
  return torch::from_blob(rgb.data, {rgb.rows, rgb.cols, 3}, {row_stride, 3, 1}, torch::kUInt8)
      .permute({2, 0, 1})
      .to(torch::kFloat32)
      .div(127.5)
      .sub(1.0);
}

}  // namespace iidm

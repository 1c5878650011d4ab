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
}  // namespace

torch::Tensor read_image(const std::string& path, int width, int height) {
  cv::Mat bgr = imread_checked(path, cv::IMREAD_COLOR);
  if (width > 0 && height > 0 && (bgr.cols != width || bgr.rows != height)) {
    const bool shrink = bgr.cols > width && bgr.rows > height;
    cv::resize(bgr, bgr, cv::Size(width, height), 0, 0, shrink ? cv::INTER_AREA : cv::INTER_CUBIC);
  }
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  torch::Tensor t = torch::from_blob(rgb.data, {rgb.rows, rgb.cols, 3}, torch::kUInt8).clone();
  return t.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat32).div(127.5).sub(1.0).contiguous();
}

void write_image(const std::string& path, const torch::Tensor& image, int jpeg_quality) {
  torch::Tensor t = image.detach().to(torch::kCPU, torch::kFloat32);
  if (t.dim() == 4) {
    TORCH_CHECK(t.size(0) == 1, "write_image: one image at a time, got a batch of ", t.size(0));
    t = t[0];
  }
  TORCH_CHECK(t.dim() == 3 && t.size(0) == 3, "write_image: expected [3, H, W], got ", t.sizes());
  torch::Tensor bytes = ((t + 1.0) * 127.5).round().clamp(0, 255).to(torch::kUInt8).permute({1, 2, 0}).contiguous();
  cv::Mat rgb(static_cast<int>(bytes.size(0)), static_cast<int>(bytes.size(1)), CV_8UC3, bytes.data_ptr());
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  std::string ext = std::filesystem::path(path).extension().string();
  for (auto& c : ext) c = static_cast<char>(std::tolower(c));
  if (ext != ".png" && ext != ".jpg" && ext != ".jpeg") fail("{}: output must be .png, .jpg or .jpeg", path);
  std::vector<uchar> encoded;
  std::vector<int> params;
  if (ext != ".png") params = {cv::IMWRITE_JPEG_QUALITY, jpeg_quality};
  if (!cv::imencode(ext, bgr, encoded, params)) fail("{}: cannot encode image", path);
  write_file_atomic(path, std::string(encoded.begin(), encoded.end()));
}

torch::Tensor read_label_map(const std::string& path, int width, int height) {
  cv::Mat m = imread_checked(path, cv::IMREAD_UNCHANGED);
  if (m.channels() == 3 || m.channels() == 4) {
    std::vector<cv::Mat> channels;
    cv::split(m, channels);
    if (cv::countNonZero(channels[0] != channels[1]) || cv::countNonZero(channels[0] != channels[2]))
      fail("{}: label map has colour pixels; expected a grey image whose values are class ids", path);
    m = channels[0];
  } else if (m.channels() != 1) {
    fail("{}: label map has {} channels; expected 1", path, m.channels());
  }
  if (m.depth() != CV_8U && m.depth() != CV_16U) fail("{}: label map must be 8- or 16-bit integers", path);
  if (width > 0 && height > 0 && (m.cols != width || m.rows != height))
    cv::resize(m, m, cv::Size(width, height), 0, 0, cv::INTER_NEAREST_EXACT);  // pixel centres, as PIL
  cv::Mat wide;
  m.convertTo(wide, CV_32S);
  return torch::from_blob(wide.data, {1, wide.rows, wide.cols}, torch::kInt32).to(torch::kInt64).clone();
}

torch::Tensor colorize_labels(const torch::Tensor& labels, int64_t ignore_label) {
  torch::Tensor l = labels.dim() == 3 ? labels[0] : labels;
  if (l.dim() != 2) fail("colorize_labels: expected [H, W] labels, got {}", fmt::join(labels.sizes(), "x"));
  // Hues by the golden angle, alternating lightness: neighbouring ids look different.
  torch::Tensor palette = torch::empty({256, 3});
  for (int id = 0; id < 256; ++id) {
    const double hue = std::fmod(id * 137.508, 360.0) / 60.0, v = id % 2 ? 0.95 : 0.7, s = 0.75;
    const double c = v * s, x = c * (1 - std::fabs(std::fmod(hue, 2.0) - 1)), m = v - c;
    double r = 0, g = 0, b = 0;
    switch (static_cast<int>(hue)) {
      case 0: r = c, g = x; break;
      case 1: r = x, g = c; break;
      case 2: g = c, b = x; break;
      case 3: g = x, b = c; break;
      case 4: r = x, b = c; break;
      default: r = c, b = x; break;
    }
    palette[id] = torch::tensor({r + m, g + m, b + m}) * 2 - 1;
  }
  if (ignore_label >= 0 && ignore_label < 256) palette[ignore_label].fill_(0.0);
  return palette.index_select(0, l.to(torch::kInt64).clamp(0, 255).flatten()).view({l.size(0), l.size(1), 3}).permute({2, 0, 1}).contiguous();
}

}  // namespace iidm

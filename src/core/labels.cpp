#include "core/labels.h"

#include <png.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "core/image.h"  // imdecode_checked

namespace iidm {
using torch::Tensor;

std::optional<std::pair<int64_t, int64_t>> png_dimensions(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string head(24, '\0');
  if (!in.read(head.data(), 24)) return std::nullopt;
  return png_dimensions_of(head);
}

std::optional<std::pair<int64_t, int64_t>> png_dimensions_of(const std::string& bytes) {
  // Signature (8 bytes), then the IHDR chunk: length (4), "IHDR", width and height (big-endian).
  if (bytes.size() < 24) return std::nullopt;
  const auto* head = reinterpret_cast<const unsigned char*>(bytes.data());
  static const unsigned char kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (std::memcmp(head, kSignature, 8) != 0 || std::memcmp(head + 12, "IHDR", 4) != 0) return std::nullopt;
  auto be32 = [&](int at) {
    return (int64_t{head[at]} << 24) | (int64_t{head[at + 1]} << 16) | (int64_t{head[at + 2]} << 8) | head[at + 3];
  };
  return std::make_pair(be32(16), be32(20));
}

// ---------------------------------------------------------------------------------------------
// PNG decoding with libpng, for palette PNGs: OpenCV expands the palette to colours, while the
// class ids are the indices. Every PNG goes through here so that all of them decode one way.

namespace {

// libpng reports errors by longjmp. The jumps land in read_png_header / read_png_pixels, whose
// frames hold no C++ object a jump could skip; the message waits here for the caller.
struct PngSource {
  const std::string* bytes;
  size_t offset;
  char error[256];
};

[[noreturn]] void on_png_error(png_structp png, png_const_charp message) {
  auto* source = static_cast<PngSource*>(png_get_error_ptr(png));
  std::snprintf(source->error, sizeof source->error, "%s", message);
  png_longjmp(png, 1);
}

// Warnings are about ancillary chunks (colour profiles, text) that label maps do not use.
void on_png_warning(png_structp, png_const_charp) {}

void read_from_source(png_structp png, png_bytep out, size_t length) {
  auto* source = static_cast<PngSource*>(png_get_io_ptr(png));
  if (length > source->bytes->size() - source->offset) png_error(png, "unexpected end of file (truncated)");
  std::memcpy(out, source->bytes->data() + source->offset, length);
  source->offset += length;
}

struct PngLayout {
  png_uint_32 width, height;
  int depth, channels;  // after the transforms below: 8 or 16 bits, 1 or 3 channels
  size_t row_bytes;
};

// Reads the header and asks for: palette indices one byte each (not colours), grey below 8 bits
// scaled to 8 bits and alpha dropped (as OpenCV reads them, so grey maps decode as before), 16-bit
// samples in host order. False on a libpng error.
bool read_png_header(png_structp png, png_infop info, PngLayout* layout) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_info(png, info);
  const int color_type = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
  if (color_type == PNG_COLOR_TYPE_PALETTE) {
    if (depth < 8) png_set_packing(png);
  } else {
    if (color_type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (color_type & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (depth == 16) png_set_swap(png);  // PNG samples are big-endian
#endif
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  layout->width = png_get_image_width(png, info);
  layout->height = png_get_image_height(png, info);
  layout->depth = png_get_bit_depth(png, info);
  layout->channels = png_get_channels(png, info);
  layout->row_bytes = png_get_rowbytes(png, info);
  return true;
}

bool read_png_pixels(png_structp png, png_infop info, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  png_read_end(png, nullptr);  // a file cut after the pixels is refused too, as OpenCV does
  return true;
}

cv::Mat decode_png(const std::string& path, const std::string& bytes) {
  PngSource source{&bytes, 0, {}};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &source, on_png_error, on_png_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  struct Release {
    png_structp& png;
    png_infop& info;
    ~Release() { png_destroy_read_struct(&png, &info, nullptr); }
  } release{png, info};
  if (!png || !info) fail("{}: cannot decode PNG: out of memory", path);
  png_set_read_fn(png, &source, read_from_source);

  PngLayout layout{};
  if (!read_png_header(png, info, &layout)) fail("{}: cannot decode PNG: {}", path, source.error);
  // OpenCV's limit on decoded pixels: a forged header must not ask for terabytes.
  if (static_cast<uint64_t>(layout.width) * layout.height > (uint64_t{1} << 30))
    fail("{}: {}x{} pixels is too large for a label map", path, layout.width, layout.height);
  const int type = CV_MAKETYPE(layout.depth == 16 ? CV_16U : CV_8U, layout.channels);
  if ((layout.depth != 8 && layout.depth != 16) || (layout.channels != 1 && layout.channels != 3))
    fail("{}: cannot decode PNG: unexpected layout ({} channels of {} bits)", path, layout.channels, layout.depth);
  cv::Mat image(static_cast<int>(layout.height), static_cast<int>(layout.width), type);
  if (layout.row_bytes != image.step[0])
    fail("{}: cannot decode PNG: {} bytes per row, expected {}", path, layout.row_bytes, image.step[0]);
  std::vector<png_bytep> rows(layout.height);
  for (png_uint_32 y = 0; y < layout.height; ++y) rows[y] = image.ptr(static_cast<int>(y));
  if (!read_png_pixels(png, info, rows.data())) fail("{}: cannot decode PNG: {}", path, source.error);
  return image;
}

}  // namespace

Tensor read_label_map(const std::string& path, int width, int height) {
  if (!std::filesystem::exists(path)) fail("{}: no such file", path);
  return decode_label_map(read_file(path), path, width, height);
}

Tensor decode_label_map(const std::string& bytes, const std::string& path, int width, int height) {
  if (bytes.empty()) fail("{}: empty file (not an image)", path);
  const bool png = bytes.size() >= 8 && png_sig_cmp(reinterpret_cast<png_const_bytep>(bytes.data()), 0, 8) == 0;
  cv::Mat m = png ? decode_png(path, bytes) : imdecode_checked(bytes, path, cv::IMREAD_UNCHANGED);
  if (m.channels() == 3 || m.channels() == 4) {
    std::vector<cv::Mat> channels;
    cv::split(m, channels);
    if (cv::countNonZero(channels[0] != channels[1]) || cv::countNonZero(channels[0] != channels[2]))
      fail(
          "{}: label map has colour pixels (a true-colour image); expected a grey or palette image whose values "
          "are class ids",
          path);
    m = channels[0];
  } else if (m.channels() != 1) {
    fail("{}: label map has {} channels; expected 1", path, m.channels());
  }
  if (m.depth() != CV_8U && m.depth() != CV_16U) fail("{}: label map must be 8- or 16-bit integers", path);
  cv::Mat wide;
  m.convertTo(wide, CV_32S);
  Tensor labels = torch::from_blob(wide.data, {1, wide.rows, wide.cols}, torch::kInt32).to(torch::kInt64);
  // Not OpenCV's INTER_NEAREST_EXACT: on a 4x reduction (OpenCV 4.6) it takes pixel 1 of every 4, PIL pixel 2.
  if (width > 0 && height > 0 && (wide.cols != width || wide.rows != height))
    labels = resize_labels_nearest(labels, height, width);
  return labels;
}

// ---------------------------------------------------------------------------------------------
// Checks and conditioning

void check_label_range(const Tensor& labels, int num_labels, int64_t ignore_label, const std::string& source_name) {
  const Tensor l = labels.to(torch::kInt64);  // compared in int64: a uint8 map would wrap `ignore_label`
  const Tensor bad = ((l < 0) | (l >= num_labels)) & (l != ignore_label);
  if (bad.any().item<bool>())
    fail("{}: label value {} outside 0..{} (unlabelled = {})", source_name, l.masked_select(bad)[0].item<int64_t>(),
         num_labels - 1, ignore_label);
}

Tensor resize_labels_nearest(const Tensor& labels, int64_t height, int64_t width) {
  TORCH_CHECK(labels.dim() == 3, "labels must be [N, H, W], got ", labels.sizes());
  const int64_t H = labels.size(1), W = labels.size(2);
  if (H == height && W == width) return labels;
  // PIL NEAREST samples the source pixel under the target pixel's centre.
  auto index = [](int64_t out, int64_t in) {
    return torch::floor((torch::arange(out, torch::kFloat64) + 0.5) * (static_cast<double>(in) / out))
        .to(torch::kInt64)
        .clamp_max(in - 1);
  };
  return labels.index_select(1, index(height, H).to(labels.device()))
      .index_select(2, index(width, W).to(labels.device()));
}

Tensor instance_edges(const Tensor& instance) {
  TORCH_CHECK(instance.dim() == 3, "instance map must be [N, H, W], got ", instance.sizes());
  Tensor edge = torch::zeros(instance.sizes(), instance.options().dtype(torch::kBool));
  using torch::indexing::None;
  using torch::indexing::Slice;
  // Horizontal neighbours: mark both pixels of a differing pair; then vertical.
  Tensor dh = instance.index({Slice(), Slice(), Slice(1, None)}) != instance.index({Slice(), Slice(), Slice(None, -1)});
  Tensor dv = instance.index({Slice(), Slice(1, None), Slice()}) != instance.index({Slice(), Slice(None, -1), Slice()});
  edge.index({Slice(), Slice(), Slice(1, None)}) |= dh;
  edge.index({Slice(), Slice(), Slice(None, -1)}) |= dh;
  edge.index({Slice(), Slice(1, None), Slice()}) |= dv;
  edge.index({Slice(), Slice(None, -1), Slice()}) |= dv;
  return edge.unsqueeze(1).to(torch::kFloat32);
}

Tensor one_hot_labels(const Tensor& labels, int num_classes, int64_t ignore_label, const Tensor& instance) {
  TORCH_CHECK(labels.dim() == 3, "label map must be [N, H, W], got ", labels.sizes());
  Tensor l = labels.to(torch::kInt64);
  check_label_range(l, num_classes, ignore_label, "label map");
  Tensor ignored = l == ignore_label;
  Tensor safe = torch::where(ignored, torch::zeros_like(l), l);
  Tensor one_hot = torch::one_hot(safe, num_classes).permute({0, 3, 1, 2}).to(torch::kFloat32);
  one_hot = one_hot * (~ignored).unsqueeze(1).to(torch::kFloat32);
  if (instance.defined()) one_hot = torch::cat({one_hot, instance_edges(instance)}, 1);
  return one_hot.contiguous();
}

std::array<uint8_t, 3> label_color(int id) {
  // Hues by the golden angle, alternating lightness: neighbouring ids look different.
  const double hue = std::fmod(id * 137.508, 360.0) / 60.0, v = id % 2 ? 0.95 : 0.7, s = 0.75;
  const double c = v * s, x = c * (1 - std::fabs(std::fmod(hue, 2.0) - 1)), m = v - c;
  double r = 0, g = 0, b = 0;
  switch (static_cast<int>(hue)) {
    case 0:
      r = c, g = x;
      break;
    case 1:
      r = x, g = c;
      break;
    case 2:
      g = c, b = x;
      break;
    case 3:
      g = x, b = c;
      break;
    case 4:
      r = x, b = c;
      break;
    default:
      r = c, b = x;
      break;
  }
  auto byte = [](double v) { return static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 1.0) * 255)); };
  return {byte(r + m), byte(g + m), byte(b + m)};
}

torch::Tensor colorize_labels(const torch::Tensor& labels, int64_t ignore_label) {
  torch::Tensor l = labels.dim() == 3 ? labels[0] : labels;
  if (l.dim() != 2) fail("colorize_labels: expected [H, W] labels, got {}", fmt::join(labels.sizes(), "x"));
  torch::Tensor palette = torch::empty({256, 3});
  for (int id = 0; id < 256; ++id) {
    const auto rgb = label_color(id);
    palette[id] = torch::tensor({rgb[0] / 127.5 - 1, rgb[1] / 127.5 - 1, rgb[2] / 127.5 - 1});
  }
  if (ignore_label >= 0 && ignore_label < 256) palette[ignore_label].fill_(0.0);
  return palette.index_select(0, l.to(torch::kInt64).clamp(0, 255).flatten())
      .view({l.size(0), l.size(1), 3})
      .permute({2, 0, 1})
      .contiguous();
}

}  // namespace iidm

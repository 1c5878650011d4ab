// Label maps: one-hot and instance edges by hand, PIL's nearest resize, the range check's message;
// PNG label maps as the references' PIL loader reads them (palette PNGs give their indices at
// every bit depth, grey PNGs their values as before), true-colour and damaged files refused naming
// the file; and `iidm generate` giving the same image for a palette mask as for the grey one.
#include <png.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <string>
#include <vector>

#include "core/fs.h"
#include "core/labels.h"
#include "test_util.h"
#include "tiny_models.h"

namespace iidm {
namespace {

TEST(Labels, OneHotIgnoreValueAndRangeChecks) {
  torch::Tensor labels = torch::tensor({0, 2, 255, 1}, torch::kInt64).view({1, 2, 2});
  torch::Tensor y = one_hot_labels(labels, 3);
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{1, 3, 2, 2}));
  EXPECT_EQ(y.sum(1)[0][1][0].item<float>(), 0.f);  // unlabelled pixel: zero vector
  EXPECT_EQ(y[0][2][0][1].item<float>(), 1.f);
  test::expect_error(
      [&] {
        one_hot_labels(torch::tensor({0, 3}, torch::kInt64).view({1, 1, 2}), 3);
      },
      {"value 3", "outside 0..2"});
}

TEST(Labels, InstanceEdgesByHand) {
  // Two instances split down the middle: the two middle columns are edges, both sides marked.
  torch::Tensor inst = torch::tensor({1, 1, 2, 2, 1, 1, 2, 2}, torch::kInt64).view({1, 2, 4});
  torch::Tensor edges = instance_edges(inst);
  torch::Tensor expected = torch::tensor({0.f, 1.f, 1.f, 0.f, 0.f, 1.f, 1.f, 0.f}).view({1, 1, 2, 4});
  EXPECT_TRUE(torch::equal(edges, expected));
}

TEST(Labels, NearestResizeSamplesPixelCentresAsPil) {
  // PIL: target pixel i takes source floor((i + 0.5) * in / out).
  const torch::Tensor row = torch::arange(5, torch::kInt64).view({1, 1, 5});
  EXPECT_TRUE(torch::equal(resize_labels_nearest(row, 1, 2), torch::tensor({1, 3}, torch::kInt64).view({1, 1, 2})));
  EXPECT_TRUE(torch::equal(resize_labels_nearest(row, 1, 3), torch::tensor({0, 2, 4}, torch::kInt64).view({1, 1, 3})));
  const torch::Tensor two = torch::tensor({7, 9}, torch::kInt64).view({1, 2, 1});
  EXPECT_TRUE(
      torch::equal(resize_labels_nearest(two, 5, 1), torch::tensor({7, 7, 9, 9, 9}, torch::kInt64).view({1, 5, 1})));
  EXPECT_TRUE(torch::equal(resize_labels_nearest(row, 1, 5), row));
  // A 4x reduction takes the pixel right of each block's centre (OpenCV 4.6's "exact" nearest takes the left one).
  const torch::Tensor eight = torch::arange(8, torch::kInt64).view({1, 1, 8});
  EXPECT_TRUE(torch::equal(resize_labels_nearest(eight, 1, 2), torch::tensor({2, 6}, torch::kInt64).view({1, 1, 2})));
}

TEST(Labels, RangeCheckNamesTheSourceAndTheFirstBadValue) {
  const torch::Tensor ok = torch::tensor({0, 4, 255, 1}, torch::kUInt8).view({2, 2});
  check_label_range(ok, 5, 255, "ok.png");
  try {
    check_label_range(torch::tensor({0, 7, 9}, torch::kInt64), 5, 255, "labels/a.png");
    ADD_FAILURE() << "expected iidm::Error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "labels/a.png: label value 7 outside 0..4 (unlabelled = 255)");
  }
  test::expect_error(
      [] {
        check_label_range(torch::tensor({-1, 0}, torch::kInt64), 5, 255, "b.png");
      },
      {"b.png", "value -1"});
  // The unlabelled value is compared in int64: 255 in a uint8 map is not the unlabelled value 511.
  test::expect_error([] { check_label_range(torch::tensor({255}, torch::kUInt8), 5, 511, "c.png"); },
                     {"c.png", "value 255", "(unlabelled = 511)"});
}

// ---------------------------------------------------------------------------------------------
// PNG files written with libpng, so every colour type and bit depth can be made.

struct PngImage {
  int width = 0, height = 0, color_type = PNG_COLOR_TYPE_GRAY, bit_depth = 8;
  std::vector<int> samples;        // row-major, interleaved channels, one entry per sample
  std::vector<png_color> palette;  // PNG_COLOR_TYPE_PALETTE only
};

void append_to_string(png_structp png, png_bytep data, size_t length) {
  static_cast<std::string*>(png_get_io_ptr(png))->append(reinterpret_cast<const char*>(data), length);
}

// libpng errors jump back here; this frame holds no object a jump could skip.
bool encode_rows(png_structp png, png_infop info, const PngImage* image, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_IHDR(png, info, image->width, image->height, image->bit_depth, image->color_type, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (image->color_type == PNG_COLOR_TYPE_PALETTE)
    png_set_PLTE(png, info, image->palette.data(), static_cast<int>(image->palette.size()));
  png_write_info(png, info);
  if (image->bit_depth < 8) png_set_packing(png);  // rows hold one byte per sample
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  return true;
}

std::string encode_png(const PngImage& image) {
  const int channels = image.color_type == PNG_COLOR_TYPE_GRAY_ALPHA  ? 2
                       : image.color_type == PNG_COLOR_TYPE_RGB       ? 3
                       : image.color_type == PNG_COLOR_TYPE_RGB_ALPHA ? 4
                                                                      : 1;
  const size_t per_row = static_cast<size_t>(image.width) * channels;
  EXPECT_EQ(image.samples.size(), per_row * image.height);
  const size_t bytes_per_sample = image.bit_depth == 16 ? 2 : 1;
  std::vector<uint8_t> buffer(per_row * image.height * bytes_per_sample);
  for (size_t i = 0; i < image.samples.size(); ++i) {
    if (bytes_per_sample == 2) {  // big-endian, as PNG stores it
      buffer[2 * i] = static_cast<uint8_t>(image.samples[i] >> 8);
      buffer[2 * i + 1] = static_cast<uint8_t>(image.samples[i] & 0xff);
    } else {
      buffer[i] = static_cast<uint8_t>(image.samples[i]);
    }
  }
  std::vector<png_bytep> rows(image.height);
  for (int y = 0; y < image.height; ++y) rows[y] = buffer.data() + y * per_row * bytes_per_sample;
  std::string out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_set_write_fn(png, &out, append_to_string, nullptr);
  const bool ok = encode_rows(png, info, &image, rows.data());
  png_destroy_write_struct(&png, &info);
  EXPECT_TRUE(ok) << "libpng could not write the test image";
  return out;
}

std::string write_png(const test::TempDir& dir, const std::string& name, const PngImage& image) {
  const std::string path = dir.file(name);
  write_file_atomic(path, encode_png(image));
  return path;
}

// Distinct, clearly non-grey colours: OpenCV would expand these and the old reader refused them.
std::vector<png_color> colourful_palette(int entries) {
  std::vector<png_color> palette;
  for (int i = 0; i < entries; ++i)
    palette.push_back({static_cast<png_byte>(40 + (i * 67) % 200), static_cast<png_byte>((i * 151 + 90) % 256),
                       static_cast<png_byte>(255 - (i * 29) % 180)});
  return palette;
}

torch::Tensor as_tensor(const std::vector<int>& values, int height, int width) {
  return torch::tensor(std::vector<int64_t>(values.begin(), values.end()), torch::kInt64).view({1, height, width});
}

TEST(LabelMaps, PalettePngsGiveTheirIndicesAtEveryBitDepth) {
  test::TempDir dir;
  for (int depth : {1, 2, 4, 8}) {
    SCOPED_TRACE(depth);
    const int entries = std::min(1 << depth, 150);
    PngImage image{7, 5, PNG_COLOR_TYPE_PALETTE, depth, {}, colourful_palette(entries)};  // odd width: padded rows
    for (int y = 0; y < image.height; ++y)
      for (int x = 0; x < image.width; ++x) image.samples.push_back((x * 3 + y * 5 + x * y) % entries);
    const std::string path = write_png(dir, fmt::format("palette{}.png", depth), image);
    const torch::Tensor labels = read_label_map(path);
    EXPECT_EQ(labels.scalar_type(), torch::kInt64);
    EXPECT_TRUE(torch::equal(labels, as_tensor(image.samples, image.height, image.width))) << labels;
  }
}

TEST(LabelMaps, PaletteAndGreyMapsOfTheSameIdsReadAndResizeAlikeAsPil) {
  test::TempDir dir;
  PngImage palette{12, 9, PNG_COLOR_TYPE_PALETTE, 4, {}, colourful_palette(16)};
  for (int i = 0; i < 12 * 9; ++i) palette.samples.push_back((i * 7) % 16);
  PngImage grey = palette;
  grey.color_type = PNG_COLOR_TYPE_GRAY;
  grey.bit_depth = 8;
  const std::string p = write_png(dir, "p.png", palette), g = write_png(dir, "g.png", grey);
  EXPECT_TRUE(torch::equal(read_label_map(p), read_label_map(g)));
  EXPECT_TRUE(torch::equal(read_label_map(p, 5, 7), read_label_map(g, 5, 7)));
  EXPECT_TRUE(torch::equal(read_label_map(p, 5, 7), resize_labels_nearest(read_label_map(p), 7, 5)));
  PngImage ramp{8, 8, PNG_COLOR_TYPE_GRAY, 8, {}, {}};
  for (int i = 0; i < 64; ++i) ramp.samples.push_back(i);
  const torch::Tensor quarter = read_label_map(write_png(dir, "ramp.png", ramp), 2, 2);
  EXPECT_TRUE(torch::equal(quarter, torch::tensor({18, 22, 50, 54}, torch::kInt64).view({1, 2, 2}))) << quarter;
}

TEST(LabelMaps, GreyPngsReadAsOpenCvReadsThemAsBefore) {
  test::TempDir dir;
  struct Case {
    int color_type, depth;
  };
  for (const Case c : {Case{PNG_COLOR_TYPE_GRAY, 8}, Case{PNG_COLOR_TYPE_GRAY, 16}, Case{PNG_COLOR_TYPE_GRAY, 4},
                       Case{PNG_COLOR_TYPE_GRAY, 2}, Case{PNG_COLOR_TYPE_GRAY, 1}, Case{PNG_COLOR_TYPE_GRAY_ALPHA, 8},
                       Case{PNG_COLOR_TYPE_RGB, 8}, Case{PNG_COLOR_TYPE_RGB_ALPHA, 16}}) {
    SCOPED_TRACE(fmt::format("colour type {}, {} bits", c.color_type, c.depth));
    PngImage image{9, 6, c.color_type, c.depth, {}, {}};
    const int levels = 1 << c.depth;
    for (int i = 0; i < image.width * image.height; ++i) {
      const int value = c.depth == 16 ? (i * 1237) % 65536 : (i * 5) % levels;
      switch (c.color_type) {
        case PNG_COLOR_TYPE_GRAY:
          image.samples.push_back(value);
          break;
        case PNG_COLOR_TYPE_GRAY_ALPHA:
          image.samples.insert(image.samples.end(), {value, i % levels});
          break;
        case PNG_COLOR_TYPE_RGB:
          image.samples.insert(image.samples.end(), {value, value, value});
          break;
        default:
          image.samples.insert(image.samples.end(), {value, value, value, 65535 - value});
          break;
      }
    }
    const std::string path = write_png(dir, "grey.png", image);
    cv::Mat before = cv::imread(path, cv::IMREAD_UNCHANGED);  // the reader used until palette support
    ASSERT_FALSE(before.empty());
    cv::extractChannel(before, before, 0);
    before.convertTo(before, CV_32S);
    const torch::Tensor expected =
        torch::from_blob(before.data, {1, before.rows, before.cols}, torch::kInt32).to(torch::kInt64);
    EXPECT_TRUE(torch::equal(read_label_map(path), expected));
    if (c.depth >= 8 && c.color_type != PNG_COLOR_TYPE_GRAY_ALPHA) {  // values kept as stored
      std::vector<int> first_channel;
      const size_t channels = image.samples.size() / (image.width * image.height);
      for (size_t i = 0; i < image.samples.size(); i += channels) first_channel.push_back(image.samples[i]);
      EXPECT_TRUE(torch::equal(read_label_map(path), as_tensor(first_channel, image.height, image.width)));
    }
  }
}

TEST(LabelMaps, TrueColourMapIsRefusedNamingTheFile) {
  test::TempDir dir;
  PngImage image{4, 3, PNG_COLOR_TYPE_RGB, 8, std::vector<int>(4 * 3 * 3, 5), {}};
  image.samples[7] = 200;  // one pixel is not grey
  const std::string path = write_png(dir, "colour.png", image);
  test::expect_error([&] { read_label_map(path); }, {path, "colour pixels", "grey or palette"});
}

TEST(LabelMaps, DamagedPngIsRefusedNamingTheFile) {
  test::TempDir dir;
  PngImage image{64, 48, PNG_COLOR_TYPE_PALETTE, 8, {}, colourful_palette(150)};
  for (int i = 0; i < 64 * 48; ++i) image.samples.push_back((i * 2654435761u >> 7) % 150);  // incompressible
  const std::string bytes = encode_png(image);
  const size_t idat = bytes.find("IDAT");
  ASSERT_NE(idat, std::string::npos);
  std::string flipped = bytes;
  flipped[idat + 40] = static_cast<char>(flipped[idat + 40] ^ 0x55);  // pixel data no longer matches its CRC
  const std::vector<std::pair<std::string, std::string>> damaged = {
      {"half.png", bytes.substr(0, bytes.size() / 2)},
      {"no-end.png", bytes.substr(0, bytes.size() - 12)},  // cut before IEND
      {"header-only.png", bytes.substr(0, 20)},
      {"crc.png", flipped},
  };
  for (const auto& [name, content] : damaged) {
    SCOPED_TRACE(name);
    const std::string path = dir.file(name);
    write_file_atomic(path, content);
    test::expect_error([&] { read_label_map(path); }, {path, "cannot decode PNG"});
  }
  write_file_atomic(dir.file("whole.png"), bytes);
  EXPECT_EQ(read_label_map(dir.file("whole.png")).size(2), 64);  // the undamaged file reads
}

// ---------------------------------------------------------------------------------------------
// `iidm generate` as users run it, on a palette mask and on the grey mask of the same class ids.

int iidm(const std::string& args, const std::string& log) {
  const int status = std::system(("\"" IIDM_CLI "\" --threads 1 " + args + " > \"" + log + "\" 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(GenerateCli, PaletteMaskGivesTheSameImageAsTheGreyMask) {
  test::TempDir dir;
  const test::TinyModel model = test::write_tiny_model(dir, true);
  const int W = 32, H = 24;
  PngImage palette{W, H, PNG_COLOR_TYPE_PALETTE, 8, {}, colourful_palette(29)};  // the 29 landscape classes
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) palette.samples.push_back(y < 8 ? 1 : y < 14 ? (x < 16 ? 0 : 5) : x % 7 == 0 ? 28 : 2);
  PngImage grey = palette;
  grey.color_type = PNG_COLOR_TYPE_GRAY;
  const std::string palette_mask = write_png(dir, "palette.png", palette), grey_mask = write_png(dir, "grey.png", grey);
  cv::Mat style(H, W, CV_8UC3);
  cv::RNG(5).fill(style, cv::RNG::UNIFORM, 0, 255);
  cv::imwrite(dir.file("style.png"), style);

  // The outputs share their name (it seeds the noise), so they go to two folders.
  std::filesystem::create_directories(dir.file("from-palette"));
  std::filesystem::create_directories(dir.file("from-grey"));
  auto generate = [&](const std::string& mask, const std::string& out) {
    return iidm("generate --model " + model.config + " --unet " + model.unet + " --autoencoder " + model.autoencoder +
                    " --mask " + mask + " --style " + dir.file("style.png") + " --out " + out +
                    " --preset fast --seed 3",
                dir.file("log.txt"));
  };
  ASSERT_EQ(generate(palette_mask, dir.file("from-palette/out.png")), 0) << read_file(dir.file("log.txt"));
  ASSERT_EQ(generate(grey_mask, dir.file("from-grey/out.png")), 0) << read_file(dir.file("log.txt"));
  const std::string a = read_file(dir.file("from-palette/out.png")), b = read_file(dir.file("from-grey/out.png"));
  EXPECT_GT(a.size(), 100u);
  EXPECT_TRUE(a == b) << "the palette mask gave a different image";

  // A palette index the model does not have is refused before generating, naming the file.
  palette.samples[3] = 29;
  palette.palette = colourful_palette(30);
  const std::string bad_mask = write_png(dir, "bad.png", palette);
  EXPECT_NE(generate(bad_mask, dir.file("bad-out.png")), 0);
  const std::string log = read_file(dir.file("log.txt"));
  EXPECT_NE(log.find(bad_mask + ": label value 29 outside 0..28"), std::string::npos) << log;
  EXPECT_FALSE(std::filesystem::exists(dir.file("bad-out.png")));
}

}  // namespace
}  // namespace iidm

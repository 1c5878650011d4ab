#pragma once
// Label maps: integer class ids per pixel. Reading them from files (grey and palette PNGs, as the
// references' PIL loader sees them), checking their range, resizing them as PIL does, and turning
// them into the U-Net's conditioning (one-hot channels, SDM's instance edges). Errors name the file.
#include <torch/types.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace iidm {

// Reads a label map as [1, H, W] int64, resized with PIL's nearest neighbour when width and height
// are > 0 and differ from the file's. Palette ("P" mode) PNGs give their palette indices, as PIL
// does (ADE20K, Cityscapes and VOC annotations); grey PNGs (8- or 16-bit) give their values. A
// colour image whose channels are all equal is taken as grey; one with colour pixels is refused.
// Other formats OpenCV decodes are read like grey ones.
torch::Tensor read_label_map(const std::string& path, int width = 0, int height = 0);
// The same from a file's bytes (an upload); `source_name` starts every error message.
torch::Tensor decode_label_map(const std::string& bytes, const std::string& source_name, int width = 0, int height = 0);

// The (width, height) a PNG file's header declares, read without decoding it (so an oversized map
// can be refused before its pixels are allocated); nullopt for other formats and unreadable files.
std::optional<std::pair<int64_t, int64_t>> png_dimensions(const std::string& path);
// The same from a file's first bytes (at least 24 of them).
std::optional<std::pair<int64_t, int64_t>> png_dimensions_of(const std::string& bytes);

// Refuses a label map with a value outside [0, num_labels) that is not `ignore_label`; the message
// starts with `source_name` (the file) and gives the first bad value.
void check_label_range(const torch::Tensor& labels, int num_labels, int64_t ignore_label,
                       const std::string& source_name);

// Nearest-neighbour resize of integer maps [N, H, W] with PIL's sampling (pixel centres), as the
// references resize label maps.
torch::Tensor resize_labels_nearest(const torch::Tensor& labels, int64_t height, int64_t width);

// One-hot label map [N, classes(+1), H, W] from integer labels [N, H, W]. Label `ignore_label`
// (unlabelled pixels of sparse layouts) gives an all-zero vector; any other value outside
// [0, classes) is an error. With `instance` ([N, H, W] ids) an edge channel is appended.
torch::Tensor one_hot_labels(const torch::Tensor& labels, int num_classes, int64_t ignore_label = 255,
                             const torch::Tensor& instance = {});
// SDM's instance edge map [N, 1, H, W]: a pixel is an edge if it differs from a 4-neighbour.
torch::Tensor instance_edges(const torch::Tensor& instance);

// A label map [H, W] (or [1, H, W]) shown in colour: a fixed, well-spread colour per class id
// (grey for `ignore_label`), as [3, H, W] in [-1, 1]; for sample grids and previews.
torch::Tensor colorize_labels(const torch::Tensor& labels, int64_t ignore_label = 255);
// That colour of one class id, as 8-bit RGB (what the editor's palette shows).
std::array<uint8_t, 3> label_color(int id);

}  // namespace iidm

#pragma once
// Image and label-map files <-> tensors. Images are RGB in [-1, 1] as [1, 3, H, W] float32;
// label maps are single-channel integer PNGs as [1, H, W] int64. Errors name the file.
#include <torch/types.h>

#include <string>

namespace iidm {

// Reads any image OpenCV can decode (8-bit; grey is expanded to RGB). Resized with area/bicubic
// interpolation to width x height when both are > 0 and differ from the file.
torch::Tensor read_image(const std::string& path, int width = 0, int height = 0);
// Writes [1 or none, 3, H, W] in [-1, 1] (clamped, rounded) as PNG/JPEG by extension, atomically.
void write_image(const std::string& path, const torch::Tensor& image, int jpeg_quality = 95);

// Reads a label map: a single-channel 8- or 16-bit image whose values are class ids (a 3-channel
// file whose channels are equal is accepted as grey). Resized with nearest neighbour when asked.
torch::Tensor read_label_map(const std::string& path, int width = 0, int height = 0);

// A label map [H, W] (or [1, H, W]) shown in colour: a fixed, well-spread colour per class id
// (grey for `ignore_label`), as [3, H, W] in [-1, 1]; for sample grids and previews.
torch::Tensor colorize_labels(const torch::Tensor& labels, int64_t ignore_label = 255);

}  // namespace iidm

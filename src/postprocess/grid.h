#pragma once
// Image grids for looking at results: training samples, reconstructions, ablation examples.
#include <torch/types.h>

#include <vector>

namespace iidm {

// Tiles [3, H, W] images (values in [-1, 1]) row by row into one [3, rows*H, cols*W] image. Every
// row must have the same number of tiles and every tile the same size; errors say which differs.
torch::Tensor image_grid(const std::vector<std::vector<torch::Tensor>>& rows);

}  // namespace iidm

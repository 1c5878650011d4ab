#pragma once
// Colour-histogram similarity: how much of a style reference's palette an image carries.
#include <torch/types.h>

namespace iidm {

// Per-channel histograms (`bins` per channel over [-1, 1], normalised) of [3, H, W] images,
// concatenated, compared with Pearson's correlation (OpenCV's HISTCMP_CORREL): 1 = same palette.
double color_histogram_correlation(const torch::Tensor& a, const torch::Tensor& b, int bins = 32);

}  // namespace iidm

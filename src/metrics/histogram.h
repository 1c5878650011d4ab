#pragma once
// Colour-histogram similarity: how much of a style reference's palette an image carries.
// Binning: per RGB channel, `bins` equal bins over the 8-bit range ([-1, 1] here), each channel's
// histogram normalised to sum 1, the three concatenated; compared with Pearson's correlation
// (OpenCV's HISTCMP_CORREL): 1 = the same palette, about 0 = unrelated, negative = opposite.
#include <torch/types.h>

namespace iidm {

inline constexpr int kHistogramBins = 32;

// [3, H, W] in [-1, 1] -> [3 * bins] float64.
torch::Tensor color_histogram(const torch::Tensor& image, int bins = kHistogramBins);
// Pearson's correlation of two histograms (0 when either is constant).
double histogram_correlation(const torch::Tensor& a, const torch::Tensor& b);
// color_histogram of both, compared.
double color_histogram_correlation(const torch::Tensor& a, const torch::Tensor& b, int bins = kHistogramBins);

}  // namespace iidm

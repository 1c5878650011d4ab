#include "metrics/histogram.h"

#include <torch/torch.h>

#include "core/error.h"

namespace iidm {

torch::Tensor color_histogram(const torch::Tensor& image, int bins) {
  if (image.dim() != 3 || image.size(0) != 3)
    fail("colour histogram: expected a [3, H, W] image, got {}", fmt::join(image.sizes(), "x"));
  std::vector<torch::Tensor> parts;
  for (int c = 0; c < 3; ++c) {
    torch::Tensor h = torch::histc(image[c].to(torch::kCPU, torch::kFloat32).contiguous(), bins, -1.0, 1.0);
    parts.push_back(h / h.sum().clamp_min(1));
  }
  return torch::cat(parts).to(torch::kFloat64);
}

double histogram_correlation(const torch::Tensor& a, const torch::Tensor& b) {
  const torch::Tensor ha = a - a.mean(), hb = b - b.mean();
  const double denom = std::sqrt((ha * ha).sum().item<double>() * (hb * hb).sum().item<double>());
  return denom > 0 ? (ha * hb).sum().item<double>() / denom : 0.0;
}

double color_histogram_correlation(const torch::Tensor& a, const torch::Tensor& b, int bins) {
  return histogram_correlation(color_histogram(a, bins), color_histogram(b, bins));
}

}  // namespace iidm

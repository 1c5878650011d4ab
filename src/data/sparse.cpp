#include "data/sparse.h"

#include <torch/torch.h>

#include <cmath>

#include "core/error.h"

namespace iidm {

torch::Tensor classwise_sparse_mask(const torch::Tensor& labels, const SparseMaskOptions& o, at::Generator generator) {
  TORCH_CHECK(labels.dim() == 2, "sparse mask: labels must be [H, W], got ", labels.sizes());
  if (!(o.share >= 0 && o.share <= 1)) fail("sparse mask: share must be in [0, 1], got {}", o.share);
  if (o.pattern_cells < 1) fail("sparse mask: pattern_cells must be positive, got {}", o.pattern_cells);
  torch::Tensor out = labels.to(torch::kInt64).clone();
  const int64_t H = labels.size(0), W = labels.size(1);
  const int64_t gw = o.pattern_cells, gh = std::max<int64_t>(1, o.pattern_cells * H / std::max<int64_t>(W, 1));
  torch::Tensor classes = std::get<0>(torch::_unique(out.flatten()));
  auto flat = out.view({-1});
  for (int64_t i = 0; i < classes.size(0); ++i) {
    const int64_t c = classes[i].item<int64_t>();
    if (c == o.ignore_label) continue;
    // A smooth pattern of this class's own: a coarse random grid, bilinearly upsampled, plus a
    // little fine noise to break ties; the class's pixels with the lowest values are removed.
    torch::Tensor grid = torch::rand({1, 1, gh + 1, gw + 1}, generator);
    torch::Tensor field = torch::nn::functional::interpolate(grid, torch::nn::functional::InterpolateFuncOptions()
                                                                       .size(std::vector<int64_t>{H, W})
                                                                       .mode(torch::kBilinear)
                                                                       .align_corners(true));
    field = field.view({-1}) + 1e-3 * torch::rand({H * W}, generator);
    torch::Tensor where = (flat == c).nonzero().view({-1});
    const int64_t k = std::llround(o.share * where.size(0));
    if (k == 0) continue;
    torch::Tensor order = field.index_select(0, where).argsort();
    flat.index_fill_(0, where.index_select(0, order.narrow(0, 0, k)), o.ignore_label);
  }
  return out;
}

}  // namespace iidm

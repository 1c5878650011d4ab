#include "postprocess/grid.h"

#include <torch/torch.h>

#include "core/error.h"

namespace iidm {

torch::Tensor image_grid(const std::vector<std::vector<torch::Tensor>>& rows) {
  if (rows.empty() || rows[0].empty()) fail("image grid: no images");
  const auto tile = rows[0][0].sizes().vec();
  if (tile.size() != 3) fail("image grid: tiles must be [C, H, W], got {}", fmt::join(tile, "x"));
  std::vector<torch::Tensor> lines;
  for (size_t r = 0; r < rows.size(); ++r) {
    if (rows[r].size() != rows[0].size())
      fail("image grid: row {} has {} images, row 0 has {}", r, rows[r].size(), rows[0].size());
    for (size_t c = 0; c < rows[r].size(); ++c)
      if (rows[r][c].sizes().vec() != tile)
        fail("image grid: image ({}, {}) is {}, the first is {}", r, c, fmt::join(rows[r][c].sizes(), "x"),
             fmt::join(tile, "x"));
    std::vector<torch::Tensor> row;
    for (const auto& image : rows[r]) row.push_back(image.detach().to(torch::kCPU, torch::kFloat32));
    lines.push_back(torch::cat(row, 2));  // side by side: along W
  }
  return torch::cat(lines, 1);  // rows stacked: along H
}

}  // namespace iidm

#include "data/crops.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include "core/error.h"

namespace iidm {

using torch::Tensor;

std::vector<Tensor> random_crops(const std::vector<Tensor>& maps, const Tensor& index, int64_t size, bool flip,
                                 at::Generator& generator) {
  if (maps.empty()) fail("random_crops: no maps given");
  const int64_t H = maps[0].size(-2), W = maps[0].size(-1), B = index.numel();
  for (const Tensor& m : maps)
    if (m.size(-2) != H || m.size(-1) != W || m.size(0) != maps[0].size(0))
      fail("random_crops: maps of different sizes ({} vs {})", fmt::join(m.sizes(), "x"),
           fmt::join(maps[0].sizes(), "x"));
  if (size < 0 || size > H || size > W) fail("random_crops: crop {} does not fit the {}x{} maps", size, W, H);
  const int64_t ch = size > 0 ? size : H, cw = size > 0 ? size : W;
  Tensor top = torch::zeros({B}, torch::kInt64), left = torch::zeros({B}, torch::kInt64);
  if (size > 0) {
    top = torch::randint(H - ch + 1, {B}, generator, torch::kInt64);
    left = torch::randint(W - cw + 1, {B}, generator, torch::kInt64);
  }
  const Tensor mirror = flip ? torch::rand({B}, generator) < 0.5 : torch::zeros({B}, torch::kBool);
  std::vector<Tensor> out;
  for (const Tensor& m : maps) {
    std::vector<Tensor> items;
    for (int64_t i = 0; i < B; ++i) {
      Tensor x = m[index[i].item<int64_t>()];
      x = x.narrow(-2, top[i].item<int64_t>(), ch).narrow(-1, left[i].item<int64_t>(), cw);
      items.push_back(mirror[i].item<bool>() ? x.flip({-1}) : x);
    }
    out.push_back(torch::stack(items));
  }
  return out;
}

}  // namespace iidm

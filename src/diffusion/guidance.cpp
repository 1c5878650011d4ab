#include "diffusion/guidance.h"

namespace iidm {

torch::Tensor apply_guidance(const torch::Tensor& cond_out, const torch::Tensor& uncond_out, double scale, int64_t C) {
  TORCH_CHECK(cond_out.sizes() == uncond_out.sizes(), "guidance: cond ", cond_out.sizes(), " vs uncond ",
              uncond_out.sizes());
  TORCH_CHECK(C > 0 && C <= cond_out.size(1), "guidance: ", C, " prediction channels of ", cond_out.size(1));
  torch::Tensor out = cond_out.clone();
  auto cond = cond_out.narrow(1, 0, C), uncond = uncond_out.narrow(1, 0, C);
  out.narrow(1, 0, C).copy_(uncond + scale * (cond - uncond));
  return out;
}

}  // namespace iidm

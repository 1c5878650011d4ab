#pragma once
// Classifier-free guidance as SDM and IIDM define it: on the first C channels (the epsilon / x0
// prediction) eps = eps(y=0) + s * (eps(y) - eps(y=0)); any further channels (the learned
// variance) come from the conditional pass.
#include <torch/torch.h>

namespace iidm {

torch::Tensor apply_guidance(const torch::Tensor& cond_out, const torch::Tensor& uncond_out, double scale,
                             int64_t prediction_channels);

}  // namespace iidm

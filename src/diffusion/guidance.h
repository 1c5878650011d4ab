#pragma once
// Classifier-free guidance as SDM and IIDM define it: on the first C channels (the epsilon / x0
// prediction) eps = eps(y=0) + s * (eps(y) - eps(y=0)); any further channels (the learned
// variance) come from the conditional pass.
//
// The scale, s >= 0, means the same for every value: s = 1 is the conditional model alone (one
// pass), s = 0 the unconditional one, s > 1 guidance as in the papers. For 0 < s < 1 the formula
// blends the two predictions, a weaker hold of the label map than s = 1. Note that SDM's and
// IIDM's code (and diffusers) apply guidance only when s > 1 and otherwise silently use the
// conditional pass alone: a setting of s = 0.5 copied from them meant s = 1 there. The parity
// runner follows the references by running their s <= 1 as s = 1.
#include <torch/torch.h>

namespace iidm {

torch::Tensor apply_guidance(const torch::Tensor& cond_out, const torch::Tensor& uncond_out, double scale,
                             int64_t prediction_channels);

}  // namespace iidm

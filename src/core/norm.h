#pragma once
// Normalisation shared by the U-Net and the autoencoder.
#include <torch/torch.h>

namespace iidm {

// GroupNorm computed in float32 whatever the activations' or parameters' precision (bf16
// inference, or autocast training with float32 weights), then cast back to the input's dtype:
// the statistics of a low-precision reduction are too coarse, as in guided-diffusion's GroupNorm32.
torch::Tensor group_norm_f32(torch::nn::GroupNorm& norm, const torch::Tensor& x);

}  // namespace iidm

#pragma once
// GroupNorm -> modulation -> SiLU, the chain before every convolution of a ResBlock, in one pass.
//
// Run as separate operators, the chain reads and writes its activation seven times in float32
// (cast up, normalise, scale, shift, SiLU, cast down) — at IIDM's size, a U-Net step's largest
// element-wise cost. Here the statistics take one read of the input and the rest one read of the
// input and the modulation maps and one write of the result, in float32 arithmetic with a single
// rounding to the input's dtype at the end.
//
// The results do not depend on the CPU or the thread count: the per-channel sums run over the
// positions in fixed chunks, each lane of a vector register being one channel in a fixed order, and
// the file is compiled without contracting multiply-adds, so the AVX-512, AVX2 and generic builds
// of its loops (chosen at run time) compute bit for bit the same.
#include <torch/torch.h>

namespace iidm {

// out = x * scale + shift; undefined tensors mean no such modulation.
struct Modulation {
  torch::Tensor scale, shift;
  bool defined() const { return scale.defined(); }
};

// SiLU((GroupNorm(x) [* spatial.scale + spatial.shift]) [* channel.scale + channel.shift]) in x's
// dtype, with spatial maps [N, C, H, W] (SPADE's 1 + γ and β) and channel factors [N, C, 1, 1]
// (the timestep embedding's 1 + scale and shift). GroupNorm statistics in float64, everything else
// in float32. Returns an undefined tensor where it does not apply — on other devices, while
// gradients are recorded, for inputs other than channels-last float32 or bfloat16, and while
// GroupNorm statistics are shared across tiles (core/norm.h) — and the caller then runs its own
// operators.
// Whether the fused pass runs where it applies (default: yes; IIDM_FUSED_NORM=0 turns it off, for
// measuring), and a switch for tests and benchmarks.
bool fused_norm_enabled();
void set_fused_norm(bool enabled);

torch::Tensor fused_group_norm_silu(const torch::nn::GroupNormImpl& norm, const torch::Tensor& x,
                                    const Modulation& spatial = {}, const Modulation& channel = {});

}  // namespace iidm

#pragma once
// 2-D convolution for inference with the weights prepacked once into oneDNN's layout.
//
// On the CPU, LibTorch 1.13 reorders a convolution's weights into oneDNN's blocked layout on every
// call. For the small, deep layers of a U-Net (1024 channels at 12x16) that reorder costs as much as
// the convolution itself: measured here, prepacking made a bf16 1024->1024 3x3 conv at 6x8 2.1x
// faster and one at 96x128 no slower, with bit-identical outputs. `conv2d(module, x)` uses the
// prepacked weights where LibTorch offers them (CPU, fp32 or bf16, channels-last input, no
// gradients being recorded) and the module's own forward everywhere else (CUDA, training, NCHW).
//
// The prepacked copies live in a process-wide cache keyed by the weight tensor (held weakly: when a
// model is destroyed its entries are dropped on the next insertion), the weight's version (a load
// or an optimiser step repacks), the input's shape and dtype. They cost one more copy of the
// convolutions' weights, counted by `prepacked_convolution_bytes()`.
#include <torch/torch.h>

#include <cstdint>

namespace iidm {

torch::Tensor conv2d(torch::nn::Conv2dImpl& conv, const torch::Tensor& x);
inline torch::Tensor conv2d(const torch::nn::Conv2d& conv, const torch::Tensor& x) { return conv2d(*conv.ptr(), x); }

// Whether prepacking is on (default: yes; IIDM_PREPACK=0 turns it off, for measuring) and a switch
// for tests and benchmarks.
bool prepacked_convolutions_enabled();
// Whether prepacking is on and covers `dtype` on this CPU: oneDNN has bf16 convolutions only from
// AVX-512 on, so bf16 takes the module's forward on an AVX2 CPU.
bool prepacked_convolutions_enabled(torch::ScalarType dtype);
void set_prepacked_convolutions(bool enabled);

// Floating-point operations done by prepacked convolutions so far (the profiler cannot count
// them: its FLOP formulas know aten::conv2d, not LibTorch's opaque prepacked op).
double prepacked_convolution_flops();

// Bytes held by prepacked weights of live models, and dropping them all.
int64_t prepacked_convolution_bytes();
void clear_prepacked_convolutions();

}  // namespace iidm

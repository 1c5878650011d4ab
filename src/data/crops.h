#pragma once
// Random crops (and flips) for training batches, shared by the three trainers.
#include <torch/types.h>

#include <vector>

namespace iidm {

// For each item i of the batch, the same window of `size`x`size` (0: the whole map) at a random
// place in item index[i] of every tensor in `maps`, optionally mirrored left-right with
// probability 1/2. The maps share their trailing two (H, W) dimensions and their item count; images
// [N, C, H, W] and label maps [N, H, W] may be mixed, so an image and its labels stay aligned.
// Draws, in this order: the top offsets, the left offsets, then the flips (only when `flip`); a
// batch without crops or flips draws nothing. Returns the stacked crops, one tensor per map.
std::vector<torch::Tensor> random_crops(const std::vector<torch::Tensor>& maps, const torch::Tensor& index,
                                        int64_t size, bool flip, at::Generator& generator);

}  // namespace iidm

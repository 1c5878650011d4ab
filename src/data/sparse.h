#pragma once
// Sparse layouts (Huang, Iizuka & Fukui): class-wise random patterns. For every class present in a
// label map, its own random pattern removes a share of that class's pixels (they become
// "unlabelled"), so a model trained on such maps accepts rough, partial layouts.
#include <torch/types.h>

namespace iidm {

struct SparseMaskOptions {
  double share = 0.5;          // fraction of each class's pixels to unlabel, in [0, 1]
  int64_t ignore_label = 255;  // the value written for unlabelled pixels
  int pattern_cells = 8;       // coarseness of the random pattern (cells across the width)
};

// labels [H, W] int64 -> a copy with, for each class, round(share * count) of its pixels set to
// ignore_label, chosen by a smooth random pattern drawn for that class from `generator`.
torch::Tensor classwise_sparse_mask(const torch::Tensor& labels, const SparseMaskOptions& options,
                                    at::Generator generator);

}  // namespace iidm

#pragma once
// The competition layout: ROOT/imgs/<stem>.jpg with ROOT/labels/<stem>.png (grey values 0..28),
// paired by stem.
#include <torch/types.h>

#include <string>
#include <vector>

namespace iidm {

struct SamplePaths {
  std::string stem, image, labels;
};

// Pairs sorted by stem. Unmatched files are an error naming them (up to a few), as is an empty set.
std::vector<SamplePaths> list_landscape_pairs(const std::string& root);

struct Sample {
  torch::Tensor image;   // [3, H, W] in [-1, 1]
  torch::Tensor labels;  // [H, W] int64
};

// Reads a pair at width x height (bicubic/area for the image, PIL-style nearest for labels),
// mirrored left-right when `flip`; label values >= num_classes (other than ignore) are an error.
Sample load_sample(const SamplePaths& paths, int width, int height, bool flip, int num_classes,
                   int64_t ignore_label = 255);

}  // namespace iidm

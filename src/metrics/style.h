#pragma once
// Style similarity of a set of outputs to their references: the colour-histogram correlation of
// each output with its own reference (metrics/histogram.h states the binning), and how much closer
// it is to its own reference than to the set's other references.
#include <torch/types.h>

#include <map>
#include <string>
#include <vector>

namespace iidm {

struct StyleItem {
  double own = 0;          // correlation with its own reference
  double others_mean = 0;  // mean correlation with every other distinct reference (own when none)
  bool closest = false;    // own is strictly the highest of all the set's references
};

struct StyleSummary {
  std::vector<StyleItem> items;
  double mean_own = 0;       // the style similarity of the set
  double mean_margin = 0;    // mean of own - others_mean
  double closest_share = 0;  // share of outputs closest to their own reference (retrieval top-1)
  int references = 0;        // distinct references compared
};

// outputs[i] ([3, H, W] in [-1, 1]) was made with reference_names[i], whose image is
// references.at(that name). Outputs sharing a reference are fine: "others" are the other names.
StyleSummary style_similarity(const std::vector<torch::Tensor>& outputs,
                              const std::vector<std::string>& reference_names,
                              const std::vector<std::pair<std::string, torch::Tensor>>& references);
// The same from colour histograms (metrics/histogram.h), for callers that do not keep the images.
StyleSummary style_similarity_of_histograms(const std::vector<torch::Tensor>& output_histograms,
                                            const std::vector<std::string>& reference_names,
                                            const std::map<std::string, torch::Tensor>& reference_histograms);

}  // namespace iidm

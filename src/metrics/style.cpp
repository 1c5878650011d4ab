#include "metrics/style.h"

#include <map>

#include "core/error.h"
#include "metrics/histogram.h"

namespace iidm {

StyleSummary style_similarity(const std::vector<torch::Tensor>& outputs,
                              const std::vector<std::string>& reference_names,
                              const std::vector<std::pair<std::string, torch::Tensor>>& references) {
  std::vector<torch::Tensor> output_histograms;
  for (const auto& image : outputs) output_histograms.push_back(color_histogram(image));
  std::map<std::string, torch::Tensor> reference_histograms;
  for (const auto& [name, image] : references) reference_histograms.emplace(name, color_histogram(image));
  return style_similarity_of_histograms(output_histograms, reference_names, reference_histograms);
}

StyleSummary style_similarity_of_histograms(const std::vector<torch::Tensor>& output_histograms,
                                            const std::vector<std::string>& reference_names,
                                            const std::map<std::string, torch::Tensor>& histograms) {
  if (output_histograms.size() != reference_names.size())
    fail("style similarity: {} outputs but {} reference names", output_histograms.size(), reference_names.size());
  StyleSummary summary;
  summary.references = static_cast<int>(histograms.size());
  if (output_histograms.empty()) return summary;
  for (size_t i = 0; i < output_histograms.size(); ++i) {
    const auto own_it = histograms.find(reference_names[i]);
    if (own_it == histograms.end()) fail("style similarity: no image for reference '{}'", reference_names[i]);
    const torch::Tensor& h = output_histograms[i];
    StyleItem item;
    item.own = histogram_correlation(h, own_it->second);
    double others = 0, best_other = -2;
    int n_others = 0;
    for (const auto& [name, reference] : histograms) {
      if (name == reference_names[i]) continue;
      const double c = histogram_correlation(h, reference);
      others += c, ++n_others;
      best_other = std::max(best_other, c);
    }
    item.others_mean = n_others ? others / n_others : item.own;
    item.closest = item.own > best_other;
    summary.mean_own += item.own;
    summary.mean_margin += item.own - item.others_mean;
    summary.closest_share += item.closest;
    summary.items.push_back(item);
  }
  const double n = static_cast<double>(output_histograms.size());
  summary.mean_own /= n, summary.mean_margin /= n, summary.closest_share /= n;
  return summary;
}

}  // namespace iidm

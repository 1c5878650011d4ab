#pragma once
// How well an image follows a label map, from a segmentation network's prediction: the
// competition's mask accuracy (pixel accuracy) and the mean intersection-over-union.
#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace iidm {

// A confusion matrix over `num_classes` classes, accumulated over any number of label maps;
// pixels labelled `ignore_label` (unlabelled parts of sparse layouts) are not counted.
class ConfusionMatrix {
 public:
  explicit ConfusionMatrix(int num_classes, int64_t ignore_label = 255);

  // predicted and labels: [H, W] or [N, H, W] integer maps of one shape. A label outside
  // [0, num_classes) other than ignore_label is an error; a predicted class outside it counts as
  // wrong (it can match no label).
  void add(const torch::Tensor& predicted, const torch::Tensor& labels);
  void merge(const ConfusionMatrix& other);

  int64_t pixels() const;  // counted pixels
  // The share of counted pixels predicted as their label (0 when nothing was counted).
  double pixel_accuracy() const;
  // IoU_c = TP / (TP + FP + FN), averaged over the classes PRESENT in the labels (a class absent
  // from the labels has no IoU to average; predicting it still lowers its neighbours' IoU).
  double mean_iou() const;
  // Per class, NaN for a class absent from the labels.
  std::vector<double> iou_per_class() const;
  int num_classes() const { return num_classes_; }

 private:
  int num_classes_;
  int64_t ignore_label_;
  std::vector<int64_t> counts_;  // [label * (C + 1) + predicted], predicted == C: outside the classes
};

}  // namespace iidm

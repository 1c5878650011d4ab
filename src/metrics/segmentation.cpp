#include "metrics/segmentation.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/labels.h"

namespace iidm {

ConfusionMatrix::ConfusionMatrix(int num_classes, int64_t ignore_label)
    : num_classes_(num_classes), ignore_label_(ignore_label) {
  if (num_classes < 1) fail("confusion matrix: need at least one class, got {}", num_classes);
  counts_.assign(static_cast<size_t>(num_classes) * (num_classes + 1), 0);
}

void ConfusionMatrix::add(const torch::Tensor& predicted, const torch::Tensor& labels) {
  if (predicted.sizes() != labels.sizes())
    fail("mask accuracy: prediction {} and label map {} differ in shape", fmt::join(predicted.sizes(), "x"),
         fmt::join(labels.sizes(), "x"));
  const torch::Tensor l = labels.to(torch::kCPU, torch::kInt64).flatten();
  check_label_range(l.unsqueeze(0), num_classes_, ignore_label_, "mask accuracy: label map");
  torch::Tensor p = predicted.to(torch::kCPU, torch::kInt64).flatten();
  p = torch::where((p < 0) | (p >= num_classes_), torch::full_like(p, num_classes_), p);
  const torch::Tensor valid = l != ignore_label_;
  const torch::Tensor index = l.masked_select(valid) * (num_classes_ + 1) + p.masked_select(valid);
  const torch::Tensor binned = torch::bincount(index, {}, static_cast<int64_t>(counts_.size()));
  const auto acc = binned.accessor<int64_t, 1>();
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += acc[static_cast<int64_t>(i)];
}

void ConfusionMatrix::merge(const ConfusionMatrix& other) {
  if (other.num_classes_ != num_classes_)
    fail("confusion matrix: cannot merge {} classes into {}", other.num_classes_, num_classes_);
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
}

int64_t ConfusionMatrix::pixels() const {
  int64_t n = 0;
  for (int64_t c : counts_) n += c;
  return n;
}

double ConfusionMatrix::pixel_accuracy() const {
  int64_t correct = 0;
  for (int c = 0; c < num_classes_; ++c) correct += counts_[static_cast<size_t>(c) * (num_classes_ + 1) + c];
  const int64_t n = pixels();
  return n ? static_cast<double>(correct) / static_cast<double>(n) : 0.0;
}

std::vector<double> ConfusionMatrix::iou_per_class() const {
  const int C = num_classes_, stride = C + 1;
  std::vector<double> iou(static_cast<size_t>(C), std::numeric_limits<double>::quiet_NaN());
  for (int c = 0; c < C; ++c) {
    int64_t labelled = 0, predicted = 0;
    for (int k = 0; k <= C; ++k) labelled += counts_[static_cast<size_t>(c) * stride + k];
    for (int k = 0; k < C; ++k) predicted += counts_[static_cast<size_t>(k) * stride + c];
    if (labelled == 0) continue;
    const int64_t tp = counts_[static_cast<size_t>(c) * stride + c];
    iou[static_cast<size_t>(c)] = static_cast<double>(tp) / static_cast<double>(labelled + predicted - tp);
  }
  return iou;
}

double ConfusionMatrix::mean_iou() const {
  double sum = 0;
  int present = 0;
  for (double v : iou_per_class())
    if (!std::isnan(v)) sum += v, ++present;
  return present ? sum / present : 0.0;
}

}  // namespace iidm

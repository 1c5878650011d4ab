#pragma once
// Training the segmentation network on labelled images (make-data landscapes): per-pixel cross
// entropy over random crops and flips, AdamW, resumable checkpoints; pixel accuracy for evaluation.
#include <torch/torch.h>

#include <memory>
#include <string>

#include "core/config.h"
#include "segmentation/segmenter.h"
#include "train/optim.h"

namespace iidm {

struct SegmenterTrainConfig {
  int batch_size = 8;
  int steps = 2000;
  int crop = 0;  // square random crops (0: whole images); random flips always
  AdamWOptions adam{1e-3, 0.9, 0.999, 1e-8, 1e-4};
  int64_t ignore_label = 255;
  bool bf16 = false;
  uint64_t seed = 0;

  void validate() const;
  Json to_json() const;
};

// Images [N, 3, H, W] in [-1, 1] and labels [N, H, W] uint8, in memory.
struct LabelledImages {
  torch::Tensor images, labels;
};
// Every pair of ROOT (imgs/ + labels/) at width x height; label values are checked against
// `num_classes`.
LabelledImages load_labelled_images(const std::string& root, int width, int height, int num_classes);

class SegmenterTrainer {
 public:
  SegmenterTrainer(SegmenterConfig model_config, SegmenterTrainConfig config, LabelledImages data,
                   torch::Device device = torch::kCPU);
  double train_step();  // the batch's mean cross entropy
  void save_checkpoint(const std::string& path) const;
  void resume(const std::string& path);
  void export_weights(const std::string& path) const;
  int64_t step() const { return step_; }
  Segmenter& model() { return model_; }

 private:
  SegmenterConfig model_config_;
  SegmenterTrainConfig config_;
  LabelledImages data_;
  torch::Device device_;
  Segmenter model_{nullptr};
  std::vector<torch::Tensor> params_;
  std::unique_ptr<AdamW> optimizer_;
  int64_t step_ = 0;
};

// Pixel accuracy of `model` over a whole set, evaluated in batches.
double evaluate_segmenter(Segmenter& model, const LabelledImages& data, torch::Device device = torch::kCPU,
                          int64_t ignore_label = 255);

}  // namespace iidm

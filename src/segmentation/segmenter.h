#pragma once
// A small semantic segmentation network (an encoder-decoder with skip connections, GroupNorm,
// SiLU) that labels landscapes with the 29 competition classes. It measures how well generated
// images follow their label maps ("mask accuracy"): segment the output, compare with the input map.
#include <torch/torch.h>

#include <string>
#include <vector>

#include "core/config.h"

namespace iidm {

struct SegmenterConfig {
  int num_classes = 29;
  int in_channels = 3;
  int channels = 32;
  std::vector<int> channel_mult{1, 2, 4, 8};  // one level each; every level after the first halves the size
  int blocks = 2;                             // conv-norm-act units per level and side

  // The JSON keys (core/config.h); "note" is accepted as a comment.
  template <class Self, class Field>
  static void fields(Self& c, Field&& field) {
    field("num_classes", c.num_classes);
    field("in_channels", c.in_channels);
    field("channels", c.channels);
    field("channel_mult", c.channel_mult);
    field("blocks", c.blocks);
  }

  void validate() const;
  static SegmenterConfig from_json(ConfigReader& reader);
  static SegmenterConfig from_file(const std::string& path);
  Json to_json() const;
  int size_multiple() const { return 1 << (channel_mult.size() - 1); }
};

class SegmenterImpl : public torch::nn::Module {
 public:
  explicit SegmenterImpl(const SegmenterConfig& config);
  // Images [N, 3, H, W] in [-1, 1], any size (padded internally) -> logits [N, classes, H, W].
  torch::Tensor forward(const torch::Tensor& images);
  // The most likely class per pixel, [N, H, W] int64 (no gradient).
  torch::Tensor predict(const torch::Tensor& images);
  // The deepest level's activations averaged over the image, [N, channels * channel_mult.back()]
  // (no gradient): the features `iidm score` falls back to for FID/KID.
  torch::Tensor pooled_features(const torch::Tensor& images);
  const SegmenterConfig& config() const { return config_; }

 private:
  // The encoder path on images padded to the size multiple; returns every level's activations.
  std::vector<torch::Tensor> encode(const torch::Tensor& padded);
  SegmenterConfig config_;
  torch::nn::ModuleList down{nullptr}, up{nullptr};
  torch::nn::Conv2d head{nullptr};
};
TORCH_MODULE(Segmenter);

// Loads a segmenter from its config JSON and weights (strictly), for inference on `device`.
Segmenter load_segmenter(const std::string& config_path, const std::string& weights_path,
                         const torch::Device& device = torch::kCPU);

// The share of pixels whose prediction equals the label, ignoring `ignore_label`.
double pixel_accuracy(const torch::Tensor& predicted, const torch::Tensor& labels, int64_t ignore_label = 255);

}  // namespace iidm

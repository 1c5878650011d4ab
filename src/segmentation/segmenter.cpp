#include "segmentation/segmenter.h"

#include "core/error.h"
#include "core/norm.h"
#include "core/state_dict.h"

namespace iidm {
using torch::Tensor;
namespace nn = torch::nn;
namespace F = torch::nn::functional;

void SegmenterConfig::validate() const {
  if (num_classes < 2 || num_classes > 255) fail("segmenter: num_classes must be in [2, 255], got {}", num_classes);
  if (in_channels < 1 || channels < 8 || channels % 8)
    fail("segmenter: channels must be a positive multiple of 8, got {}", channels);
  if (channel_mult.empty() || channel_mult.size() > 8) fail("segmenter: channel_mult needs 1 to 8 levels");
  for (int m : channel_mult)
    if (m < 1) fail("segmenter: channel_mult entries must be positive, got {}", m);
  if (blocks < 1) fail("segmenter: blocks must be >= 1, got {}", blocks);
}

SegmenterConfig SegmenterConfig::from_json(ConfigReader& r) {
  SegmenterConfig c;
  r.ignore({"note"});
  read_fields(r, c);
  return r.validated(c);
}

SegmenterConfig SegmenterConfig::from_file(const std::string& path) {
  ConfigReader reader(read_json_file(path), path);
  return from_json(reader);
}

Json SegmenterConfig::to_json() const { return write_fields(*this); }

namespace {
// conv3x3 -> GroupNorm(8) -> SiLU, `count` times.
class UnitsImpl : public nn::Module {
 public:
  UnitsImpl(int in, int out, int count) {
    for (int i = 0; i < count; ++i) {
      convs.push_back(
          register_module(fmt::format("conv{}", i), nn::Conv2d(nn::Conv2dOptions(i ? out : in, out, 3).padding(1))));
      norms.push_back(register_module(fmt::format("norm{}", i), nn::GroupNorm(8, out)));
    }
  }
  Tensor forward(Tensor x) {
    for (size_t i = 0; i < convs.size(); ++i) x = torch::silu(group_norm_f32(norms[i], convs[i]->forward(x)));
    return x;
  }
  std::vector<nn::Conv2d> convs;
  std::vector<nn::GroupNorm> norms;
};
TORCH_MODULE(Units);
}  // namespace

SegmenterImpl::SegmenterImpl(const SegmenterConfig& config) : config_(config) {
  config_.validate();
  down = register_module("down", nn::ModuleList());
  up = register_module("up", nn::ModuleList());
  const int L = static_cast<int>(config_.channel_mult.size());
  int in = config_.in_channels;
  for (int l = 0; l < L; ++l) {
    const int out = config_.channels * config_.channel_mult[l];
    down->push_back(Units(in, out, config_.blocks));
    in = out;
  }
  // Decoder: upsample, concatenate the skip of the level, units.
  for (int l = L - 2; l >= 0; --l) {
    const int skip = config_.channels * config_.channel_mult[l];
    up->push_back(Units(in + skip, skip, config_.blocks));
    in = skip;
  }
  head = register_module("head", nn::Conv2d(nn::Conv2dOptions(in, config_.num_classes, 1)));
}

Tensor SegmenterImpl::forward(const Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == config_.in_channels, "segmenter: input must be [N, ",
              config_.in_channels, ", H, W], got ", images.sizes());
  const int64_t H = images.size(2), W = images.size(3), m = config_.size_multiple();
  const int64_t ph = (m - H % m) % m, pw = (m - W % m) % m;
  Tensor x = (ph || pw) ? F::pad(images, F::PadFuncOptions({0, pw, 0, ph}).mode(torch::kReplicate)) : images;
  const std::vector<Tensor> skips = encode(x);
  const size_t L = skips.size();
  x = skips.back();
  for (size_t k = 0; k < up->size(); ++k) {
    const Tensor& skip = skips[L - 2 - k];
    x = F::interpolate(x, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{skip.size(2), skip.size(3)})
                              .mode(torch::kBilinear)
                              .align_corners(false));
    x = up[k]->as<UnitsImpl>()->forward(torch::cat({x, skip}, 1));
  }
  Tensor logits = head->forward(x);
  return (ph || pw) ? logits.narrow(2, 0, H).narrow(3, 0, W) : logits;
}

std::vector<Tensor> SegmenterImpl::encode(const Tensor& padded) {
  std::vector<Tensor> levels;
  Tensor x = padded;
  for (size_t l = 0; l < down->size(); ++l) {
    if (l > 0) x = F::avg_pool2d(x, F::AvgPool2dFuncOptions(2));
    x = down[l]->as<UnitsImpl>()->forward(x);
    levels.push_back(x);
  }
  return levels;
}

Tensor SegmenterImpl::pooled_features(const Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == config_.in_channels, "segmenter: input must be [N, ",
              config_.in_channels, ", H, W], got ", images.sizes());
  torch::NoGradGuard no_grad;
  const int64_t H = images.size(2), W = images.size(3), m = config_.size_multiple();
  const int64_t ph = (m - H % m) % m, pw = (m - W % m) % m;
  const Tensor x = (ph || pw) ? F::pad(images, F::PadFuncOptions({0, pw, 0, ph}).mode(torch::kReplicate)) : images;
  return encode(x).back().mean({2, 3});
}

Tensor SegmenterImpl::predict(const Tensor& images) {
  torch::NoGradGuard no_grad;
  return forward(images).argmax(1);
}

Segmenter load_segmenter(const std::string& config_path, const std::string& weights_path, const torch::Device& device) {
  Segmenter model(SegmenterConfig::from_file(config_path));
  load_state_dict(*model, weights_path);
  model->to(device);
  model->eval();
  return model;
}

double pixel_accuracy(const Tensor& predicted, const Tensor& labels, int64_t ignore_label) {
  if (predicted.sizes() != labels.sizes())
    fail("pixel accuracy: predictions {} and labels {} differ in shape", fmt::join(predicted.sizes(), "x"),
         fmt::join(labels.sizes(), "x"));
  Tensor valid = labels != ignore_label;
  const int64_t n = valid.sum().item<int64_t>();
  if (n == 0) return 0.0;
  return ((predicted == labels) & valid).sum().item<double>() / static_cast<double>(n);
}

}  // namespace iidm

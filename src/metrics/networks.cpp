#include "metrics/networks.h"

#include <torch/script.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "segmentation/segmenter.h"

namespace iidm {
namespace F = torch::nn::functional;
using torch::Tensor;

std::string file_content_hash(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot read", path);
  uint64_t h = kFnv1aOffset;
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    h = fnv1a(buffer.data(), static_cast<size_t>(in.gcount()), h);
  }
  return fmt::format("{:016x}", h);
}

namespace {

torch::jit::Module load_module(const std::string& path, const torch::Device& device, const char* what) {
  if (!std::filesystem::is_regular_file(path)) fail("{}: no such file ({})", path, what);
  try {
    torch::jit::Module module = torch::jit::load(path, device);
    module.eval();
    return module;
  } catch (const c10::Error& e) {
    fail("{}: not a TorchScript module ({}): {}", path, what, e.what_without_backtrace());
  }
}

Tensor call(torch::jit::Module& module, const std::vector<torch::jit::IValue>& inputs, const std::string& path) {
  torch::NoGradGuard no_grad;
  torch::jit::IValue out;
  try {
    out = module.forward(inputs);
  } catch (const std::exception& e) {
    fail("{}: forward failed: {}", path, e.what());
  }
  if (!out.isTensor()) fail("{}: forward must return one tensor", path);
  return out.toTensor();
}

class BundledSegmenter : public SegmentationNetwork {
 public:
  BundledSegmenter(const std::string& config, const std::string& weights, const torch::Device& device)
      : model_(load_segmenter(config, weights, device)), device_(device), weights_(weights) {}
  Tensor predict(const Tensor& images) override { return model_->predict(images.to(device_)).cpu(); }
  int num_classes() const override { return model_->config().num_classes; }
  std::string description() const override { return "bundled segmenter " + weights_; }

 private:
  Segmenter model_;
  torch::Device device_;
  std::string weights_;
};

class TorchScriptSegmenter : public SegmentationNetwork {
 public:
  TorchScriptSegmenter(const std::string& path, const torch::Device& device)
      : module_(load_module(path, device, "segmenter")), device_(device), path_(path) {}
  Tensor predict(const Tensor& images) override {
    const Tensor x = ((images.to(device_, torch::kFloat32) + 1) / 2).clamp(0, 1);
    Tensor logits = call(module_, {x}, path_);
    if (logits.dim() != 4 || logits.size(0) != images.size(0))
      fail("{}: segmenter must return logits [N, C, h, w] for {} images, got {}", path_, images.size(0),
           fmt::join(logits.sizes(), "x"));
    if (logits.size(2) != images.size(2) || logits.size(3) != images.size(3))
      logits =
          F::interpolate(logits.to(torch::kFloat32), F::InterpolateFuncOptions()
                                                         .size(std::vector<int64_t>{images.size(2), images.size(3)})
                                                         .mode(torch::kBilinear)
                                                         .align_corners(false));
    return logits.argmax(1).cpu();
  }
  int num_classes() const override { return 0; }
  std::string description() const override { return "TorchScript segmenter " + path_; }

 private:
  torch::jit::Module module_;
  torch::Device device_;
  std::string path_;
};

class TorchScriptFeatures : public FeatureNetwork {
 public:
  TorchScriptFeatures(const std::string& path, int input_size, const torch::Device& device)
      : module_(load_module(path, device, "feature network")),
        device_(device),
        path_(path),
        input_size_(input_size),
        identity_(fmt::format("torchscript:{}:{}:{}", std::filesystem::path(path).filename().string(),
                              file_content_hash(path), input_size)) {
    if (input_size < 1) fail("{}: feature input size must be positive, got {}", path, input_size);
  }
  Tensor features(const Tensor& images) override {
    Tensor x = ((images.to(device_, torch::kFloat32) + 1) / 2).clamp(0, 1);
    if (x.size(2) != input_size_ || x.size(3) != input_size_)
      x = F::interpolate(x, F::InterpolateFuncOptions()
                                .size(std::vector<int64_t>{input_size_, input_size_})
                                .mode(torch::kBilinear)
                                .align_corners(false));
    Tensor f = call(module_, {x}, path_);
    if (f.dim() == 4 && f.size(2) == 1 && f.size(3) == 1) f = f.flatten(1);
    if (f.dim() != 2 || f.size(0) != images.size(0))
      fail("{}: feature network must return [N, D] or [N, D, 1, 1] for {} images, got {}", path_, images.size(0),
           fmt::join(f.sizes(), "x"));
    return f.to(torch::kCPU, torch::kFloat64);
  }
  std::string identity() const override { return identity_; }
  bool user_supplied() const override { return true; }
  std::string description() const override { return "TorchScript features " + path_; }

 private:
  torch::jit::Module module_;
  torch::Device device_;
  std::string path_;
  int64_t input_size_;
  std::string identity_;
};

class SegmenterFeatures : public FeatureNetwork {
 public:
  SegmenterFeatures(const std::string& config, const std::string& weights, const torch::Device& device)
      : model_(load_segmenter(config, weights, device)),
        device_(device),
        weights_(weights),
        identity_("bundled-segmenter:" + file_content_hash(weights)) {}
  Tensor features(const Tensor& images) override {
    return model_->pooled_features(images.to(device_)).to(torch::kCPU, torch::kFloat64);
  }
  std::string identity() const override { return identity_; }
  bool user_supplied() const override { return false; }
  std::string description() const override { return "the bundled segmenter's pooled features (" + weights_ + ")"; }

 private:
  Segmenter model_;
  torch::Device device_;
  std::string weights_, identity_;
};

class TorchScriptDistance : public DistanceNetwork {
 public:
  TorchScriptDistance(const std::string& path, const torch::Device& device)
      : module_(load_module(path, device, "distance network")), device_(device), path_(path) {}
  Tensor distance(const Tensor& a, const Tensor& b) override {
    Tensor d = call(module_, {a.to(device_, torch::kFloat32), b.to(device_, torch::kFloat32)}, path_);
    d = d.reshape({d.size(0), -1});
    if (d.size(0) != a.size(0) || d.size(1) != 1)
      fail("{}: distance network must return [N] or [N, 1, 1, 1] for {} pairs, got {}", path_, a.size(0),
           fmt::join(d.sizes(), "x"));
    return d.flatten().to(torch::kCPU, torch::kFloat64);
  }
  std::string description() const override { return "TorchScript distance " + path_; }

 private:
  torch::jit::Module module_;
  torch::Device device_;
  std::string path_;
};

}  // namespace

std::unique_ptr<SegmentationNetwork> load_bundled_segmenter(const std::string& config_path,
                                                            const std::string& weights_path,
                                                            const torch::Device& device) {
  return std::make_unique<BundledSegmenter>(config_path, weights_path, device);
}
std::unique_ptr<SegmentationNetwork> load_torchscript_segmenter(const std::string& path, const torch::Device& device) {
  return std::make_unique<TorchScriptSegmenter>(path, device);
}
std::unique_ptr<FeatureNetwork> load_torchscript_features(const std::string& path, int input_size,
                                                          const torch::Device& device) {
  return std::make_unique<TorchScriptFeatures>(path, input_size, device);
}
std::unique_ptr<FeatureNetwork> load_segmenter_features(const std::string& config_path, const std::string& weights_path,
                                                        const torch::Device& device) {
  return std::make_unique<SegmenterFeatures>(config_path, weights_path, device);
}
std::unique_ptr<DistanceNetwork> load_torchscript_distance(const std::string& path, const torch::Device& device) {
  return std::make_unique<TorchScriptDistance>(path, device);
}

}  // namespace iidm

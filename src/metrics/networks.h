#pragma once
// The networks the measures look through: a segmentation network (mask accuracy, mIoU), a feature
// network (FID, KID) and, optionally, a perceptual distance (diversity). Each is either bundled
// (the project's own segmenter, safetensors + config) or a TorchScript module the user exports
// (torch::jit::load), with the input contracts below. Nothing is downloaded.
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>

namespace iidm {

// Labels an image per pixel.
class SegmentationNetwork {
 public:
  virtual ~SegmentationNetwork() = default;
  // images [N, 3, H, W] RGB in [-1, 1] -> classes [N, H, W] int64 (CPU), at the images' size.
  virtual torch::Tensor predict(const torch::Tensor& images) = 0;
  virtual int num_classes() const = 0;  // 0 when the module does not say (TorchScript)
  virtual std::string description() const = 0;
};

// The bundled segmenter (segmentation/segmenter.h), strictly loaded.
std::unique_ptr<SegmentationNetwork> load_bundled_segmenter(const std::string& config_path,
                                                            const std::string& weights_path,
                                                            const torch::Device& device = torch::kCPU);
// A TorchScript segmenter. Contract: forward(x) with x float32 [N, 3, H, W], RGB in [0, 1] (any
// normalisation, e.g. ImageNet mean/std, is the module's own business), returns logits
// [N, C, h, w]; logits at another size are resized bilinearly (align_corners=false) to H x W
// before the arg-max, as segmentation evaluations do.
std::unique_ptr<SegmentationNetwork> load_torchscript_segmenter(const std::string& path,
                                                                const torch::Device& device = torch::kCPU);

// Maps images to feature vectors for Fréchet and kernel distances.
class FeatureNetwork {
 public:
  virtual ~FeatureNetwork() = default;
  // images [N, 3, H, W] RGB in [-1, 1] -> [N, D] float64 (CPU).
  virtual torch::Tensor features(const torch::Tensor& images) = 0;
  // Names the network and its weights (a content hash), so cached statistics are only reused
  // with the network they came from.
  virtual std::string identity() const = 0;
  // True only for a user-supplied network (e.g. pytorch-fid's Inception): the bundled
  // segmenter's features give FIDs that must never be compared with published numbers.
  virtual bool user_supplied() const = 0;
  virtual std::string description() const = 0;
};

// A TorchScript feature network (pytorch-fid's Inception, exported by tools/export_inception.py).
// Contract: the images are resized bilinearly (align_corners=false, no antialiasing: what
// pytorch-fid's resize_input does) to input_size x input_size, given in [0, 1] as float32
// [N, 3, S, S]; forward returns [N, D] or [N, D, 1, 1].
std::unique_ptr<FeatureNetwork> load_torchscript_features(const std::string& path, int input_size = 299,
                                                          const torch::Device& device = torch::kCPU);
// The bundled segmenter's deepest activations, averaged over the image ([N, channels of the last
// level]); images at their own size.
std::unique_ptr<FeatureNetwork> load_segmenter_features(const std::string& config_path, const std::string& weights_path,
                                                        const torch::Device& device = torch::kCPU);

// A perceptual distance between images (LPIPS). Contract: forward(x, y) with x, y float32
// [N, 3, H, W] in [-1, 1] (LPIPS' own convention) returns [N] or [N, 1, 1, 1] distances.
class DistanceNetwork {
 public:
  virtual ~DistanceNetwork() = default;
  virtual torch::Tensor distance(const torch::Tensor& a, const torch::Tensor& b) = 0;  // -> [N] float64
  virtual std::string description() const = 0;
};
std::unique_ptr<DistanceNetwork> load_torchscript_distance(const std::string& path,
                                                           const torch::Device& device = torch::kCPU);

// 64-bit FNV-1a: `fnv1a(data, size, h)` continues hash `h` over more bytes.
inline constexpr uint64_t kFnv1aOffset = 0xcbf29ce484222325ull;
inline uint64_t fnv1a(const void* data, size_t size, uint64_t h = kFnv1aOffset) {
  for (size_t i = 0; i < size; ++i) h = (h ^ static_cast<const unsigned char*>(data)[i]) * 0x100000001b3ull;
  return h;
}
// fnv1a of a file's bytes, as 16 hex digits (identities of weight files).
std::string file_content_hash(const std::string& path);

}  // namespace iidm

#include "metrics/feature_stats.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "core/image.h"
#include "core/safetensors.h"

namespace iidm {
namespace fs = std::filesystem;

Eigen::MatrixXd to_eigen(const torch::Tensor& features) {
  if (features.dim() != 2) fail("features must be [n, d], got {}", fmt::join(features.sizes(), "x"));
  const torch::Tensor f = features.to(torch::kCPU, torch::kFloat64).contiguous();
  // Row-major tensor -> Eigen's column-major matrix.
  return Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(f.data_ptr<double>(),
                                                                                                  f.size(0), f.size(1));
}

torch::Tensor batched_features(FeatureNetwork& network, const std::vector<torch::Tensor>& images, int batch_size) {
  std::vector<torch::Tensor> parts;
  for (size_t i = 0; i < images.size(); i += static_cast<size_t>(batch_size)) {
    const size_t end = std::min(images.size(), i + static_cast<size_t>(batch_size));
    parts.push_back(
        network.features(torch::stack(std::vector<torch::Tensor>(images.begin() + i, images.begin() + end))));
  }
  return torch::cat(parts);
}

namespace {
// Names and byte sizes of the folder's images: a changed, added or removed file changes it.
std::string listing_fingerprint(const std::vector<fs::path>& files) {
  uint64_t h = kFnv1aOffset;
  for (const auto& f : files) {
    const std::string entry = f.filename().string() + ":" + std::to_string(fs::file_size(f)) + ";";
    h = fnv1a(entry.data(), entry.size(), h);
  }
  return fmt::format("{}:{:016x}", files.size(), h);
}
}  // namespace

FeatureSet folder_features(FeatureNetwork& network, const std::string& dir, int width, int height,
                           const std::string& cache_path, int batch_size,
                           const std::function<void(int64_t, int64_t)>& on_progress) {
  if (!fs::is_directory(dir)) fail("{}: not a folder of real images", dir);
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (is_image_file(e.path())) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  if (files.size() < 2) fail("{}: needs at least 2 images for feature statistics, found {}", dir, files.size());
  const std::map<std::string, std::string> key{{"network", network.identity()},
                                               {"size", fmt::format("{}x{}", width, height)},
                                               {"listing", listing_fingerprint(files)}};
  FeatureSet set;
  set.identity = network.identity();
  if (!cache_path.empty() && fs::exists(cache_path)) {
    const SafeTensorsFile cache = SafeTensorsFile::open(cache_path);
    bool same = cache.contains("features");
    for (const auto& [k, v] : key) same = same && cache.metadata().count(k) && cache.metadata().at(k) == v;
    if (same) {
      set.features = to_eigen(cache.tensor("features"));
      set.stats = gaussian_stats(set.features);
      set.from_cache = true;
      return set;
    }
  }
  std::vector<torch::Tensor> parts;
  for (size_t i = 0; i < files.size(); i += static_cast<size_t>(batch_size)) {
    std::vector<torch::Tensor> batch;
    for (size_t j = i; j < std::min(files.size(), i + static_cast<size_t>(batch_size)); ++j)
      batch.push_back(read_image(files[j].string(), width, height)[0]);
    parts.push_back(network.features(torch::stack(batch)));
    if (on_progress) on_progress(static_cast<int64_t>(std::min(files.size(), i + batch.size())), files.size());
  }
  const torch::Tensor features = torch::cat(parts);
  set.features = to_eigen(features);
  set.stats = gaussian_stats(set.features);
  if (!cache_path.empty()) {
    std::map<std::string, std::string> metadata = key;
    metadata["folder"] = dir;
    metadata["count"] = std::to_string(files.size());
    const torch::Tensor mu = torch::from_blob(set.stats.mu.data(), {set.stats.mu.size()}, torch::kFloat64).clone();
    // Eigen is column-major; sigma is symmetric, so its memory is also its row-major layout.
    const torch::Tensor sigma =
        torch::from_blob(set.stats.sigma.data(), {set.stats.sigma.rows(), set.stats.sigma.cols()}, torch::kFloat64)
            .clone();
    save_safetensors(cache_path, {{"features", features}, {"mu", mu}, {"sigma", sigma}}, metadata);
  }
  return set;
}

}  // namespace iidm

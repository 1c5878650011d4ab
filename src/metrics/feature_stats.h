#pragma once
// Features of a folder of real images for FID/KID, computed once and cached in a safetensors file
// that records the network they came from, the image size and the folder's listing; the cache is
// reused only when all three match, and rewritten otherwise.
#include <torch/types.h>

#include <Eigen/Dense>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/fs.h"  // is_image_file, which lists image folders
#include "metrics/frechet.h"
#include "metrics/networks.h"

namespace iidm {

struct FeatureSet {
  Eigen::MatrixXd features;  // [n, d]
  GaussianStats stats;
  std::string identity;  // of the network
  bool from_cache = false;
};

// [n, d] tensor -> Eigen (float64).
Eigen::MatrixXd to_eigen(const torch::Tensor& features);

// Features of images [N, 3, H, W] in batches of `batch_size`.
torch::Tensor batched_features(FeatureNetwork& network, const std::vector<torch::Tensor>& images, int batch_size);

// Every .jpg/.jpeg/.png in `dir` (sorted by name), read at width x height, through `network`;
// cached at `cache_path` (empty: no cache). `on_progress(done, total)` is called per batch.
// An unreadable image is an error naming it (real statistics with holes would be silently biased).
FeatureSet folder_features(FeatureNetwork& network, const std::string& dir, int width, int height,
                           const std::string& cache_path, int batch_size = 8,
                           const std::function<void(int64_t, int64_t)>& on_progress = {});

}  // namespace iidm

#pragma once
// Normalisation shared by the U-Net and the autoencoder.
#include <torch/torch.h>

#include <vector>

namespace iidm {

// GroupNorm computed in float32 whatever the activations' or parameters' precision (bf16
// inference, or autocast training with float32 weights), then cast back to the input's dtype:
// the statistics of a low-precision reduction are too coarse, as in guided-diffusion's GroupNorm32.
// Inside a SharedGroupNormStatistics scope its statistics are shared across tiles (below).
torch::Tensor group_norm_f32(torch::nn::GroupNorm& norm, const torch::Tensor& x);

// Whether group_norm_f32 calls on this thread go through a SharedGroupNormStatistics scope (below).
bool group_norm_statistics_shared();

// GroupNorm statistics of a whole image assembled from its tiles (autoencoder/tiling.h). A tiled
// pass normalises each tile with the tile's own mean and variance, which differ from the image's;
// instead, a first pass over the tiles records every group_norm_f32 call's sums over the part of
// the tile it owns (each pixel counted once), and later passes normalise every tile with the
// image-wide mean and variance those sums give. The first pass's deeper layers saw tile-normalised
// inputs, so its statistics are only close to the untiled ones; refining passes (normalising with
// the statistics so far while recording new ones) bring them closer to the image's own.
class SharedGroupNormStatistics {
 public:
  // kRecord: normalise with the tile's own statistics, record; kRefine: normalise with the
  // statistics so far, record; kApply: normalise with them. finish_pass() adopts what was recorded.
  enum class Mode { kRecord, kRefine, kApply };
  // The owned part of the tile now running, as fractions [0, 1] of its height and width.
  struct Region {
    double top = 0, bottom = 1, left = 0, right = 1;
  };

  // While alive, group_norm_f32 calls on this thread go through `stats` in `mode`, from the first.
  class Scope {
   public:
    Scope(SharedGroupNormStatistics& stats, Mode mode, Region region);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    SharedGroupNormStatistics* previous_;
  };

  torch::Tensor normalize(torch::nn::GroupNorm& norm, const torch::Tensor& x);  // what group_norm_f32 calls
  void finish_pass();
  size_t layers() const { return sums_.size(); }

 private:
  struct Sums {
    torch::Tensor sum, squares;  // [N, groups] float64
    double count = 0;
  };
  Mode mode_ = Mode::kRecord;
  Region region_;
  size_t cursor_ = 0;
  std::vector<Sums> sums_;  // what kRefine and kApply normalise with
  std::vector<Sums> next_;  // what the current pass records
};

}  // namespace iidm

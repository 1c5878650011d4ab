#include "core/norm.h"

#include <cmath>

#include "core/error.h"

namespace iidm {
namespace F = torch::nn::functional;
using torch::Tensor;
using torch::indexing::Slice;

namespace {
thread_local SharedGroupNormStatistics* active_statistics = nullptr;
}  // namespace

bool group_norm_statistics_shared() { return active_statistics != nullptr; }

Tensor group_norm_f32(torch::nn::GroupNorm& norm, const Tensor& x) {
  if (active_statistics) return active_statistics->normalize(norm, x);
  if (x.scalar_type() == torch::kFloat32 && (!norm->weight.defined() || norm->weight.scalar_type() == torch::kFloat32))
    return norm->forward(x);
  const auto& o = norm->options;
  auto options = F::GroupNormFuncOptions(o.num_groups()).eps(o.eps());
  if (norm->weight.defined()) options.weight(norm->weight.to(torch::kFloat32)).bias(norm->bias.to(torch::kFloat32));
  return F::group_norm(x.to(torch::kFloat32), options).to(x.scalar_type());
}

SharedGroupNormStatistics::Scope::Scope(SharedGroupNormStatistics& stats, Mode mode, Region region)
    : previous_(active_statistics) {
  stats.mode_ = mode;
  stats.region_ = region;
  stats.cursor_ = 0;
  active_statistics = &stats;
}

SharedGroupNormStatistics::Scope::~Scope() { active_statistics = previous_; }

Tensor SharedGroupNormStatistics::normalize(torch::nn::GroupNorm& norm, const Tensor& x) {
  const auto& o = norm->options;
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), G = o.num_groups();
  const size_t k = cursor_++;
  if (mode_ != Mode::kApply) {
    // Sums over the owned region, in float64 so that E[x^2] - E[x]^2 does not cancel.
    auto edge = [](double fraction, int64_t size) { return static_cast<int64_t>(std::llround(fraction * size)); };
    const Tensor owned = x.index({Slice(), Slice(), Slice(edge(region_.top, H), edge(region_.bottom, H)),
                                  Slice(edge(region_.left, W), edge(region_.right, W))})
                             .to(torch::kFloat64)
                             .reshape({N, G, -1});
    if (next_.size() <= k)
      next_.push_back({torch::zeros({N, G}, owned.options()), torch::zeros({N, G}, owned.options())});
    Sums& s = next_[k];
    s.sum += owned.sum(-1);
    s.squares += owned.pow(2).sum(-1);
    s.count += static_cast<double>(owned.size(-1));
  }
  if (mode_ == Mode::kRecord) {
    active_statistics = nullptr;  // the tile runs with its own statistics in a recording pass
    Tensor out = group_norm_f32(norm, x);
    active_statistics = this;
    return out;
  }
  if (k >= sums_.size()) fail("tiling: a tile ran {} group norms, the recording pass {}", k + 1, sums_.size());
  const Sums& s = sums_[k];
  const Tensor mean = s.sum / s.count;
  const Tensor var = (s.squares / s.count - mean.pow(2)).clamp_min(0);
  const Tensor xf = x.to(torch::kFloat32).reshape({N, G, -1});
  const Tensor inv = torch::rsqrt(var + o.eps()).to(torch::kFloat32).unsqueeze(-1);
  Tensor y = ((xf - mean.to(torch::kFloat32).unsqueeze(-1)) * inv).reshape({N, C, H, W});
  if (norm->weight.defined())
    y = y * norm->weight.to(torch::kFloat32).view({1, C, 1, 1}) + norm->bias.to(torch::kFloat32).view({1, C, 1, 1});
  return y.to(x.scalar_type()).contiguous(x.suggest_memory_format());
}

void SharedGroupNormStatistics::finish_pass() {
  sums_ = std::move(next_);
  next_.clear();
}

}  // namespace iidm

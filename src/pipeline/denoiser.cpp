#include "pipeline/denoiser.h"

#include "core/error.h"
#include "diffusion/guidance.h"

namespace iidm {
using torch::Tensor;

Denoiser::Denoiser(std::vector<EnsembleMember> members, GuidanceOptions guidance, int64_t prediction_channels,
                   std::shared_ptr<ConditioningCache> cache)
    : members_(std::move(members)),
      guidance_(guidance),
      prediction_channels_(prediction_channels),
      cache_(std::move(cache)) {
  if (members_.empty()) fail("denoiser: no model given");
  double total = 0;
  for (const auto& m : members_) {
    if (!m.model) fail("denoiser: an ensemble member has no model");
    if (!(m.weight >= 0)) fail("denoiser: ensemble weights must be non-negative, got {}", m.weight);
    total += m.weight;
  }
  if (!(total > 0)) fail("denoiser: ensemble weights sum to zero");
  for (auto& m : members_) m.weight /= total;
  if (!std::isfinite(guidance_.scale) || guidance_.scale < 0)
    fail("denoiser: guidance scale must be finite and >= 0 (1 = conditional only), got {}", guidance_.scale);
}

int Denoiser::forwards_per_call() const {
  const int per_member = guidance_.scale == 1.0 ? 1 : 2;
  return per_member * static_cast<int>(members_.size());
}

Tensor Denoiser::run_member(size_t index, const Tensor& x, const Tensor& t, const Tensor& y_in) {
  auto& model = members_[index].model;
  // The label maps of each pass: built once per map (and their SPADE maps cached) with a cache,
  // else per call as the references do.
  ConditioningCache::Member* caches = nullptr;
  Tensor y = y_in, zeros, pair;
  if (cache_) {
    cache_->bind(y_in, members_.size());
    caches = &cache_->members_[index];
    y = cache_->y_;
  }
  auto zero_map = [&] { return cache_ ? cache_->zeros_ : torch::zeros_like(y); };
  // s = 1 needs no unconditional pass (and s = 0 no conditional one).
  if (guidance_.scale == 1.0) return model->forward(x, t, y, caches ? &caches->cond : nullptr);
  if (guidance_.scale == 0.0) return model->forward(x, t, zero_map(), caches ? &caches->uncond : nullptr);
  // Both passes see the same x and t, and the encoder does not see the map: encode once, decode twice.
  const UNetEncoding encoding = model->encode(x, t);
  Tensor cond, uncond;
  if (guidance_.batched) {
    // One decoder pass of batch 2N over the repeated encoding.
    if (cache_ && !cache_->pair_.defined()) cache_->pair_ = torch::cat({y, cache_->zeros_});
    const Tensor y_pair = cache_ ? cache_->pair_ : torch::cat({y, zero_map()});
    Tensor out = model->decode(encoding.repeated(2), y_pair, caches ? &caches->pair : nullptr);
    auto halves = out.chunk(2, 0);
    cond = halves[0];
    uncond = halves[1];
  } else {
    cond = model->decode(encoding, y, caches ? &caches->cond : nullptr);
    uncond = model->decode(encoding, zero_map(), caches ? &caches->uncond : nullptr);
  }
  return apply_guidance(cond, uncond, guidance_.scale, prediction_channels_);
}

Tensor Denoiser::operator()(const Tensor& x, const Tensor& model_t, const Tensor& y) {
  torch::NoGradGuard no_grad;
  Tensor out;
  for (size_t i = 0; i < members_.size(); ++i) {
    Tensor o = run_member(i, x, model_t, y);
    const double w = members_[i].weight;
    out = out.defined() ? out + w * o : (members_.size() == 1 ? o : w * o);
  }
  if (cache_) cache_->note_size();
  return out;
}

ModelFn Denoiser::bind(Tensor y) {
  return [this, y = std::move(y)](const Tensor& x, const Tensor& t) { return (*this)(x, t, y); };
}

void ConditioningCache::bind(const Tensor& y, size_t members) {
  // Same tensor (not merely equal values): the caller passes its one label map every step.
  if (y_.defined() && y_.unsafeGetTensorImpl() == y.unsafeGetTensorImpl() && y_version_ == y._version() &&
      members_.size() == members)
    return;
  y_ = y;
  y_version_ = y._version();
  zeros_ = torch::zeros_like(y);
  pair_ = Tensor();
  members_.clear();
  members_.resize(members);
}

int64_t ConditioningCache::bytes() const {
  int64_t total = 0;
  for (const auto& m : members_) total += m.cond.bytes() + m.uncond.bytes() + m.pair.bytes();
  return total;
}

void ConditioningCache::note_size() { peak_bytes_ = std::max(peak_bytes_, bytes()); }

}  // namespace iidm

#pragma once
// Optimisation pieces with explicit, checkpointable state: AdamW (PyTorch's formula), an EMA of the
// parameters, and gradient-norm clipping.
#include <torch/torch.h>

#include <string>
#include <vector>

namespace iidm {

struct AdamWOptions {
  double lr = 1e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

class AdamW {
 public:
  AdamW(std::vector<torch::Tensor> params, AdamWOptions options);
  // One update from the parameters' .grad(); parameters without a gradient are skipped.
  void step();
  void zero_grad();
  int64_t steps() const { return step_; }
  AdamWOptions& options() { return options_; }
  // State tensors (first and second moments) in parameter order, for checkpoints.
  std::vector<torch::Tensor>& exp_avg() { return m_; }
  std::vector<torch::Tensor>& exp_avg_sq() { return v_; }
  void set_steps(int64_t steps) { step_ = steps; }

 private:
  std::vector<torch::Tensor> params_, m_, v_;
  AdamWOptions options_;
  int64_t step_ = 0;
};

// Exponential moving average of parameters (the weights used for sampling). With warm-up the
// decay is min(decay, (1 + n) / (10 + n)) at update n, as in guided-diffusion / LDM's LitEma.
class Ema {
 public:
  Ema(const std::vector<torch::Tensor>& params, double decay, bool warmup);
  void update(const std::vector<torch::Tensor>& params);
  std::vector<torch::Tensor>& shadow() { return shadow_; }
  int64_t updates() const { return updates_; }
  void set_updates(int64_t n) { updates_ = n; }

 private:
  std::vector<torch::Tensor> shadow_;
  double decay_;
  bool warmup_;
  int64_t updates_ = 0;
};

// Scales gradients so their global L2 norm is at most max_norm; returns the norm before clipping.
double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm);

}  // namespace iidm

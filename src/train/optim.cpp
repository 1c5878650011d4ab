#include "train/optim.h"

#include <cmath>

namespace iidm {

AdamW::AdamW(std::vector<torch::Tensor> params, AdamWOptions options) : params_(std::move(params)), options_(options) {
  for (const auto& p : params_) {
    m_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    v_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
  }
}

void AdamW::zero_grad() {
  for (auto& p : params_)
    if (p.grad().defined()) p.mutable_grad().zero_();
}

void AdamW::step() {
  torch::NoGradGuard no_grad;
  ++step_;
  const auto& o = options_;
  const double bias1 = 1 - std::pow(o.beta1, static_cast<double>(step_));
  const double bias2 = 1 - std::pow(o.beta2, static_cast<double>(step_));
  const double step_size = o.lr / bias1;
  const double bias2_sqrt = std::sqrt(bias2);
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    if (!p.grad().defined()) continue;
    const torch::Tensor& g = p.grad();
    if (o.weight_decay != 0) p.mul_(1 - o.lr * o.weight_decay);  // decoupled weight decay
    m_[i].mul_(o.beta1).add_(g, 1 - o.beta1);
    v_[i].mul_(o.beta2).addcmul_(g, g, 1 - o.beta2);
    torch::Tensor denom = (v_[i].sqrt() / bias2_sqrt).add_(o.eps);
    p.addcdiv_(m_[i], denom, -step_size);
  }
}

Ema::Ema(const std::vector<torch::Tensor>& params, double decay, bool warmup) : decay_(decay), warmup_(warmup) {
  for (const auto& p : params) shadow_.push_back(p.detach().clone());
}

void Ema::update(const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  double d = decay_;
  if (warmup_) d = std::min(decay_, (1.0 + updates_) / (10.0 + updates_));
  ++updates_;
  for (size_t i = 0; i < params.size(); ++i) shadow_[i].mul_(d).add_(params[i].detach(), 1 - d);
}

double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  double total = 0;
  for (const auto& p : params)
    if (p.grad().defined()) total += p.grad().to(torch::kFloat64).pow(2).sum().item<double>();
  const double norm = std::sqrt(total);
  if (max_norm > 0 && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (const auto& p : params)
      if (p.grad().defined()) p.grad().mul_(scale);
  }
  return norm;
}

}  // namespace iidm

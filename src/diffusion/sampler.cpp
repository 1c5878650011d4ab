#include "diffusion/sampler.h"

#include "core/error.h"

namespace iidm {

std::unique_ptr<Sampler> make_ddpm_sampler();
std::unique_ptr<Sampler> make_ddim_sampler();
std::unique_ptr<Sampler> make_dpm_solver_sampler();

std::unique_ptr<Sampler> make_sampler(const std::string& name) {
  if (name == "ddpm") return make_ddpm_sampler();
  if (name == "ddim") return make_ddim_sampler();
  if (name == "dpm++2m" || name == "dpmpp2m") return make_dpm_solver_sampler();
  fail("unknown sampler '{}' (expected ddpm, ddim or dpm++2m)", name);
}

torch::Tensor randn_like_on_cpu(const torch::Tensor& like, const std::vector<at::Generator>& generators) {
  const auto options = torch::TensorOptions().dtype(torch::kFloat32);
  if (generators.size() <= 1) {
    c10::optional<at::Generator> g;
    if (!generators.empty()) g = generators[0];
    return torch::randn(like.sizes(), g, options).to(like.options());
  }
  TORCH_CHECK(static_cast<int64_t>(generators.size()) == like.size(0), "noise: ", generators.size(),
              " generators for a batch of ", like.size(0));
  std::vector<torch::Tensor> items;
  for (const auto& g : generators) items.push_back(torch::randn(like.sizes().slice(1), g, options));
  return torch::stack(items).to(like.options());
}

}  // namespace iidm

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

torch::Tensor randn_like_on_cpu(const torch::Tensor& like, c10::optional<at::Generator> generator) {
  return torch::randn(like.sizes(), generator, torch::TensorOptions().dtype(torch::kFloat32)).to(like.options());
}

}  // namespace iidm

#include "diffusion/sampler.h"

#include "core/error.h"

namespace iidm {

std::unique_ptr<Sampler> make_ddpm_sampler();
std::unique_ptr<Sampler> make_ddim_sampler();
std::unique_ptr<Sampler> make_dpm_solver_sampler();

SamplerKind parse_sampler(const std::string& name) {
  if (name == "ddpm") return SamplerKind::kDdpm;
  if (name == "ddim") return SamplerKind::kDdim;
  if (name == "dpm++2m" || name == "dpmpp2m") return SamplerKind::kDpmSolver2M;
  fail("unknown sampler '{}' (expected ddpm, ddim or dpm++2m)", name);
}

std::string to_string(SamplerKind kind) {
  switch (kind) {
    case SamplerKind::kDdpm:
      return "ddpm";
    case SamplerKind::kDdim:
      return "ddim";
    case SamplerKind::kDpmSolver2M:
      return "dpm++2m";
  }
  fail("sampler: invalid kind {}", static_cast<int>(kind));
}

ClipDenoised parse_clip_denoised(const std::string& text) {
  if (text == "auto") return ClipDenoised::kAuto;
  if (text == "true") return ClipDenoised::kAlways;
  if (text == "false") return ClipDenoised::kNever;
  fail("clip_denoised must be auto, true or false, got '{}'", text);
}

std::string to_string(ClipDenoised clip) {
  switch (clip) {
    case ClipDenoised::kAuto:
      return "auto";
    case ClipDenoised::kAlways:
      return "true";
    case ClipDenoised::kNever:
      return "false";
  }
  fail("clip_denoised: invalid value {}", static_cast<int>(clip));
}

bool resolve_clip_denoised(ClipDenoised clip, bool latent_space) {
  return clip == ClipDenoised::kAuto ? !latent_space : clip == ClipDenoised::kAlways;
}

std::unique_ptr<Sampler> make_sampler(SamplerKind kind) {
  switch (kind) {
    case SamplerKind::kDdpm:
      return make_ddpm_sampler();
    case SamplerKind::kDdim:
      return make_ddim_sampler();
    case SamplerKind::kDpmSolver2M:
      return make_dpm_solver_sampler();
  }
  fail("sampler: invalid kind {}", static_cast<int>(kind));
}

std::unique_ptr<Sampler> make_sampler(const std::string& name) { return make_sampler(parse_sampler(name)); }

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

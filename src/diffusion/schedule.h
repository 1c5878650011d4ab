#pragma once
// Beta schedules and timestep respacing, in float64 as the references compute them.
#include <string>
#include <vector>

namespace iidm {

// guided-diffusion's named schedules: "linear" (Ho et al., scaled by 1000/T) and "cosine"
// (Nichol & Dhariwal, betas capped at 0.999).
std::vector<double> guided_beta_schedule(const std::string& name, int num_timesteps);
// LDM's "linear": linspace(sqrt(start), sqrt(end), T)^2 (torch.linspace in float64).
std::vector<double> ldm_linear_beta_schedule(int num_timesteps, double linear_start = 0.0015,
                                             double linear_end = 0.0195);

// guided-diffusion's space_timesteps: "ddimN" (a uniform stride giving exactly N steps), or
// comma-separated section counts "a,b,c" (each section of the chain gets that many evenly spaced
// steps; a single number "N" is one section). Returns the kept timesteps, sorted. An empty
// spec keeps all. Throws iidm::Error when the spec cannot be met.
std::vector<int> space_timesteps(int num_timesteps, const std::string& spec);

}  // namespace iidm

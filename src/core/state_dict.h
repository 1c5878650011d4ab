#pragma once
// Strict state-dict loading: a module's parameters and buffers are filled from a safetensors file
// under the reference's key names. Missing, unexpected and wrong-shape tensors are errors listing
// the keys, because a silently half-loaded model produces plausible-looking garbage.
#include <torch/nn/module.h>

#include <string>
#include <utility>
#include <vector>

#include "core/safetensors.h"

namespace iidm {

struct LoadOptions {
  // Only file keys starting with `prefix` belong to the module, with the prefix removed; e.g.
  // "model.diffusion_model." or "first_stage_model." in a whole-pipeline LDM checkpoint.
  std::string prefix;
  // Read LDM's EMA copy instead: key "model_ema." + (prefix without "model." + key, dots
  // removed), as LitEma stores them.
  bool ldm_ema = false;
  // Allow file keys under the prefix that the module does not have (e.g. a VQ checkpoint's
  // discriminator `loss.*`). Missing and wrong-shape keys are always errors.
  bool allow_unexpected = false;
};

// Fills `module` (parameters + buffers, converted to each tensor's dtype and device).
void load_state_dict(torch::nn::Module& module, const SafeTensorsFile& file, const LoadOptions& options = {});
void load_state_dict(torch::nn::Module& module, const std::string& path, const LoadOptions& options = {});

// Parameters and buffers in registration order, under their full names.
std::vector<std::pair<std::string, torch::Tensor>> state_dict(const torch::nn::Module& module);

// Writes the state dict as float32 (or the tensors' own dtype when keep_dtype) safetensors.
void save_state_dict(const torch::nn::Module& module, const std::string& path, bool keep_dtype = false,
                     const std::map<std::string, std::string>& metadata = {});

int64_t count_parameters(const torch::nn::Module& module);

}  // namespace iidm

#pragma once
// A stage of generation: where on which respaced chain to start, which sampler, how much guidance,
// and (from the second stage on) which colour transfer toward the original reference comes
// first. A preset is a list of stages (refinement = more than one).
#include <string>
#include <vector>

#include "core/config.h"
#include "diffusion/sampler.h"
#include "postprocess/color_transfer.h"

namespace iidm {

struct Stage {
  std::string respacing = "ddim50";  // the chain this stage walks (guided-diffusion respacing)
  SamplerKind sampler = SamplerKind::kDdim;
  // Strength in (0, 1], diffusers' semantics: run n = int(K * strength) steps, noising the start
  // image to chain index n-1 and denoising from there (1 = from pure noise in SDM mode).
  double strength = 1.0;
  // >= 0: the IIDM reference's own indexing instead: noise to index start_index, denoise from
  // start_index - 1 (start_index steps). Overrides strength.
  int start_index = -1;
  double eta = 0.0;
  double guidance = 1.0;
  ColorTransfer color_transfer = ColorTransfer::kNone;  // applied before this stage (not before the first)
  ClipDenoised clip_denoised = ClipDenoised::kAuto;     // resolved by the model's space (sampler.h)

  // What can be checked without a model: strength, eta, guidance, the respacing's syntax.
  void validate_settings() const;
  // Everything, against the LOADED model's diffusion chain of `num_timesteps` steps (the respacing
  // and start index must fit it).
  void validate(int num_timesteps) const;
  static Stage from_json(ConfigReader& reader);
  Json to_json() const;
};

// Where a stage starts on a chain of K steps.
struct StagePlan {
  int noise_index = 0;  // the start image is noised to this chain index (q_sample)
  int first_index = 0;  // the first denoising step (== noise_index, or noise_index - 1 for the reference)
  int steps = 0;        // denoising steps = first_index + 1
};
StagePlan plan_stage(const Stage& stage, int chain_length);

struct Preset {
  std::string name, note;
  std::vector<Stage> stages;
  static Preset from_file(const std::string& path);
  static Preset from_json(ConfigReader& reader, const std::string& name);
};

}  // namespace iidm

#include "pipeline/stage.h"

#include <cmath>
#include <filesystem>

#include "diffusion/sampler.h"
#include "diffusion/schedule.h"
#include "postprocess/color_transfer.h"

namespace iidm {

void Stage::validate_settings() const {
  if (respacing.empty()) fail("stage: no respacing (e.g. ddim50, 250 or 10,15,20)");
  if (start_index < 0 && !(strength > 0 && strength <= 1)) fail("stage: strength must be in (0, 1], got {}", strength);
  if (start_index == 0) fail("stage: start_index 0 leaves no denoising step");
  if (!(eta >= 0) || !std::isfinite(eta)) fail("stage: eta must be >= 0, got {}", eta);
  if (!std::isfinite(guidance) || guidance < 0) fail("stage: guidance must be >= 0, got {}", guidance);
}

void Stage::validate(int num_timesteps) const {
  validate_settings();
  const int K = static_cast<int>(space_timesteps(num_timesteps, respacing).size());
  if (start_index >= K) fail("stage: start_index {} is beyond the {}-step chain '{}'", start_index, K, respacing);
  if (start_index < 0 && static_cast<int>(K * strength) < 1)
    fail("stage: strength {} on a {}-step chain gives zero steps", strength, K);
}

Stage Stage::from_json(ConfigReader& r) {
  Stage s;
  s.respacing = r.get("respacing", s.respacing);
  s.strength = r.get("strength", s.strength);
  s.start_index = r.get("start_index", s.start_index);
  s.eta = r.get("eta", s.eta);
  s.guidance = r.get("guidance", s.guidance);
  // Names become types here, at the edge; errors name the file and the stage.
  try {
    s.sampler = parse_sampler(r.get<std::string>("sampler", to_string(s.sampler)));
    s.color_transfer = parse_color_transfer(r.get<std::string>("color_transfer", to_string(s.color_transfer)));
    if (r.has("clip_denoised")) {
      const Json& v = r.json().at("clip_denoised");
      s.clip_denoised = v.is_boolean() ? (v.get<bool>() ? ClipDenoised::kAlways : ClipDenoised::kNever)
                                       : parse_clip_denoised(r.get<std::string>("clip_denoised", "auto"));
    }
  } catch (const Error& e) {
    fail("{}: {}", r.where(), e.what());
  }
  r.ignore({"clip_denoised"});
  r.finish();
  try {
    s.validate_settings();
  } catch (const Error& e) {
    fail("{}: {}", r.where(), e.what());
  }
  return s;
}

Json Stage::to_json() const {
  Json j{{"respacing", respacing},
         {"sampler", to_string(sampler)},
         {"eta", eta},
         {"guidance", guidance},
         {"color_transfer", to_string(color_transfer)},
         {"clip_denoised", to_string(clip_denoised)}};
  if (start_index >= 0)
    j["start_index"] = start_index;
  else
    j["strength"] = strength;
  return j;
}

StagePlan plan_stage(const Stage& stage, int K) {
  StagePlan p;
  if (stage.start_index >= 0) {
    p.noise_index = stage.start_index;
    p.first_index = stage.start_index - 1;
  } else {
    const int n = static_cast<int>(K * stage.strength);
    if (n < 1) fail("stage: strength {} on a {}-step chain gives zero steps", stage.strength, K);
    p.noise_index = p.first_index = std::min(n, K) - 1;
  }
  p.steps = p.first_index + 1;
  return p;
}

Preset Preset::from_json(ConfigReader& r, const std::string& name) {
  Preset p;
  p.name = name;
  p.note = r.get<std::string>("note", "");
  const Json stages = r.json().value("stages", Json::array());
  r.ignore({"stages"});
  if (!stages.is_array() || stages.empty()) fail("{}: 'stages' must be a non-empty list", r.where());
  for (size_t i = 0; i < stages.size(); ++i) {
    ConfigReader sr(stages[i], fmt::format("{}.stages[{}]", r.where(), i));
    p.stages.push_back(Stage::from_json(sr));
  }
  r.finish();
  return p;
}

Preset Preset::from_file(const std::string& path) {
  ConfigReader r(read_json_file(path), path);
  return from_json(r, std::filesystem::path(path).stem().string());
}

}  // namespace iidm

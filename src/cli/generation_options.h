#pragma once
// Flags shared by `generate` and `batch`: which model files, which preset, and per-flag overrides
// of the preset's stages. Bound to CLI11 here, at the edge; the pipeline only sees structs.
#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "pipeline/pipeline.h"
#include "pipeline/stage.h"

namespace iidm::cli {

struct GenerationOptions {
  ModelFiles files;
  std::string preset = "fast";
  std::optional<std::string> respacing, sampler, color_transfer, clip;
  std::optional<double> strength, guidance, eta;
  std::optional<int> start_index, rounds;
  std::string precision = "auto";
  bool channels_last = false, no_channels_last = false, two_pass_guidance = false;
  int64_t ignore_label = 255;
  int64_t tile = 0;
  uint64_t seed = 0;

  void add_to(CLI::App* cmd);
  // The preset's stages with the overrides applied; errors name the flag.
  std::vector<Stage> stages() const;
  // Resolves --precision auto for the device; `announce` prints the choice and why to stderr.
  PipelineOptions pipeline_options(const CommonOptions& common, bool announce = true) const;
};

// configs/presets/NAME.json next to the executable's source tree, or a path.
std::string resolve_preset(const std::string& name_or_path);
// A one-line description of stages, e.g. "ddim500@300 s3.5 | iidm-lab ddim500@320 s3.7".
std::string describe(const std::vector<Stage>& stages);

}  // namespace iidm::cli

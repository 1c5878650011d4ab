#include "cli/generation_options.h"

#include <filesystem>

#include "core/error.h"
#include "core/runtime.h"

#ifndef IIDM_SOURCE_DIR
#define IIDM_SOURCE_DIR "."
#endif

namespace iidm::cli {
namespace fs = std::filesystem;

void GenerationOptions::add_to(CLI::App* cmd) {
  cmd->add_option("--model", files.config, "Model config (configs/models/*.json)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--unet", files.unets, "U-Net weights (safetensors); give several for a per-step ensemble")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--unet-weight", files.unet_weights, "Ensemble weight of each --unet (default: equal)");
  cmd->add_option("--autoencoder", files.autoencoder, "Autoencoder weights (latent / IIDM models)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--preset", preset, "Preset name in configs/presets (iidm-paper, fast, sdm) or a preset file")
      ->capture_default_str();
  cmd->add_option("--steps", respacing, "Override every stage's chain: a respacing such as ddim50, 250 or 10,15,20");
  cmd->add_option("--sampler", sampler, "Override the sampler: ddim, ddpm, dpm++2m");
  cmd->add_option("--strength", strength, "Override the strength (0, 1] (diffusers semantics: int(K*strength) steps)");
  cmd->add_option("--start-index", start_index,
                  "Override with the reference's start index (noise at i, first step i-1)");
  cmd->add_option("--guidance", guidance,
                  "Override the classifier-free guidance scale s >= 0 (1: conditional only, 0: unconditional, 0<s<1 a "
                  "blend; README)");
  cmd->add_option("--eta", eta, "Override DDIM eta");
  cmd->add_option("--refine", rounds,
                  "Number of rounds (stages) to run: 1 = no refinement; more repeats the last stage");
  cmd->add_option("--color-transfer", color_transfer,
                  "Colour transfer between rounds: iidm-lab, reinhard, histogram, none");
  cmd->add_option("--clip-denoised", clip, "Clamp x0 predictions: auto, true, false");
  cmd->add_option("--precision", precision,
                  "auto, fp32 or bf16 (auto: bf16 on CPUs with native bf16 (avx512_bf16, AMX), else fp32)")
      ->capture_default_str();
  cmd->add_flag("--channels-last", channels_last,
                "NHWC convolutions (default with bf16, where oneDNN is fastest in NHWC; in fp32 on CPUs without "
                "AVX-512 NCHW is faster)");
  cmd->add_flag("--no-channels-last", no_channels_last, "NCHW convolutions even in bf16");
  cmd->add_option("--tile", tile,
                  "Run the autoencoder in overlapping tiles of this many pixels (e.g. 512): memory then grows with "
                  "the tile, not the image; 0 = whole image")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_flag("--two-pass-guidance", two_pass_guidance, "Run cond and uncond as two forwards (as the references)");
  cmd->add_option("--ignore-label", ignore_label, "Label value meaning 'unlabelled' (zero vector)")
      ->capture_default_str();
  cmd->add_option("--seed", seed, "Run seed; each image's seed derives from it and the image's name")
      ->capture_default_str();
}

std::string resolve_preset(const std::string& name) {
  if (fs::exists(name) && fs::is_regular_file(name)) return name;
  const fs::path bundled = fs::path(IIDM_SOURCE_DIR) / "configs" / "presets" / (name + ".json");
  if (fs::exists(bundled)) return bundled.string();
  std::vector<std::string> known;
  if (fs::exists(bundled.parent_path()))
    for (const auto& e : fs::directory_iterator(bundled.parent_path())) known.push_back(e.path().stem().string());
  std::sort(known.begin(), known.end());
  fail("unknown preset '{}' (bundled: {}; or give a file)", name, fmt::join(known, ", "));
}

std::vector<Stage> GenerationOptions::stages() const {
  Preset p = Preset::from_file(resolve_preset(preset));
  std::vector<Stage> stages = p.stages;
  if (rounds) {
    if (*rounds < 1) fail("--refine must be at least 1, got {}", *rounds);
    while (static_cast<int>(stages.size()) < *rounds) stages.push_back(stages.back());
    stages.resize(*rounds);
  }
  // Names become types once, here; errors name the flag.
  auto parsed = [](const char* flag, auto parse, const std::optional<std::string>& text) {
    try {
      return parse(*text);
    } catch (const Error& e) {
      fail("{}: {}", flag, e.what());
    }
  };
  for (size_t i = 0; i < stages.size(); ++i) {
    Stage& s = stages[i];
    if (respacing) s.respacing = *respacing;
    if (sampler) s.sampler = parsed("--sampler", parse_sampler, sampler);
    if (strength) {
      s.strength = *strength;
      s.start_index = -1;
    }
    if (start_index) s.start_index = *start_index;
    if (guidance) s.guidance = *guidance;
    if (eta) s.eta = *eta;
    if (clip) s.clip_denoised = parsed("--clip-denoised", parse_clip_denoised, clip);
    if (color_transfer && i > 0) s.color_transfer = parsed("--color-transfer", parse_color_transfer, color_transfer);
    // What needs the model (the chain length) is checked once it is loaded (Pipeline::check_stages).
    try {
      s.validate_settings();
    } catch (const Error& e) {
      fail("round {} (preset '{}' with the flags given): {}", i + 1, preset, e.what());
    }
  }
  return stages;
}

PipelineOptions GenerationOptions::pipeline_options(const CommonOptions& common, bool announce) const {
  PipelineOptions o;
  o.device = parse_device(common.device);
  const PrecisionChoice choice = resolve_precision(precision, o.device);
  o.precision = choice.dtype;
  if (channels_last && no_channels_last) fail("--channels-last and --no-channels-last contradict each other");
  o.channels_last = channels_last || (!no_channels_last && o.precision == torch::kBFloat16);
  if (announce)
    fmt::print(stderr, "precision: {} ({}){}\n", precision_name(choice.dtype), choice.reason,
               o.channels_last ? ", channels-last" : "");
  o.tile = tile;
  o.batched_guidance = !two_pass_guidance;
  o.ignore_label = ignore_label;
  return o;
}

std::string describe(const std::vector<Stage>& stages) {
  std::vector<std::string> parts;
  for (const auto& s : stages) {
    std::string where =
        s.start_index >= 0 ? fmt::format("@{}", s.start_index) : fmt::format(" strength {}", s.strength);
    std::string transfer =
        &s != &stages.front() && s.color_transfer != ColorTransfer::kNone ? to_string(s.color_transfer) + " -> " : "";
    parts.push_back(fmt::format("{}{} {}{} s={}", transfer, to_string(s.sampler), s.respacing, where, s.guidance));
  }
  return fmt::format("{}", fmt::join(parts, " | "));
}

}  // namespace iidm::cli

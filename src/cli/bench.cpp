// `iidm bench`: times the parts of generation for a model config, size and precision on this
// machine (pipeline/benchmark.h does the work); one line per result, or one JSON object per line.
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "cli/generation_options.h"
#include "core/runtime.h"
#include "pipeline/benchmark.h"

#ifndef IIDM_SOURCE_DIR
#define IIDM_SOURCE_DIR "."
#endif

namespace iidm::cli {

std::function<int()> add_bench_command(CLI::App& app, const CommonOptions& common) {
  auto* cmd =
      app.add_subcommand("bench", "Time the U-Net, the guidance pair, the autoencoder and a preset on this machine");
  struct Args {
    BenchOptions bench;
    std::string size = "512x384", precision = "auto", parts, preset = "fast";
    bool json = false, channels_last = false, no_channels_last = false, two_pass = false;
    int64_t tile = 0;
  };
  auto a = std::make_shared<Args>();
  a->bench.files.config = std::string(IIDM_SOURCE_DIR) + "/configs/models/iidm.json";
  cmd->add_option("--model", a->bench.files.config, "Model config (default: the IIDM-size model)")
      ->check(CLI::ExistingFile)
      ->capture_default_str();
  cmd->add_option("--unet", a->bench.files.unets, "U-Net weights (default: random initialisation)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--autoencoder", a->bench.files.autoencoder, "Autoencoder weights (default: random)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--size", a->size, "Image size WIDTHxHEIGHT")->capture_default_str();
  cmd->add_option("--precision", a->precision, "auto, fp32 or bf16")->capture_default_str();
  cmd->add_flag("--channels-last", a->channels_last, "NHWC convolutions (default with bf16, as generate)");
  cmd->add_flag("--no-channels-last", a->no_channels_last, "NCHW convolutions even in bf16");
  cmd->add_flag("--two-pass-guidance", a->two_pass, "Guidance as two forwards instead of one of batch 2");
  cmd->add_option("--tile", a->tile, "Autoencoder tile side in pixels (0: whole image)")->capture_default_str();
  cmd->add_option("--runs", a->bench.runs, "Timed runs per part (the median is reported)")->capture_default_str();
  cmd->add_option("--parts", a->parts,
                  "Comma-separated parts: machine, peak, unet, pair, encode, decode, preset, generate, agreement "
                  "(default: machine,peak,unet,pair,encode,decode,preset)");
  cmd->add_option("--preset", a->preset, "Presets (comma-separated) to estimate; generate / agreement run the first")
      ->capture_default_str();
  cmd->add_option("--mask", a->bench.mask, "generate / agreement: a label map (default: random rectangles)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--style", a->bench.style, "generate / agreement: a style reference (default: random pixels)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--seed", a->bench.seed, "Seed of the random inputs")->capture_default_str();
  cmd->add_flag("--json", a->json, "Print one JSON object per line instead of text");
  return [a, &common]() {
    BenchOptions& b = a->bench;
    const ImageSize size = parse_size(a->size);
    b.width = size.width;
    b.height = size.height;
    if (!a->parts.empty()) {
      b.parts.clear();
      std::stringstream list(a->parts);
      for (std::string part; std::getline(list, part, ',');)
        if (!part.empty()) b.parts.push_back(part);
    }
    b.pipeline.device = parse_device(common.device);
    const PrecisionChoice choice = resolve_precision(a->precision, b.pipeline.device);
    b.pipeline.precision = choice.dtype;
    b.pipeline.channels_last = a->channels_last || (!a->no_channels_last && choice.dtype == torch::kBFloat16);
    if (a->channels_last || a->no_channels_last) b.agreement_channels_last = a->channels_last;
    b.pipeline.batched_guidance = !a->two_pass;
    b.pipeline.tile = a->tile;
    std::stringstream names(a->preset);
    for (std::string name; std::getline(names, name, ',');) {
      GenerationOptions preset_only;
      preset_only.preset = name;
      b.presets.emplace_back(name, preset_only.stages());
    }
    if (!a->json) fmt::print(stderr, "precision: {} ({})\n", precision_name(choice.dtype), choice.reason);
    run_benchmarks(b, [&](const BenchRecord& r) {
      if (a->json)
        std::cout << r.dump() << std::endl;
      else
        std::cout << describe_record(r) << std::endl;
    });
    return 0;
  };
}

}  // namespace iidm::cli

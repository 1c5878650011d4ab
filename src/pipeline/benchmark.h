#pragma once
// `iidm bench`: how fast each part of generation runs on THIS machine, and how close to the
// machine's own limit. It measures the machine's 3x3-convolution peak (fp32 and bf16, channels-last)
// in the same run, then times the parts of a model at a size and precision (median of runs, after a
// warm-up) and counts their FLOPs with torch's profiler. Benchmarks print numbers; nothing here
// decides pass or fail.
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pipeline/pipeline.h"

namespace iidm {

struct BenchOptions {
  ModelFiles files;  // `config` is required; without weights the networks keep their random initialisation
  int64_t height = 384, width = 512;  // image pixels (latent models run the U-Net at 1/f of it)
  PipelineOptions pipeline;
  int runs = 3;  // timed runs per part after a warm-up call; 1 = a single call, no warm-up (large sizes)
  // Which parts: machine (CPU, threads, allocator), peak (the conv peaks), unet (batch 1, SPADE
  // cache on and off), pair (the guidance step as sampling runs it, beside the full forward of batch 2), profile (a
  // step's time by operator), encode, decode, preset (images per hour estimated from the parts), memory (the estimate
  // generate() checks), generate (one real end-to-end image with the preset), agreement (bf16 against fp32 on the same
  // weights and seeds).
  std::vector<std::string> parts{"machine", "peak", "unet", "pair", "encode", "decode", "preset"};
  // Presets by name: `preset` estimates each; generate and agreement run the first.
  std::vector<std::pair<std::string, std::vector<Stage>>> presets;
  std::string mask, style;  // generate / agreement: a label map and a reference (else random ones)
  uint64_t seed = 0;
  // agreement: the memory format of both runs when the user chose one; unset, each precision runs
  // in generate's default for it (fp32 NCHW, bf16 channels-last), whatever `pipeline` says.
  std::optional<bool> agreement_channels_last;

  void validate() const;
};

// One result: {"bench": part, ...numbers}. Printed as a line of text and, with --json, as JSON.
using BenchRecord = nlohmann::ordered_json;
using BenchSink = std::function<void(const BenchRecord&)>;

void run_benchmarks(const BenchOptions& options, const BenchSink& sink);

// A one-line human reading of a record.
std::string describe_record(const BenchRecord& record);

// The self time of each operator torch's profiler sees during `fn`, largest first.
std::vector<std::pair<std::string, double>> profile_self_seconds(const std::function<void()>& fn);

// FLOPs torch's profiler counts for `fn` (convolutions, matmuls, element-wise products and sums).
double count_flops(const std::function<void()>& fn);

}  // namespace iidm

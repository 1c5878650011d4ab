#pragma once
// Training checkpoints: every tensor a trainer needs to continue (weights, EMA, Adam moments) under
// prefixed parameter names, plus metadata (format, step, seed, configs), in ONE safetensors file
// written atomically, so a kill at any moment leaves either the old or the new checkpoint.
// Random state is not stored: trainers draw step n's randomness from a generator seeded by
// (seed, n), so the step number is the RNG state.
#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/safetensors.h"
#include "train/optim.h"

namespace iidm {

// The names of a module's parameters, in the order of module.parameters().
std::vector<std::string> parameter_names(const torch::nn::Module& module);

class CheckpointWriter {
 public:
  explicit CheckpointWriter(const std::string& format);
  // Parameters and buffers under prefix + name.
  void add_module(const std::string& prefix, const torch::nn::Module& module);
  void add_tensors(const std::string& prefix, const std::vector<std::string>& names,
                   const std::vector<torch::Tensor>& tensors);
  // Moments as prefix + "adam_m." / "adam_v." + name, the step count as metadata prefix + "adam_steps".
  void add_optimizer(const std::string& prefix, const std::vector<std::string>& names, AdamW& optimizer);
  // Shadow weights as prefix + "ema." + name, the update count as metadata prefix + "ema_updates".
  void add_ema(const std::string& prefix, const std::vector<std::string>& names, Ema& ema);
  void set(const std::string& key, const std::string& value) { metadata_[key] = value; }
  void write(const std::string& path) const;

 private:
  std::vector<std::pair<std::string, torch::Tensor>> tensors_;
  std::map<std::string, std::string> metadata_;
};

class CheckpointReader {
 public:
  // Refuses files that are not checkpoints of `format` (damaged files are refused by the reader).
  CheckpointReader(const std::string& path, const std::string& format);
  std::string meta(const std::string& key) const;
  int64_t meta_int(const std::string& key) const;
  // Step n's randomness derives from (seed, n): a resumed run must keep the checkpoint's seed.
  void require_seed(uint64_t seed) const;
  void load_module(const std::string& prefix, torch::nn::Module& module) const;
  void load_tensors(const std::string& prefix, const std::vector<std::string>& names,
                    std::vector<torch::Tensor>& targets) const;
  void load_optimizer(const std::string& prefix, const std::vector<std::string>& names, AdamW& optimizer) const;
  void load_ema(const std::string& prefix, const std::vector<std::string>& names, Ema& ema) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  SafeTensorsFile file_;
};

}  // namespace iidm

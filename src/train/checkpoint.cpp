#include "train/checkpoint.h"

#include "core/error.h"
#include "core/state_dict.h"

namespace iidm {
using torch::Tensor;

std::vector<std::string> parameter_names(const torch::nn::Module& module) {
  std::vector<std::string> names;
  for (const auto& item : module.named_parameters(true)) names.push_back(item.key());
  return names;
}

CheckpointWriter::CheckpointWriter(const std::string& format) { metadata_["format"] = format; }

void CheckpointWriter::add_module(const std::string& prefix, const torch::nn::Module& module) {
  for (const auto& [key, value] : state_dict(module)) tensors_.emplace_back(prefix + key, value);
}

void CheckpointWriter::add_tensors(const std::string& prefix, const std::vector<std::string>& names,
                                   const std::vector<Tensor>& tensors) {
  if (names.size() != tensors.size()) fail("checkpoint: {} names for {} tensors", names.size(), tensors.size());
  for (size_t i = 0; i < names.size(); ++i) tensors_.emplace_back(prefix + names[i], tensors[i]);
}

void CheckpointWriter::add_optimizer(const std::string& prefix, const std::vector<std::string>& names,
                                     AdamW& optimizer) {
  add_tensors(prefix + "adam_m.", names, optimizer.exp_avg());
  add_tensors(prefix + "adam_v.", names, optimizer.exp_avg_sq());
  metadata_[prefix + "adam_steps"] = std::to_string(optimizer.steps());
}

void CheckpointWriter::add_ema(const std::string& prefix, const std::vector<std::string>& names, Ema& ema) {
  add_tensors(prefix + "ema.", names, ema.shadow());
  metadata_[prefix + "ema_updates"] = std::to_string(ema.updates());
}

void CheckpointWriter::write(const std::string& path) const { save_safetensors(path, tensors_, metadata_); }

CheckpointReader::CheckpointReader(const std::string& path, const std::string& format)
    : path_(path), file_(SafeTensorsFile::open(path)) {
  const std::string found = meta("format");
  if (found != format) fail("{}: a '{}' checkpoint, but this trainer reads '{}'", path, found, format);
}

std::string CheckpointReader::meta(const std::string& key) const {
  auto it = file_.metadata().find(key);
  if (it == file_.metadata().end()) fail("{}: not a training checkpoint (no '{}' in its metadata)", path_, key);
  return it->second;
}

int64_t CheckpointReader::meta_int(const std::string& key) const {
  const std::string value = meta(key);
  try {
    size_t used = 0;
    const int64_t n = std::stoll(value, &used);
    if (used == value.size()) return n;
  } catch (const std::exception&) {
  }
  fail("{}: metadata '{}' is '{}', not an integer", path_, key, value);
}

void CheckpointReader::require_seed(uint64_t seed) const {
  if (meta("seed") != std::to_string(seed))
    fail("{}: written with seed {}, but this run uses seed {} (a resumed run must keep its seed)", path_, meta("seed"),
         seed);
}

void CheckpointReader::load_module(const std::string& prefix, torch::nn::Module& module) const {
  LoadOptions options;
  options.prefix = prefix;
  load_state_dict(module, file_, options);
}

void CheckpointReader::load_tensors(const std::string& prefix, const std::vector<std::string>& names,
                                    std::vector<Tensor>& targets) const {
  if (names.size() != targets.size()) fail("checkpoint: {} names for {} tensors", names.size(), targets.size());
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string name = prefix + names[i];
    if (!file_.contains(name)) fail("{}: checkpoint has no '{}'", path_, name);
    Tensor source = file_.tensor(name);
    if (source.sizes() != targets[i].sizes())
      fail("{}: '{}' is {}, expected {}", path_, name, fmt::join(source.sizes(), "x"),
           fmt::join(targets[i].sizes(), "x"));
    targets[i].copy_(source);
  }
}

void CheckpointReader::load_optimizer(const std::string& prefix, const std::vector<std::string>& names,
                                      AdamW& optimizer) const {
  load_tensors(prefix + "adam_m.", names, optimizer.exp_avg());
  load_tensors(prefix + "adam_v.", names, optimizer.exp_avg_sq());
  optimizer.set_steps(meta_int(prefix + "adam_steps"));
}

void CheckpointReader::load_ema(const std::string& prefix, const std::vector<std::string>& names, Ema& ema) const {
  load_tensors(prefix + "ema.", names, ema.shadow());
  ema.set_updates(meta_int(prefix + "ema_updates"));
}

}  // namespace iidm

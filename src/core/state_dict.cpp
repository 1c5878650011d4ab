#include "core/state_dict.h"

#include <torch/torch.h>

#include <set>

#include "core/error.h"

namespace iidm {
namespace {

std::string shape_str(at::IntArrayRef shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

std::string list_some(const std::vector<std::string>& items, size_t limit = 12) {
  std::string out;
  for (size_t i = 0; i < items.size() && i < limit; ++i) out += "\n    " + items[i];
  if (items.size() > limit) out += fmt::format("\n    ... and {} more", items.size() - limit);
  return out;
}

std::string strip_dots(const std::string& s) {
  std::string out;
  for (char c : s)
    if (c != '.') out.push_back(c);
  return out;
}

}  // namespace

std::vector<std::pair<std::string, torch::Tensor>> state_dict(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : module.named_parameters(true)) out.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers(true)) out.emplace_back(b.key(), b.value());
  return out;
}

void load_state_dict(torch::nn::Module& module, const SafeTensorsFile& file, const LoadOptions& options) {
  std::string ema_base;
  if (options.ldm_ema) {
    std::string p = options.prefix;
    if (p.rfind("model.", 0) == 0) p = p.substr(6);
    ema_base = strip_dots(p);
  }
  auto file_key = [&](const std::string& key) {
    return options.ldm_ema ? "model_ema." + ema_base + strip_dots(key) : options.prefix + key;
  };

  std::vector<std::string> missing, wrong_shape, unexpected;
  std::set<std::string> used;
  auto targets = state_dict(module);
  for (const auto& [key, target] : targets) {
    const std::string name = file_key(key);
    if (!file.contains(name)) {
      missing.push_back(name);
      continue;
    }
    used.insert(name);
    const auto& entry = file.entry(name);
    if (at::IntArrayRef(entry.shape) != target.sizes())
      wrong_shape.push_back(
          fmt::format("{}: file {} vs model {}", name, shape_str(entry.shape), shape_str(target.sizes())));
  }
  const std::string scope = options.ldm_ema ? "model_ema." + ema_base : options.prefix;
  for (const auto& name : file.names())
    if (name.rfind(scope, 0) == 0 && !used.count(name)) {
      // LitEma's bookkeeping buffers are not weights.
      if (options.ldm_ema && (name == "model_ema.decay" || name == "model_ema.num_updates")) continue;
      unexpected.push_back(name);
    }
  if (options.allow_unexpected) unexpected.clear();
  if (!missing.empty() || !wrong_shape.empty() || !unexpected.empty()) {
    std::string msg = fmt::format("{}: weights do not match the model (prefix '{}')", file.path(), scope);
    if (!missing.empty()) msg += fmt::format("\n  {} missing:{}", missing.size(), list_some(missing));
    if (!wrong_shape.empty())
      msg += fmt::format("\n  {} with the wrong shape:{}", wrong_shape.size(), list_some(wrong_shape));
    if (!unexpected.empty()) msg += fmt::format("\n  {} unexpected:{}", unexpected.size(), list_some(unexpected));
    throw Error(msg);
  }
  torch::NoGradGuard no_grad;
  for (auto& [key, target] : targets) {
    torch::Tensor source = file.tensor(file_key(key));
    if (source.is_floating_point() != target.is_floating_point())
      fail("{}: tensor '{}' has dtype {} but the model expects {}", file.path(), file_key(key),
           c10::toString(source.scalar_type()), c10::toString(target.scalar_type()));
    target.copy_(source);
  }
}

void load_state_dict(torch::nn::Module& module, const std::string& path, const LoadOptions& options) {
  load_state_dict(module, SafeTensorsFile::open(path), options);
}

void save_state_dict(const torch::nn::Module& module, const std::string& path, bool keep_dtype,
                     const std::map<std::string, std::string>& metadata) {
  auto tensors = state_dict(module);
  if (!keep_dtype)
    for (auto& [key, t] : tensors)
      if (t.is_floating_point()) t = t.to(torch::kFloat32);
  save_safetensors(path, tensors, metadata);
}

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters(true)) n += p.numel();
  return n;
}

}  // namespace iidm

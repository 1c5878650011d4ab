#include "core/conv.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include <ATen/core/stack.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace iidm {
using torch::Tensor;

namespace {

std::atomic<bool> enabled{[] {
  const char* v = std::getenv("IIDM_PREPACK");
  return !(v && std::strcmp(v, "0") == 0);
}()};

// LibTorch's own prepacking ops (registered by libtorch_cpu when it is built with oneDNN, as
// Debian's is); looked up once, absent on builds without them.
struct PrepackOps {
  c10::optional<c10::OperatorHandle> prepack, run;
  PrepackOps() {
    auto& d = c10::Dispatcher::singleton();
    prepack = d.findSchema({"mkldnn_prepacked::conv2d_prepack", ""});
    run = d.findSchema({"mkldnn_prepacked::conv2d_run", ""});
  }
  bool available() const { return prepack && run && at::hasMKLDNN(); }
};
const PrepackOps& ops() {
  static const PrepackOps o;
  return o;
}

struct Entry {
  // Held weakly: the weight's memory (hence its address, the map's key) is not reused while any
  // weak reference lives, and expired() tells when its model is gone.
  c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl> weight;
  uint32_t version;
  std::vector<int64_t> input;
  torch::ScalarType dtype;
  c10::IValue context;
  int64_t bytes;
};

std::mutex mutex;
std::atomic<int64_t> flops{0};
std::unordered_map<const c10::TensorImpl*, std::vector<Entry>> cache;

std::vector<int64_t> pair(const torch::ExpandingArray<2>& a) { return {(*a)[0], (*a)[1]}; }

// oneDNN 2.6 has bf16 convolution kernels only from AVX-512 (BW, VL, DQ) on: elsewhere its primitive
// cannot be created ("could not create a primitive descriptor iterator") and LibTorch's own
// forward takes its slow reference path instead. The same test as LibTorch's
// mkldnn_bf16_device_check(), so the prepacked path is taken exactly where LibTorch's would be.
bool onednn_has_bf16() {
  static const bool has =
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return has;
}
bool prepacked_dtype(torch::ScalarType dtype) {
  return dtype == torch::kFloat32 || (dtype == torch::kBFloat16 && onednn_has_bf16());
}

// Whether the prepacked path computes exactly what the module's forward would.
bool eligible(const torch::nn::Conv2dImpl& conv, const Tensor& x) {
  const auto& o = conv.options;
  const auto dtype = x.scalar_type();
  return enabled.load(std::memory_order_relaxed) && !at::GradMode::is_enabled() && x.device().is_cpu() &&
         x.dim() == 4 && prepacked_dtype(dtype) && conv.weight.scalar_type() == dtype &&
         (!conv.bias.defined() || conv.bias.scalar_type() == dtype) &&
         x.is_contiguous(torch::MemoryFormat::ChannelsLast) && !o.transposed() &&
         c10::holds_alternative<torch::ExpandingArray<2>>(o.padding()) &&
         c10::holds_alternative<torch::enumtype::kZeros>(o.padding_mode()) && at::globalContext().userEnabledMkldnn() &&
         ops().available();
}

c10::IValue prepacked(torch::nn::Conv2dImpl& conv, const Tensor& x) {
  const Tensor& w = conv.weight;
  const c10::TensorImpl* key = w.unsafeGetTensorImpl();
  const uint32_t version = key->version_counter().current_version();
  std::lock_guard<std::mutex> lock(mutex);
  auto& entries = cache[key];
  for (auto& e : entries)
    if (!e.weight.expired() && e.version == version && e.dtype == x.scalar_type() && x.sizes().equals(e.input))
      return e.context;
  // A new entry: first drop what belongs to destroyed models or to older versions of this weight.
  for (auto it = cache.begin(); it != cache.end();) {
    auto& v = it->second;
    v.erase(std::remove_if(
                v.begin(), v.end(),
                [&](const Entry& e) { return e.weight.expired() || (it->first == key && e.version != version); }),
            v.end());
    it = v.empty() && it->first != key ? cache.erase(it) : std::next(it);
  }
  const auto& o = conv.options;
  // The context keeps the tensor it is given: a detached alias (same storage, its own TensorImpl),
  // so that it does not keep the parameter itself alive and the entry can expire with its model.
  torch::jit::Stack stack{w.detach(),         conv.bias.defined() ? c10::IValue(conv.bias) : c10::IValue(),
                          pair(o.stride()),   pair(c10::get<torch::ExpandingArray<2>>(o.padding())),
                          pair(o.dilation()), o.groups(),
                          x.sizes().vec(),    std::string("none")};
  ops().prepack->callBoxed(&stack);
  cache[key].push_back(Entry{c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>(w.getIntrusivePtr()),
                             version, x.sizes().vec(), x.scalar_type(), stack.at(0),
                             w.numel() * static_cast<int64_t>(w.element_size())});
  return stack.at(0);
}

}  // namespace

Tensor conv2d(torch::nn::Conv2dImpl& conv, const Tensor& x) {
  if (!eligible(conv, x)) return conv.forward(x);
  torch::jit::Stack stack{x, prepacked(conv, x)};
  ops().run->callBoxed(&stack);
  Tensor y = stack.at(0).toTensor();
  // Multiply-adds x 2 over the output, as the profiler counts aten::conv2d.
  const auto& w = conv.weight;
  flops.fetch_add(2 * (y.numel() / y.size(1)) * w.numel(), std::memory_order_relaxed);
  return y;
}

double prepacked_convolution_flops() { return static_cast<double>(flops.load()); }

bool prepacked_convolutions_enabled() { return enabled.load() && ops().available(); }
bool prepacked_convolutions_enabled(torch::ScalarType dtype) {
  return prepacked_convolutions_enabled() && prepacked_dtype(dtype);
}
void set_prepacked_convolutions(bool on) { enabled.store(on); }

int64_t prepacked_convolution_bytes() {
  std::lock_guard<std::mutex> lock(mutex);
  int64_t total = 0;
  for (const auto& [key, entries] : cache)
    for (const auto& e : entries)
      if (!e.weight.expired()) total += e.bytes;
  return total;
}

void clear_prepacked_convolutions() {
  std::lock_guard<std::mutex> lock(mutex);
  cache.clear();
}

}  // namespace iidm

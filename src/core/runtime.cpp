#include "core/runtime.h"

#include <ATen/autocast_mode.h>

#include <torch/torch.h>

#include <cstdlib>
#include <thread>

#include "core/error.h"
#include "core/process_stats.h"

namespace iidm {

torch::Device parse_device(const std::string& name) {
  torch::Device device(torch::kCPU);
  try {
    device = torch::Device(name);
  } catch (const std::exception&) {
    fail("unknown device '{}' (expected cpu, cuda or cuda:N)", name);
  }
  if (device.is_cuda() && !torch::cuda::is_available())
    fail("device '{}' requested but this LibTorch build has no usable CUDA device", name);
  return device;
}

torch::ScalarType parse_precision(const std::string& name) {
  if (name == "fp32" || name == "float32") return torch::kFloat32;
  if (name == "bf16" || name == "bfloat16") return torch::kBFloat16;
  if (name == "fp16" || name == "float16") return torch::kFloat16;
  fail("unknown precision '{}' (expected fp32, bf16 or fp16)", name);
}

std::string precision_name(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32:
      return "fp32";
    case torch::kBFloat16:
      return "bf16";
    case torch::kFloat16:
      return "fp16";
    default:
      return c10::toString(dtype);
  }
}

bool cpu_has_native_bf16() { return cpu_has_flag("avx512_bf16") || cpu_has_flag("amx_bf16"); }

PrecisionChoice resolve_precision(const std::string& name, const torch::Device& device) {
  if (name != "auto") return {parse_precision(name), "as requested"};
  if (!device.is_cpu())
    return {torch::kFloat32, "auto: fp32 on " + device.str() + " (ask for bf16 or fp16 explicitly)"};
  if (cpu_has_native_bf16()) return {torch::kBFloat16, "auto: this CPU computes bf16 natively"};
  return {torch::kFloat32, "auto: this CPU has no native bf16 (no avx512_bf16 or AMX), where fp32 is faster"};
}

std::optional<int> env_int(const char* name) {
  const char* value = std::getenv(name);
  if (!value) return std::nullopt;
  char* end = nullptr;
  const long v = std::strtol(value, &end, 10);
  if (!*value || !end || *end) fail("${}='{}' is not an integer", name, value);
  return static_cast<int>(v);
}

int configure_threads(int requested) {
  int threads = requested;
  if (threads <= 0) {
    if (auto env = env_int("IIDM_THREADS")) {
      if (*env <= 0) fail("IIDM_THREADS={} is not a positive integer", *env);
      threads = *env;
    }
  }
  if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
  torch::set_num_threads(threads);
  // Subnormal floats take a slow microcode path on x86 (~100x per operation); backward passes of
  // saturated activations produce them in bulk, stalling training. Flush them to zero, as
  // torch.set_flush_denormal(True) does; threads created later (OpenMP workers) inherit the mode.
  at::globalContext().setFlushDenormal(true);
  return threads;
}

AutocastGuard::AutocastGuard(const torch::Device& device, bool enabled) {
  if (!enabled) return;
  active_ = true;
  cuda_ = device.is_cuda();
  if (!cuda_ && !device.is_cpu()) fail("bf16 training: autocast supports cpu and cuda, not {}", device.str());
  was_enabled_ = cuda_ ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
  was_dtype_ = cuda_ ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
  if (cuda_) {
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(true);
  } else {
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(true);
  }
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  // The cast weights are cached for the duration of the outermost guard only.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  if (cuda_) {
    at::autocast::set_enabled(was_enabled_);
    at::autocast::set_autocast_gpu_dtype(was_dtype_);
  } else {
    at::autocast::set_cpu_enabled(was_enabled_);
    at::autocast::set_autocast_cpu_dtype(was_dtype_);
  }
}

}  // namespace iidm

#include "core/runtime.h"

#include <torch/torch.h>

#include <cstdlib>
#include <thread>

#include "core/error.h"

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
  return threads;
}

}  // namespace iidm

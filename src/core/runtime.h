#pragma once
// Device, precision and thread settings: chosen once at the edge (CLI flags, environment) and
// passed down; nothing below assumes CPU.
#include <torch/types.h>

#include <optional>
#include <string>

namespace iidm {

// "cpu", "cuda", "cuda:1", "mps"...; errors name the value and say what is available.
torch::Device parse_device(const std::string& name);
// "fp32" | "bf16" | "fp16".
torch::ScalarType parse_precision(const std::string& name);

// "fp32", "bf16", "fp16" (the names parse_precision reads), or torch's name for other types.
std::string precision_name(torch::ScalarType dtype);

// A --precision value made concrete for a device, with the reason (the run prints it).
struct PrecisionChoice {
  torch::ScalarType dtype = torch::kFloat32;
  std::string reason;
};
// "auto" is bf16 on CPUs that compute it natively (avx512_bf16 or AMX: 2-4x faster than fp32, and
// within the agreement docs/performance.md measures), fp32 elsewhere: where bf16 is emulated it is
// slower than fp32, and on GPUs the choice is left to the user. Other names as parse_precision.
PrecisionChoice resolve_precision(const std::string& name, const torch::Device& device);
// Whether this CPU has native bf16 arithmetic (avx512_bf16 or amx_bf16).
bool cpu_has_native_bf16();

// Thread count for intra-op parallelism. LibTorch picks 1 on some machines, so the project always
// sets it: `requested` > 0 wins, else $IIDM_THREADS, else the number of cores. Returns the count.
int configure_threads(int requested = 0);

// The integer value of environment variable `name`, or nullopt when unset; a value that is not an
// integer is an error naming the variable.
std::optional<int> env_int(const char* name);

// Mixed precision for training: while alive, matmuls and convolutions run in bfloat16 (autocast)
// on `device`, with float32 weights, optimiser state and reductions. A no-op when not `enabled`.
class AutocastGuard {
 public:
  AutocastGuard(const torch::Device& device, bool enabled);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false, cuda_ = false, was_enabled_ = false;
  c10::ScalarType was_dtype_ = c10::ScalarType::Float;
};

}  // namespace iidm

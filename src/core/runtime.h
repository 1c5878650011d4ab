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

// Thread count for intra-op parallelism. LibTorch picks 1 on some machines, so the project always
// sets it: `requested` > 0 wins, else $IIDM_THREADS, else the number of cores. Returns the count.
int configure_threads(int requested = 0);

// The integer value of environment variable `name`, or nullopt when unset; a value that is not an
// integer is an error naming the variable.
std::optional<int> env_int(const char* name);

}  // namespace iidm

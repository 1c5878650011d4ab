#pragma once
// Device, precision and thread settings: chosen once at the edge (CLI flags, environment) and
// passed down; nothing below assumes CPU.
#include <torch/types.h>

#include <string>

namespace iidm {

// "cpu", "cuda", "cuda:1", "mps"...; errors name the value and say what is available.
torch::Device parse_device(const std::string& name);
// "fp32" | "bf16" | "fp16".
torch::ScalarType parse_precision(const std::string& name);

// Thread count for intra-op parallelism. LibTorch picks 1 on some machines, so the project always
// sets it: `requested` > 0 wins, else $IIDM_THREADS, else the number of cores. Returns the count.
int configure_threads(int requested = 0);

}  // namespace iidm

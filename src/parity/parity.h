#pragma once
// Runs the reference cases of ../shared/parity (see its README for the contract) with the
// project's own code. Each case folder has config.json (`kind` + hyper-parameters), io.safetensors
// and, for model kinds, weights.safetensors.
#include <torch/types.h>

#include <string>
#include <vector>

namespace iidm {

struct ParityCheck {
  std::string name;
  double max_error = 0;  // max |ours - reference| (or the count of mismatches for keys)
  double tolerance = 0;  // the allowed max error: tol * max(1, max |reference|)
  bool passed = false;
  std::string detail;
};

struct ParityCaseResult {
  std::string dir, kind;
  std::vector<ParityCheck> checks;
  std::string error;  // set when the case could not run at all
  bool passed() const;
};

// Never throws for problems of the case itself; they are reported in `error`.
ParityCaseResult run_parity_case(const std::string& dir, const torch::Device& device = torch::kCPU);

// Tolerances of the contract.
constexpr double kTolSingleEval = 1e-4;
constexpr double kTolSampler = 1e-3;
constexpr double kTolFrechet = 1e-6;
constexpr double kTolTables = 1e-12;  // float64 tables and schedules (relative)

}  // namespace iidm

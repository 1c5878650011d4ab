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

// One check whose batch items (dimension 0) have tolerances of their own: item n passes when
// max|ours_n - ref_n| <= tolerances[n] * max(1, max|ref_n|). The check reports the item closest to
// (or furthest over) its limit as max_error / tolerance and lists every item in `detail`, with
// `item_notes[n]` (say, what its tolerance was scaled by) when given.
ParityCheck compare_per_item(const std::string& name, const torch::Tensor& ours, const torch::Tensor& reference,
                             const std::vector<double>& tolerances, const std::vector<std::string>& item_notes = {});

// The contract's tolerance for `pstep_pred_xstart` of batch item n (before the max(1, max|ref_n|)
// factor): x0 = (x_t - sqrt(1 - a) eps) / sqrt(a) amplifies a rounding difference in eps by
// sqrt(1/a - 1), and guidance eps0 + s (eps_y - eps0) one in the two passes by up to 2s - 1, so
// tol_n = 1e-4 * max(1, sqrt(1/a_n - 1)) * max(1, 2s - 1), with a_n = alphas_cumprod at the item's
// index in the respaced chain. Returns the tolerances and, in `notes`, the two factors.
std::vector<double> pred_xstart_tolerances(const std::vector<double>& alphas_cumprod_n, double guidance_scale,
                                           std::vector<std::string>* notes = nullptr);

// Tolerances of the contract.
constexpr double kTolSingleEval = 1e-4;
constexpr double kTolSampler = 1e-3;
constexpr double kTolFrechet = 1e-6;
constexpr double kTolTables = 1e-12;  // float64 tables and schedules (relative)

}  // namespace iidm

// `iidm check CASE_DIR...`: runs reference parity cases and prints each expected output's error.
#include <fmt/format.h>

#include <filesystem>
#include <iostream>

#include <ATen/Parallel.h>

#include "cli/commands.h"
#include "core/runtime.h"
#include "parity/parity.h"

namespace iidm::cli {

std::function<int()> add_check_command(CLI::App& app, const CommonOptions& common) {
  auto* cmd = app.add_subcommand("check",
                                 "Run reference parity cases (e.g. ../shared/parity/*) and compare every "
                                 "expected output within the contract's tolerance");
  auto dirs = std::make_shared<std::vector<std::string>>();
  cmd->add_option("cases", *dirs, "Case folders (config.json + io.safetensors [+ weights.safetensors])")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->footer("Exit status: 0 if every case passed, 1 otherwise.");
  return [dirs, &common]() {
    const torch::Device device = parse_device(common.device);
    int passed = 0, failed = 0;
    for (const auto& dir : *dirs) {
      // A shell glob such as ../shared/parity/* also names the folder's README: skip plain files.
      if (!std::filesystem::is_directory(dir)) {
        fmt::print("{} (not a case folder, skipped)\n", dir);
        continue;
      }
      ParityCaseResult result = run_parity_case(dir, device);
      fmt::print("{} ({})\n", dir, result.kind.empty() ? "?" : result.kind);
      for (const auto& c : result.checks) {
        fmt::print("  {:<32} max|err| {:<11.4g} tol {:<11.4g} {}{}\n", c.name, c.max_error, c.tolerance,
                   c.passed ? "ok" : "FAIL", c.detail.empty() ? "" : "  " + c.detail);
      }
      if (!result.error.empty()) fmt::print("  ERROR: {}\n", result.error);
      fmt::print("  => {}\n", result.passed() ? "passed" : "FAILED");
      (result.passed() ? passed : failed)++;
    }
    fmt::print("parity: {} cases passed, {} failed ({} threads, {})\n", passed, failed, at::get_num_threads(),
               device.str());
    std::cout.flush();
    return failed == 0 ? 0 : 1;
  };
}

}  // namespace iidm::cli

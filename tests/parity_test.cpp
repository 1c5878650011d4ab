// Tier 1: every reference case in ../shared/parity must pass with the project's own code.
#include <gtest/gtest.h>

#include <filesystem>

#include "parity/parity.h"

namespace fs = std::filesystem;

namespace {

std::vector<std::string> parity_cases() {
  std::vector<std::string> cases;
  if (!fs::exists(IIDM_PARITY_DIR)) return cases;
  for (const auto& entry : fs::directory_iterator(IIDM_PARITY_DIR))
    if (entry.is_directory() && fs::exists(entry.path() / "config.json")) cases.push_back(entry.path().filename());
  std::sort(cases.begin(), cases.end());
  return cases;
}

class ParityCase : public ::testing::TestWithParam<std::string> {};

TEST_P(ParityCase, MatchesReference) {
  const auto result = iidm::run_parity_case((fs::path(IIDM_PARITY_DIR) / GetParam()).string());
  ASSERT_TRUE(result.error.empty()) << result.error;
  ASSERT_FALSE(result.checks.empty());
  for (const auto& check : result.checks)
    EXPECT_TRUE(check.passed) << check.name << ": max|err| " << check.max_error << " > tol " << check.tolerance << " "
                              << check.detail;
}

INSTANTIATE_TEST_SUITE_P(Shared, ParityCase, ::testing::ValuesIn(parity_cases()),
                         [](const auto& info) { return info.param; });

TEST(ParityCases, ArePresent) {
  // Without the cases the suite would prove nothing about checkpoint compatibility.
  EXPECT_GE(parity_cases().size(), 12u) << "parity cases not found at " << IIDM_PARITY_DIR;
}

}  // namespace

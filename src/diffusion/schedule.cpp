#include "diffusion/schedule.h"

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <set>
#include <sstream>

#include "core/error.h"

namespace iidm {

std::vector<double> guided_beta_schedule(const std::string& name, int T) {
  if (T <= 0) fail("beta schedule: the number of timesteps must be positive, got {}", T);
  std::vector<double> betas(T);
  if (name == "linear") {
    const double scale = 1000.0 / T;
    const double start = scale * 0.0001, end = scale * 0.02;
    // numpy.linspace: start + i * step, the last value exactly `end`.
    const double step = T > 1 ? (end - start) / (T - 1) : 0.0;
    for (int i = 0; i < T; ++i) betas[i] = start + i * step;
    if (T > 1) betas[T - 1] = end;
    return betas;
  }
  if (name == "cosine") {
    auto alpha_bar = [](double t) {
      const double v = std::cos((t + 0.008) / 1.008 * M_PI / 2);
      return v * v;
    };
    for (int i = 0; i < T; ++i) {
      const double t1 = static_cast<double>(i) / T, t2 = static_cast<double>(i + 1) / T;
      betas[i] = std::min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999);
    }
    return betas;
  }
  fail("unknown beta schedule '{}' (expected linear or cosine)", name);
}

std::vector<double> ldm_linear_beta_schedule(int T, double linear_start, double linear_end) {
  if (T <= 0) fail("beta schedule: the number of timesteps must be positive, got {}", T);
  const double a = std::sqrt(linear_start), b = std::sqrt(linear_end);
  std::vector<double> betas(T);
  // torch.linspace fills the first half from the start and the second half from the end.
  const double step = T > 1 ? (b - a) / (T - 1) : 0.0;
  const int halfway = T / 2;
  for (int i = 0; i < T; ++i) {
    const double v = i < halfway ? a + step * i : b - step * (T - 1 - i);
    betas[i] = v * v;
  }
  return betas;
}

std::vector<int> space_timesteps(int T, const std::string& spec) {
  if (spec.empty()) {
    std::vector<int> all(T);
    for (int i = 0; i < T; ++i) all[i] = i;
    return all;
  }
  auto parse_int = [&](const std::string& s) {
    try {
      size_t used = 0;
      const int v = std::stoi(s, &used);
      if (used != s.size()) throw std::invalid_argument(s);
      return v;
    } catch (const std::exception&) {
      fail("timestep respacing '{}': '{}' is not an integer", spec, s);
    }
  };
  if (spec.rfind("ddim", 0) == 0) {
    const int desired = parse_int(spec.substr(4));
    for (int stride = 1; stride < T; ++stride) {
      if ((T + stride - 1) / stride == desired) {
        std::vector<int> steps;
        for (int t = 0; t < T; t += stride) steps.push_back(t);
        return steps;
      }
    }
    fail("timestep respacing '{}': no integer stride gives exactly {} steps out of {}", spec, desired, T);
  }
  std::vector<int> counts;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) counts.push_back(parse_int(item));
  if (counts.empty()) fail("timestep respacing '{}' is empty", spec);
  const int sections = static_cast<int>(counts.size());
  const int size_per = T / sections, extra = T % sections;
  std::set<int> steps;
  int start = 0;
  // Python's round() rounds halves to even; nearbyint does too in the default rounding mode.
  std::fesetround(FE_TONEAREST);
  for (int i = 0; i < sections; ++i) {
    const int size = size_per + (i < extra ? 1 : 0);
    if (counts[i] <= 0) fail("timestep respacing '{}': section {} asks for {} steps", spec, i, counts[i]);
    if (size < counts[i])
      fail("timestep respacing '{}': cannot take {} steps from a section of {}", spec, counts[i], size);
    const double stride = counts[i] <= 1 ? 1.0 : static_cast<double>(size - 1) / (counts[i] - 1);
    double cur = 0.0;
    for (int j = 0; j < counts[i]; ++j) {
      steps.insert(start + static_cast<int>(std::nearbyint(cur)));
      cur += stride;
    }
    start += size;
  }
  return {steps.begin(), steps.end()};
}

}  // namespace iidm

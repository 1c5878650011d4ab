#include "metrics/kid.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "core/error.h"

namespace iidm {

double polynomial_mmd_unbiased(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols())
    fail("KID: subsets must have one shape, got {}x{} and {}x{}", a.rows(), a.cols(), b.rows(), b.cols());
  const double m = static_cast<double>(a.rows()), d = static_cast<double>(a.cols());
  if (a.rows() < 2) fail("KID: needs at least 2 samples per set, got {}", a.rows());
  auto kernel = [d](const Eigen::MatrixXd& x, const Eigen::MatrixXd& y) {
    return ((x * y.transpose()).array() / d + 1.0).cube().matrix().eval();
  };
  const Eigen::MatrixXd kxx = kernel(a, a), kyy = kernel(b, b), kxy = kernel(a, b);
  // Diagonals of k(X, X) and k(Y, Y) are left out: that is what makes the estimate unbiased.
  const double sum_xx = kxx.sum() - kxx.trace(), sum_yy = kyy.sum() - kyy.trace();
  return (sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * kxy.sum() / (m * m);
}

KidResult kernel_inception_distance(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b, int subsets, int subset_size,
                                    uint64_t seed) {
  if (a.cols() != b.cols()) fail("KID: feature dimensions differ ({} vs {})", a.cols(), b.cols());
  if (a.rows() < 2 || b.rows() < 2) fail("KID: needs at least 2 samples per set, got {} and {}", a.rows(), b.rows());
  if (subsets < 1 || subset_size < 2) fail("KID: needs subsets >= 1 and subset size >= 2");
  KidResult result;
  result.subset_size = static_cast<int>(std::min<int64_t>({subset_size, a.rows(), b.rows()}));
  const bool whole = a.rows() == result.subset_size && b.rows() == result.subset_size;
  if (whole) {
    result.mean = polynomial_mmd_unbiased(a, b);
    result.subsets = 1;
    return result;
  }
  std::mt19937_64 rng(seed);
  auto draw = [&](const Eigen::MatrixXd& x) {
    std::vector<int64_t> rows(static_cast<size_t>(x.rows()));
    std::iota(rows.begin(), rows.end(), 0);
    std::shuffle(rows.begin(), rows.end(), rng);
    Eigen::MatrixXd subset(result.subset_size, x.cols());
    for (int i = 0; i < result.subset_size; ++i) subset.row(i) = x.row(rows[static_cast<size_t>(i)]);
    return subset;
  };
  std::vector<double> values;
  for (int s = 0; s < subsets; ++s) values.push_back(polynomial_mmd_unbiased(draw(a), draw(b)));
  const double mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  double var = 0;
  for (double v : values) var += (v - mean) * (v - mean);
  result.mean = mean;
  result.stddev = std::sqrt(var / static_cast<double>(values.size()));
  result.subsets = subsets;
  return result;
}

}  // namespace iidm

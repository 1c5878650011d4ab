#pragma once
// Kernel Inception Distance (Bińkowski et al., 2018): the unbiased estimate of the squared maximum
// mean discrepancy between two feature sets under the polynomial kernel k(x, y) = (x·y / d + 1)^3,
// in float64. Unlike FID it has no bias that depends on the number of samples, so it stays
// meaningful for the few dozen images a 2-core machine produces (FID with 2048-d features needs
// thousands).
#include <Eigen/Dense>
#include <cstdint>

namespace iidm {

struct KidResult {
  double mean = 0;    // the average over subsets (KID; ×1000 is the customary reporting unit)
  double stddev = 0;  // over subsets; 0 when one subset covers both sets
  int subsets = 0, subset_size = 0;
};

// a: [n, d], b: [m, d]. As torch-fidelity and clean-fid: `subsets` random subsets of
// `subset_size` rows drawn without replacement from each set (seeded: the same inputs give the
// same number), subset_size capped at min(n, m). When both sets have exactly that many rows, one
// subset is the whole sets and is computed once. Needs at least 2 rows each.
KidResult kernel_inception_distance(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b, int subsets = 100,
                                    int subset_size = 1000, uint64_t seed = 0);

// The unbiased MMD² of two sets of equal size under the kernel above (one KID subset).
double polynomial_mmd_unbiased(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b);

}  // namespace iidm

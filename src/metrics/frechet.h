#pragma once
// The Fréchet distance between two Gaussians fitted to feature sets (the FID formula of
// pytorch-fid), in float64.
#include <Eigen/Dense>

namespace iidm {

struct GaussianStats {
  Eigen::VectorXd mu;     // [d]
  Eigen::MatrixXd sigma;  // [d, d], unbiased (numpy.cov, rowvar=False)
};

// features: [n, d], one row per sample; n >= 2.
GaussianStats gaussian_stats(const Eigen::MatrixXd& features);

// |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2)).
double frechet_distance(const GaussianStats& a, const GaussianStats& b);

}  // namespace iidm

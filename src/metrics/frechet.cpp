#include "metrics/frechet.h"

#include <Eigen/Eigenvalues>

#include "core/error.h"

namespace iidm {

GaussianStats gaussian_stats(const Eigen::MatrixXd& features) {
  if (features.rows() < 2) fail("Fréchet statistics need at least 2 samples, got {}", features.rows());
  GaussianStats s;
  s.mu = features.colwise().mean();
  Eigen::MatrixXd centered = features.rowwise() - s.mu.transpose();
  s.sigma = (centered.transpose() * centered) / static_cast<double>(features.rows() - 1);
  return s;
}

double frechet_distance(const GaussianStats& a, const GaussianStats& b) {
  if (a.mu.size() != b.mu.size() || a.sigma.rows() != b.sigma.rows())
    fail("Fréchet distance: feature dimensions differ ({} vs {})", a.mu.size(), b.mu.size());
  // tr(sqrtm(S1 S2)) = sum of sqrt(eigenvalues of sqrt(S1) S2 sqrt(S1)), a symmetric PSD matrix:
  // stable, real, and equal to the real part pytorch-fid keeps from scipy's sqrtm.
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> e1(a.sigma);
  Eigen::VectorXd root = e1.eigenvalues().cwiseMax(0.0).cwiseSqrt();
  Eigen::MatrixXd sqrt1 = e1.eigenvectors() * root.asDiagonal() * e1.eigenvectors().transpose();
  Eigen::MatrixXd inner = sqrt1 * b.sigma * sqrt1;
  inner = 0.5 * (inner + inner.transpose());
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> e2(inner, Eigen::EigenvaluesOnly);
  const double tr_covmean = e2.eigenvalues().cwiseMax(0.0).cwiseSqrt().sum();
  const Eigen::VectorXd diff = a.mu - b.mu;
  return diff.squaredNorm() + a.sigma.trace() + b.sigma.trace() - 2.0 * tr_covmean;
}

}  // namespace iidm

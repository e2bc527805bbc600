// Truncated SVD of a weight: exact through Eigen's BDCSVD (Eckart-Young: the best rank-r
// approximation in Frobenius norm, with error sqrt(sum of the discarded sigma_i^2)), and the
// randomized SVD of Halko, Martinsson & Tropp (2011, Algorithm 4.4 with QR re-orthonormalisation
// between power iterations; defaults oversampling 10 and 2 power iterations), seeded.
#pragma once

#include <slim/core/checks.hpp>
#include <slim/core/error.hpp>
#include <slim/core/random.hpp>
#include <slim/core/types.hpp>
#include <slim/lowrank/factors.hpp>

#include <Eigen/QR>
#include <Eigen/SVD>

#include <algorithm>
#include <cstdint>

namespace slim::lowrank {

namespace detail {

using ColMatrix = Eigen::MatrixXf;

template <typename Derived>
void validate_weight(const Eigen::MatrixBase<Derived>& w, Index rank, const char* fn) {
  require_nonempty(w, fn);
  require<ArgumentError>(rank >= 1 && rank <= std::min(w.rows(), w.cols()), fn, ": rank ", rank,
                         " is outside 1..min(out, in) = ", std::min(w.rows(), w.cols()));
  require_finite(w, fn);
}

// Splits sqrt(sigma) into both sides: U = left * sqrt(S), V = sqrt(S) * right^T.
inline Factors balanced_factors(const ColMatrix& left, const Eigen::VectorXf& sigma,
                                const ColMatrix& right, Index rank) {
  const Eigen::VectorXf root = sigma.head(rank).cwiseSqrt();
  Factors f;
  f.U = left.leftCols(rank) * root.asDiagonal();
  f.V = root.asDiagonal() * right.leftCols(rank).transpose();
  return f;
}

// Orthonormal basis of the columns of y (thin Q of a Householder QR).
inline ColMatrix orthonormal_basis(const ColMatrix& y) {
  Eigen::HouseholderQR<ColMatrix> qr(y);
  return qr.householderQ() * ColMatrix::Identity(y.rows(), std::min(y.rows(), y.cols()));
}

}  // namespace detail

// Exact truncated SVD: the best rank-`rank` approximation of W in Frobenius norm.
template <typename Derived>
Factorization truncated_svd(const Eigen::MatrixBase<Derived>& w, Index rank) {
  detail::validate_weight(w, rank, "lowrank::truncated_svd");
  const detail::ColMatrix a = w.template cast<float>();
  Eigen::BDCSVD<detail::ColMatrix> svd(a, Eigen::ComputeThinU | Eigen::ComputeThinV);
  Factorization out;
  out.singular_values = svd.singularValues();
  out.factors = detail::balanced_factors(svd.matrixU(), svd.singularValues(), svd.matrixV(), rank);
  return out;
}

struct RandomizedSvdOptions {
  Index oversampling = 10;   // extra sketch columns p (Halko et al. recommend 5-10)
  int power_iterations = 2;  // q subspace iterations, each re-orthonormalised
  std::uint64_t seed = 0;    // seed of the Gaussian test matrix
};

// Randomized SVD: sketch Y = W Omega with a Gaussian Omega of rank + oversampling columns,
// refine the range with `power_iterations` rounds of Q <- orth(W orth(W^T Q)), then take the
// exact SVD of the small B = Q^T W. Exact for matrices of rank <= rank + oversampling.
template <typename Derived>
Factorization randomized_svd(const Eigen::MatrixBase<Derived>& w, Index rank,
                             const RandomizedSvdOptions& options = {}) {
  detail::validate_weight(w, rank, "lowrank::randomized_svd");
  require<ArgumentError>(options.oversampling >= 0, "lowrank::randomized_svd: oversampling ",
                         options.oversampling, " must be non-negative");
  require<ArgumentError>(options.power_iterations >= 0,
                         "lowrank::randomized_svd: power_iterations ", options.power_iterations,
                         " must be non-negative");
  const detail::ColMatrix a = w.template cast<float>();
  const Index k = std::min(rank + options.oversampling, std::min(a.rows(), a.cols()));
  const detail::ColMatrix omega = random::gaussian(a.cols(), k, options.seed);
  detail::ColMatrix q = detail::orthonormal_basis(a * omega);
  for (int i = 0; i < options.power_iterations; ++i) {
    const detail::ColMatrix z = detail::orthonormal_basis(a.transpose() * q);
    q = detail::orthonormal_basis(a * z);
  }
  const detail::ColMatrix b = q.transpose() * a;  // k x in
  Eigen::BDCSVD<detail::ColMatrix> svd(b, Eigen::ComputeThinU | Eigen::ComputeThinV);
  const detail::ColMatrix left = q * svd.matrixU();
  Factorization out;
  out.singular_values = svd.singularValues();
  out.factors = detail::balanced_factors(left, svd.singularValues(), svd.matrixV(), rank);
  return out;
}

}  // namespace slim::lowrank

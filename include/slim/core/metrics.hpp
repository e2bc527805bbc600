// Error metrics between a reference matrix and its approximation: relative Frobenius error,
// max absolute error, SQNR in dB, cosine similarity, and the output error of a compressed
// linear layer on activations, ||X W^T - X Wq^T||_F / ||X W^T||_F. Sums run in double.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/types.hpp>

#include <cmath>
#include <limits>

namespace slim::metrics {

namespace detail {
template <typename A, typename B>
void require_same_shape(const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b,
                        const char* fn) {
  require<ShapeError>(a.rows() == b.rows() && a.cols() == b.cols(), fn, ": reference is ", a.rows(),
                      " x ", a.cols(), " but approximation is ", b.rows(), " x ", b.cols(),
                      "; expected equal shapes");
}
}  // namespace detail

// ||ref - approx||_F / ||ref||_F (0 when both are zero, +inf when only ref is zero).
template <typename A, typename B>
double relative_frobenius(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& approx) {
  detail::require_same_shape(ref, approx, "relative_frobenius");
  const double num = (ref.template cast<double>() - approx.template cast<double>()).squaredNorm();
  const double den = ref.template cast<double>().squaredNorm();
  if (den == 0.0) return num == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(num / den);
}

// max_ij |ref_ij - approx_ij|.
template <typename A, typename B>
double max_abs_error(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& approx) {
  detail::require_same_shape(ref, approx, "max_abs_error");
  if (ref.size() == 0) return 0.0;
  return (ref.template cast<double>() - approx.template cast<double>()).cwiseAbs().maxCoeff();
}

// Signal-to-quantization-noise ratio 10 log10(||ref||^2 / ||ref - approx||^2) in dB
// (+inf for an exact approximation).
template <typename A, typename B>
double sqnr_db(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& approx) {
  detail::require_same_shape(ref, approx, "sqnr_db");
  const double noise = (ref.template cast<double>() - approx.template cast<double>()).squaredNorm();
  const double signal = ref.template cast<double>().squaredNorm();
  if (noise == 0.0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(signal / noise);
}

// Cosine similarity of the two matrices flattened to vectors (1 when both are zero).
template <typename A, typename B>
double cosine_similarity(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& approx) {
  detail::require_same_shape(ref, approx, "cosine_similarity");
  const auto a = ref.template cast<double>();
  const auto b = approx.template cast<double>();
  const double na = a.norm();
  const double nb = b.norm();
  if (na == 0.0 && nb == 0.0) return 1.0;
  if (na == 0.0 || nb == 0.0) return 0.0;
  return a.cwiseProduct(b).sum() / (na * nb);
}

// Output error of a compressed layer: ||X W^T - X Wq^T||_F / ||X W^T||_F, with X tokens x in and
// W, Wq out x in. Computed as ||X (W - Wq)^T|| in double so that it is exact for tiny errors.
template <typename DX, typename DW, typename DQ>
double output_error(const Eigen::MatrixBase<DX>& x, const Eigen::MatrixBase<DW>& w,
                    const Eigen::MatrixBase<DQ>& wq) {
  detail::require_same_shape(w, wq, "output_error");
  require<ShapeError>(x.cols() == w.cols(), "output_error: activations have ", x.cols(),
                      " columns but W has in_features ", w.cols(), "; expected equal");
  const MatrixD xd = x.template cast<double>();
  const MatrixD diff = w.template cast<double>() - wq.template cast<double>();
  const double num = (xd * diff.transpose()).squaredNorm();
  const double den = (xd * w.template cast<double>().transpose()).squaredNorm();
  if (den == 0.0) return num == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(num / den);
}

}  // namespace slim::metrics

// The dampened inverse-Hessian Cholesky factor that GPTQ, SparseGPT and OBS sweep with (Frantar et
// al., 2022, GPTQ Sec. 3 "Cholesky reformulation"): dead inputs (H_jj = 0) get H_jj = 1,
// H += lambda I with lambda = percdamp * mean(diag H) (reference default percdamp 0.01), and U is
// the upper Cholesky factor of H^-1 (U^T U = H^-1), the matrix the reference obtains with cholesky
// -> cholesky_inverse -> cholesky(upper=True). U is computed without forming H^-1: with J the
// reversal permutation and J H J = L L^T, H^-1 = (J L^-1 J)^T (J L^-1 J) and J L^-1 J is upper
// triangular with a positive diagonal, so it is U. If a factorisation fails, percdamp grows
// geometrically a bounded number of times before NumericalError is thrown.
#pragma once

#include <slim/core/checks.hpp>
#include <slim/core/error.hpp>
#include <slim/core/types.hpp>

#include <Eigen/Cholesky>

#include <cmath>
#include <type_traits>
#include <utility>
#include <vector>

namespace slim::calib {

struct DampingOptions {
  double percdamp = 0.01;         // lambda = percdamp * mean(diag H) (GPTQ / SparseGPT reference)
  double growth = 10.0;           // percdamp is multiplied by this after a failed factorisation
  int max_increases = 6;          // increases tried before NumericalError
  bool double_precision = false;  // factor in double (the reference works in fp32)
};

// U (upper, U^T U = (H + lambda I)^-1), which inputs were dead, and the dampening that succeeded.
struct InverseHessianFactor {
  Matrix upper;
  std::vector<bool> dead;  // H_jj was 0: the caller must zero these inputs' weights
  double percdamp = 0.0;   // the fraction of mean(diag H) finally added
  double damp = 0.0;       // lambda = percdamp * mean(diag H) finally added
  int increases = 0;       // how many times the dampening had to grow
};

// Throws ArgumentError unless the dampening options are usable; `fn` names the caller.
inline void validate(const DampingOptions& d, const char* fn) {
  require<ArgumentError>(std::isfinite(d.percdamp) && d.percdamp >= 0.0, fn, ": percdamp ",
                         d.percdamp, " must be finite and non-negative");
  require<ArgumentError>(std::isfinite(d.growth) && d.growth > 1.0, fn, ": damping growth ",
                         d.growth, " must be finite and greater than 1");
  require<ArgumentError>(d.max_increases >= 0, fn, ": max_increases ", d.max_increases,
                         " must be non-negative");
}

// Sets H_jj = 1 wherever H_jj == 0 (an input that was never active) and returns those inputs.
inline std::vector<bool> repair_dead_inputs(Matrix& hessian) {
  std::vector<bool> dead(static_cast<std::size_t>(hessian.rows()), false);
  for (Index j = 0; j < hessian.rows(); ++j) {
    if (hessian(j, j) == 0.0f) {
      hessian(j, j) = 1.0f;
      dead[static_cast<std::size_t>(j)] = true;
    }
  }
  return dead;
}

namespace detail {

// One attempt: factors J (H + damp I) J in place (lower triangle; the strict upper triangle keeps
// H, so a failed attempt can be undone) and moves U = J L^-1 J into `upper`. On success `flipped`
// is released. False if the dampened matrix is not positive definite.
template <typename Scalar>
bool try_inverse_cholesky(
    Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>& flipped,
    const Eigen::Matrix<Scalar, Eigen::Dynamic, 1>& diagonal, double damp, Matrix& upper) {
  using Dense = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Index n = flipped.rows();
  for (Index i = 1; i < n; ++i) {  // restore the lower triangle from the untouched upper one
    flipped.row(i).head(i) = flipped.col(i).head(i).transpose();
  }
  flipped.diagonal() = diagonal.array() + static_cast<Scalar>(damp);
  Eigen::LLT<Eigen::Ref<Dense>, Eigen::Lower> llt(flipped);
  if (llt.info() != Eigen::Success) return false;
  if (!(flipped.diagonal().array() > Scalar(0)).all() || !flipped.diagonal().allFinite()) {
    return false;
  }
  Dense l_inverse = Dense::Identity(n, n);
  flipped.template triangularView<Eigen::Lower>().solveInPlace(l_inverse);
  if (!slim::detail::all_finite(l_inverse)) return false;
  flipped.resize(0, 0);
  l_inverse.template triangularView<Eigen::StrictlyUpper>().setZero();
  l_inverse.reverseInPlace();
  if constexpr (std::is_same_v<Scalar, float>) {
    upper = std::move(l_inverse);
  } else {
    upper = l_inverse.template cast<float>();
  }
  return true;
}

template <typename Scalar>
InverseHessianFactor dampened_inverse_cholesky(Matrix& hessian, const DampingOptions& options,
                                               const char* fn) {
  using Dense = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Index n = hessian.rows();
  InverseHessianFactor out;
  out.dead = repair_dead_inputs(hessian);
  Dense flipped = hessian.reverse().template cast<Scalar>();
  hessian.resize(0, 0);  // the caller's copy is no longer needed: keep peak memory at 2 n^2
  const Eigen::Matrix<Scalar, Eigen::Dynamic, 1> diagonal = flipped.diagonal();
  const double mean_diag = static_cast<double>(diagonal.template cast<double>().mean());
  double percdamp = options.percdamp;
  for (int attempt = 0; attempt <= options.max_increases; ++attempt) {
    out.percdamp = percdamp;
    out.damp = percdamp * mean_diag;
    out.increases = attempt;
    if (try_inverse_cholesky<Scalar>(flipped, diagonal, out.damp, out.upper)) return out;
    percdamp = percdamp > 0.0 ? percdamp * options.growth : 1e-6;
  }
  throw NumericalError(slim::detail::concat(
      fn, ": the Hessian (", n, " x ", n,
      ") is not positive definite even after dampening it by percdamp ", out.percdamp, " (lambda ",
      out.damp, " = percdamp * mean diagonal ", mean_diag, ", after ", options.max_increases,
      " increases); expected a positive semi-definite H = (2/n) X^T X"));
}

}  // namespace detail

// The upper Cholesky factor of (H + lambda I)^-1 for a symmetric H (in x in, only the lower
// triangle is read). H is taken by value: pass std::move(h) to avoid a copy of a large Hessian.
// Throws ShapeError for a non-square or empty H, NumericalError for non-finite entries or an H that
// stays indefinite after every increase, ArgumentError for invalid options.
inline InverseHessianFactor dampened_inverse_cholesky(
    Matrix hessian, const DampingOptions& options = {},
    const char* fn = "dampened_inverse_cholesky") {
  require<ShapeError>(hessian.rows() == hessian.cols() && hessian.rows() > 0, fn, ": Hessian is ",
                      hessian.rows(), " x ", hessian.cols(),
                      "; expected a non-empty square matrix");
  validate(options, fn);
  require_finite(hessian, fn);
  return options.double_precision ? detail::dampened_inverse_cholesky<double>(hessian, options, fn)
                                  : detail::dampened_inverse_cholesky<float>(hessian, options, fn);
}

}  // namespace slim::calib

// Shared pieces of the distillation losses: the Loss result (value and gradient with respect to the
// student's input), per-position weights with an ignore mask (padding) reduced as one weighted mean
// over the kept rows, and a numerically stable row-wise log-softmax (max subtraction, log-sum-exp).
// Every loss computes in double internally and returns its gradient in the caller's scalar type.
#pragma once

#include <slim/core/checks.hpp>
#include <slim/core/error.hpp>
#include <slim/core/types.hpp>

#include <cmath>
#include <limits>
#include <vector>

namespace slim::distill {

template <typename Scalar>
using MatrixOf = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A loss value and its gradient with respect to the student's input (same shape as that input).
template <typename Scalar>
struct Loss {
  double value = 0.0;
  MatrixOf<Scalar> gradient;
};

// Per-position weighting shared by every loss. Row i (a position) contributes with weight
// weight[i] >= 0 (1 when `weight` is empty) unless ignore[i] is true (padding). The loss is the
// weighted mean over the kept rows, sum_i w_i L_i / sum_i w_i, and the gradient of row i carries
// the same factor w_i / sum w, so value and gradient always agree. An ignored row contributes
// exactly zero to both.
struct RowWeights {
  VectorD weight;            // empty: every row weighs 1
  std::vector<bool> ignore;  // empty: no row is ignored
};

namespace detail {

// exp and log applied coefficient-wise through the scalar std:: functions. Eigen's packet exp/log
// for double under AVX-512 trip GCC 12's -Wuninitialized (GCC bug 105593), and the scalar path is
// exact to the last ulp of libm.
struct ScalarExp {
  double operator()(double v) const { return std::exp(v); }
};
struct ScalarLog {
  double operator()(double v) const { return std::log(v); }
};

// log(softmax(row / temperature)) of one row into `out` (double), stable for very large and very
// negative logits: log p_j = (z_j - max z) - log(sum_k exp(z_k - max z)); subtracting the max
// first keeps the entries near it, which carry the probability mass, exact. Entries equal to -inf
// stay -inf (excluded positions; see the attention losses).
template <typename Row>
void row_log_softmax(const Row& row, double temperature, Eigen::RowVectorXd& out) {
  out = row.template cast<double>() / temperature;
  const double m = out.maxCoeff();
  if (m == -std::numeric_limits<double>::infinity()) return;  // fully excluded row
  out.array() -= m;
  out.array() -= std::log(out.unaryExpr(ScalarExp{}).sum());
}

}  // namespace detail

// Row-wise log(softmax(logits / temperature)) in double (see detail::row_log_softmax).
template <typename Derived>
MatrixD log_softmax(const Eigen::MatrixBase<Derived>& logits, double temperature = 1.0) {
  require<ArgumentError>(temperature > 0.0 && std::isfinite(temperature),
                         "distill::log_softmax: temperature ", temperature,
                         " must be positive and finite");
  MatrixD out(logits.rows(), logits.cols());
  Eigen::RowVectorXd row;
  for (Index r = 0; r < logits.rows(); ++r) {
    detail::row_log_softmax(logits.row(r), temperature, row);
    out.row(r) = row;
  }
  return out;
}

namespace detail {

// The per-row factors w_i / sum_kept w (0 for ignored rows). Throws ShapeError if the weights or
// mask do not have `rows` entries, ArgumentError for negative or non-finite weights and when no
// row keeps a positive weight.
inline VectorD row_factors(Index rows, const RowWeights& weighting, const char* fn) {
  require<ShapeError>(weighting.weight.size() == 0 || weighting.weight.size() == rows, fn,
                      ": row weights have ", weighting.weight.size(), " entries; expected ", rows,
                      " (one per row) or none");
  require<ShapeError>(
      weighting.ignore.empty() || static_cast<Index>(weighting.ignore.size()) == rows, fn,
      ": ignore mask has ", weighting.ignore.size(), " entries; expected ", rows,
      " (one per row) or none");
  VectorD factors(rows);
  double total = 0.0;
  for (Index i = 0; i < rows; ++i) {
    double w = 1.0;
    if (weighting.weight.size() > 0) {
      w = weighting.weight[i];
      require<ArgumentError>(std::isfinite(w) && w >= 0.0, fn, ": row weight ", w, " at row ", i,
                             " must be finite and non-negative");
    }
    if (!weighting.ignore.empty() && weighting.ignore[static_cast<std::size_t>(i)]) w = 0.0;
    factors[i] = w;
    total += w;
  }
  require<ArgumentError>(
      total > 0.0, fn, ": all ", rows,
      " rows are masked or have zero weight; expected at least one row to count");
  return factors / total;
}

template <typename A, typename B>
void require_same_shape(const Eigen::MatrixBase<A>& student, const Eigen::MatrixBase<B>& teacher,
                        const char* fn) {
  require<ShapeError>(student.rows() == teacher.rows() && student.cols() == teacher.cols(), fn,
                      ": student is ", student.rows(), " x ", student.cols(), " but teacher is ",
                      teacher.rows(), " x ", teacher.cols(), "; expected equal shapes");
}

inline void require_temperature(double temperature, const char* fn) {
  require<ArgumentError>(temperature > 0.0 && std::isfinite(temperature), fn, ": temperature ",
                         temperature, " must be positive and finite");
}

}  // namespace detail

}  // namespace slim::distill

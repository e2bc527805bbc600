// Argument checks that several modules share: finiteness and non-emptiness of matrices.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/types.hpp>

namespace slim {

// Throws NumericalError naming `what` and the first offending (row, col) if `m` holds NaN/Inf.
template <typename Derived>
void require_finite(const Eigen::DenseBase<Derived>& m, const char* what) {
  if (m.allFinite()) return;
  for (Index r = 0; r < m.rows(); ++r) {
    for (Index c = 0; c < m.cols(); ++c) {
      const auto v = m(r, c);
      if (!(v == v) || v - v != v - v) {
        throw NumericalError(detail::concat(what, " holds a non-finite value ", v, " at (", r, ", ",
                                            c, "); expected finite numbers"));
      }
    }
  }
}

// Throws ShapeError if `m` has no rows or no columns.
template <typename Derived>
void require_nonempty(const Eigen::DenseBase<Derived>& m, const char* what) {
  require<ShapeError>(m.rows() > 0 && m.cols() > 0, what, " is empty (", m.rows(), " x ", m.cols(),
                      "); expected at least one row and one column");
}

}  // namespace slim

// Argument checks that several modules share: finiteness and non-emptiness of matrices.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/types.hpp>

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace slim {

namespace detail {

// True when none of the n values is NaN or Inf: an exponent-field test that vectorizes
// (Eigen's allFinite() evaluates x - x == x - x and runs an order of magnitude slower).
inline bool all_finite(const float* p, std::size_t n) {
  std::uint32_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t u;
    std::memcpy(&u, p + i, sizeof u);
    bad |= static_cast<std::uint32_t>((u & 0x7f800000u) == 0x7f800000u);
  }
  return bad == 0;
}

inline bool all_finite(const double* p, std::size_t n) {
  std::uint64_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t u;
    std::memcpy(&u, p + i, sizeof u);
    bad |= static_cast<std::uint64_t>((u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull);
  }
  return bad == 0;
}

template <typename Derived>
bool all_finite(const Eigen::DenseBase<Derived>& m) {
  using Scalar = typename Derived::Scalar;
  constexpr bool direct =
      (int(Eigen::internal::traits<Derived>::Flags) & Eigen::DirectAccessBit) != 0;
  if constexpr (direct && (std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>)) {
    if (m.innerStride() == 1) {
      const Index outer = m.outerSize();
      const Index inner = m.innerSize();
      for (Index o = 0; o < outer; ++o) {
        if (!all_finite(m.derived().data() + o * m.outerStride(),
                        static_cast<std::size_t>(inner))) {
          return false;
        }
      }
      return true;
    }
  }
  return m.allFinite();
}

}  // namespace detail

// Throws NumericalError naming `what` and the first offending (row, col) if `m` holds NaN/Inf.
template <typename Derived>
void require_finite(const Eigen::DenseBase<Derived>& m, const char* what) {
  if (detail::all_finite(m)) return;
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

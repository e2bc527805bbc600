// Pruning patterns, comparison scopes and the Mask of surviving weights. A mask is chosen from a
// score matrix (out x in, higher = more important) by pruning exactly round(sparsity * size) of
// the lowest scores in each comparison group; ties go to the lower (row-major) index first, so
// the same scores always give the same mask. N:M keeps the N highest of every M consecutive
// inputs (NVIDIA's 2:4 sparse tensor cores; Mishra et al. 2021). Structured patterns prune whole
// rows (output neurons), columns (input channels) or heads (groups of `head_size` rows), ranked by
// the sum of their scores.
#pragma once

#include <slim/core/checks.hpp>
#include <slim/core/error.hpp>
#include <slim/core/types.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

namespace slim::prune {

enum class PatternKind {
  unstructured,  // any weights, `sparsity` of them pruned
  n_m,           // keep `n` of every `m` consecutive inputs of each row
  rows,          // whole output neurons
  columns,       // whole input channels
  heads,         // whole groups of `head_size` consecutive rows (attention heads)
};

struct Pattern {
  PatternKind kind = PatternKind::unstructured;
  double sparsity = 0.5;  // fraction pruned, in [0, 1) (unstructured, rows, columns, heads)
  Index n = 2;            // N:M: weights kept per group
  Index m = 4;            // N:M: group length along the input dimension
  Index head_size = 0;    // heads: rows per head

  static Pattern unstructured(double sparsity) {
    return Pattern{.kind = PatternKind::unstructured, .sparsity = sparsity};
  }
  static Pattern n_m(Index n, Index m) {
    return Pattern{.kind = PatternKind::n_m,
                   .sparsity = m > 0 ? 1.0 - double(n) / double(m) : 0.0,
                   .n = n,
                   .m = m};
  }
  static Pattern rows(double sparsity) {
    return Pattern{.kind = PatternKind::rows, .sparsity = sparsity};
  }
  static Pattern columns(double sparsity) {
    return Pattern{.kind = PatternKind::columns, .sparsity = sparsity};
  }
  static Pattern heads(double sparsity, Index head_size) {
    return Pattern{.kind = PatternKind::heads, .sparsity = sparsity, .head_size = head_size};
  }
};

// Which weights compete with each other for survival (unstructured patterns only; N:M and
// structured patterns define their own groups).
enum class Scope {
  per_row,    // each output row keeps the same count (Wanda's comparison group)
  per_layer,  // the whole matrix competes
};

using MaskMatrix = Eigen::Matrix<std::uint8_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Which weights of an out x in matrix survive (1) and which are pruned (0).
class Mask {
 public:
  Mask() = default;
  // An all-kept mask of the given shape.
  Mask(Index rows, Index cols) : keep_(MaskMatrix::Ones(rows, cols)) {}
  explicit Mask(MaskMatrix keep) : keep_(std::move(keep)) {}

  Index rows() const { return keep_.rows(); }
  Index cols() const { return keep_.cols(); }
  bool kept(Index r, Index c) const { return keep_(r, c) != 0; }
  void set(Index r, Index c, bool keep) { keep_(r, c) = keep ? 1 : 0; }
  const MaskMatrix& matrix() const { return keep_; }

  Index kept_count() const { return keep_.template cast<Index>().sum(); }
  Index pruned_count() const { return keep_.size() - kept_count(); }
  double sparsity() const {
    return keep_.size() == 0 ? 0.0 : double(pruned_count()) / double(keep_.size());
  }

  // W .* mask: pruned weights set to zero. Throws ShapeError if W's shape differs.
  template <typename Derived>
  Matrix apply(const Eigen::MatrixBase<Derived>& w) const {
    require<ShapeError>(w.rows() == rows() && w.cols() == cols(), "Mask::apply: W is ", w.rows(),
                        " x ", w.cols(), "; expected the mask's ", rows(), " x ", cols());
    return w.template cast<float>().cwiseProduct(keep_.template cast<float>());
  }
  void apply_in_place(Matrix& w) const { w = apply(w); }

  bool operator==(const Mask& other) const {
    return rows() == other.rows() && cols() == other.cols() && keep_ == other.keep_;
  }
  bool operator!=(const Mask& other) const { return !(*this == other); }

 private:
  MaskMatrix keep_;
};

// Result of an unstructured / N:M pruning algorithm: the pruned (and possibly updated) weight
// and its mask.
struct PruneResult {
  Matrix weight;
  Mask mask;
};

namespace detail {

inline void require_sparsity(double sparsity, const char* fn) {
  require<ArgumentError>(sparsity >= 0.0 && sparsity < 1.0, fn, ": sparsity ", sparsity,
                         " is outside [0, 1)");
}

// Number pruned out of `count` at `sparsity` (round half up, deterministic).
inline Index pruned_count(double sparsity, Index count) {
  return static_cast<Index>(std::floor(sparsity * double(count) + 0.5));
}

// Throws unless the pattern is valid for an out x in matrix.
inline void validate_pattern(const Pattern& p, Index rows, Index cols, const char* fn) {
  switch (p.kind) {
    case PatternKind::unstructured:
    case PatternKind::rows:
    case PatternKind::columns:
      require_sparsity(p.sparsity, fn);
      break;
    case PatternKind::n_m:
      require<ArgumentError>(p.m >= 1, fn, ": N:M group length m ", p.m, " must be positive");
      require<ArgumentError>(p.n >= 1 && p.n <= p.m, fn, ": N:M keeps n ", p.n, " of m ", p.m,
                             "; expected 1 <= n <= m");
      require<ArgumentError>(cols % p.m == 0, fn, ": N:M group length m ", p.m,
                             " does not divide in_features ", cols);
      break;
    case PatternKind::heads:
      require_sparsity(p.sparsity, fn);
      require<ArgumentError>(p.head_size >= 1, fn, ": head_size ", p.head_size,
                             " must be positive");
      require<ArgumentError>(rows % p.head_size == 0, fn, ": head_size ", p.head_size,
                             " does not divide out_features ", rows);
      break;
  }
}

// Indices of the `k` smallest of `score(i)` for i in [0, count): ties go to the lower index.
template <typename ScoreFn>
std::vector<Index> lowest(Index count, Index k, ScoreFn score) {
  std::vector<Index> order(static_cast<std::size_t>(count));
  std::iota(order.begin(), order.end(), Index{0});
  auto less = [&](Index a, Index b) {
    const auto sa = score(a);
    const auto sb = score(b);
    return sa < sb || (sa == sb && a < b);
  };
  k = std::clamp<Index>(k, 0, count);
  std::nth_element(order.begin(), order.begin() + k, order.end(), less);
  order.resize(static_cast<std::size_t>(k));
  return order;
}

}  // namespace detail

// The mask that prunes the lowest `scores` under `pattern` (scope applies to unstructured only).
// Throws ArgumentError for an invalid pattern, ShapeError for empty scores and NumericalError for
// non-finite scores.
template <typename Derived>
Mask select_mask(const Eigen::MatrixBase<Derived>& scores_in, const Pattern& pattern,
                 Scope scope = Scope::per_layer) {
  require_nonempty(scores_in, "select_mask: scores");
  const Matrix scores = scores_in.template cast<float>();
  require_finite(scores, "select_mask: scores");
  const Index rows = scores.rows();
  const Index cols = scores.cols();
  detail::validate_pattern(pattern, rows, cols, "select_mask");
  Mask mask(rows, cols);
  switch (pattern.kind) {
    case PatternKind::unstructured:
      if (scope == Scope::per_row) {
        const Index k = detail::pruned_count(pattern.sparsity, cols);
        for (Index r = 0; r < rows; ++r) {
          for (Index c : detail::lowest(cols, k, [&](Index i) { return scores(r, i); })) {
            mask.set(r, c, false);
          }
        }
      } else {
        const Index k = detail::pruned_count(pattern.sparsity, rows * cols);
        const float* s = scores.data();
        for (Index i : detail::lowest(rows * cols, k, [&](Index j) { return s[j]; })) {
          mask.set(i / cols, i % cols, false);
        }
      }
      break;
    case PatternKind::n_m:
      for (Index r = 0; r < rows; ++r) {
        for (Index g = 0; g < cols; g += pattern.m) {
          for (Index c : detail::lowest(pattern.m, pattern.m - pattern.n,
                                        [&](Index i) { return scores(r, g + i); })) {
            mask.set(r, g + c, false);
          }
        }
      }
      break;
    case PatternKind::rows: {
      const VectorD sums = scores.template cast<double>().rowwise().sum();
      for (Index r : detail::lowest(rows, detail::pruned_count(pattern.sparsity, rows),
                                    [&](Index i) { return sums(i); })) {
        for (Index c = 0; c < cols; ++c) mask.set(r, c, false);
      }
      break;
    }
    case PatternKind::columns: {
      const VectorD sums = scores.template cast<double>().colwise().sum().transpose();
      for (Index c : detail::lowest(cols, detail::pruned_count(pattern.sparsity, cols),
                                    [&](Index i) { return sums(i); })) {
        for (Index r = 0; r < rows; ++r) mask.set(r, c, false);
      }
      break;
    }
    case PatternKind::heads: {
      const Index heads = rows / pattern.head_size;
      const VectorD row_sums = scores.template cast<double>().rowwise().sum();
      VectorD sums(heads);
      for (Index h = 0; h < heads; ++h)
        sums(h) = row_sums.segment(h * pattern.head_size, pattern.head_size).sum();
      for (Index h : detail::lowest(heads, detail::pruned_count(pattern.sparsity, heads),
                                    [&](Index i) { return sums(i); })) {
        for (Index r = h * pattern.head_size; r < (h + 1) * pattern.head_size; ++r) {
          for (Index c = 0; c < cols; ++c) mask.set(r, c, false);
        }
      }
      break;
    }
  }
  return mask;
}

// True if `mask` satisfies N:M (at most n kept in every group of m consecutive inputs).
inline bool satisfies_n_m(const Mask& mask, Index n, Index m) {
  if (m < 1 || mask.cols() % m != 0) return false;
  for (Index r = 0; r < mask.rows(); ++r) {
    for (Index g = 0; g < mask.cols(); g += m) {
      Index kept = 0;
      for (Index c = g; c < g + m; ++c) kept += mask.kept(r, c) ? 1 : 0;
      if (kept > n) return false;
    }
  }
  return true;
}

}  // namespace slim::prune

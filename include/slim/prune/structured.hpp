// Structured pruning in the style of Minitron (Muralidharan et al. 2024, "Compact Language Models
// via Pruning and Knowledge Distillation", sec. 2.2): the importance of an output neuron is the
// aggregate over calibration tokens of the activation it produces, (X W^T)_{:,i}; of an input
// channel, the aggregate of the activation entering it, X_{:,j}; of a head (a group of
// `head_size` consecutive output rows), the aggregate over its rows' outputs. Default
// aggregation: L2 over tokens (the paper aggregates with L2 over the sequence). Pruning returns
// physically smaller matrices and the kept indices, so neighbouring layers can be sliced to match
// (rows pruned here are the columns of the next layer; columns pruned here are rows of the
// previous one).
#pragma once

#include <slim/core/checks.hpp>
#include <slim/core/error.hpp>
#include <slim/core/types.hpp>
#include <slim/prune/mask.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

namespace slim::prune {

enum class Aggregation {
  l2,        // sqrt(sum over tokens of a^2)
  mean_abs,  // mean over tokens of |a|
};

struct StructuredOptions {
  PatternKind target = PatternKind::rows;  // rows (neurons), columns (channels) or heads
  double sparsity = 0.5;                   // fraction of neurons / channels / heads removed
  Index head_size = 0;                     // rows per head (heads only)
  Aggregation aggregation = Aggregation::l2;
};

struct StructuredResult {
  Matrix weight;                  // the smaller matrix: kept rows (rows, heads) or kept columns
  std::vector<Index> kept;        // kept row indices (rows, heads) or column indices, ascending
  std::vector<Index> kept_heads;  // heads only: kept head indices, ascending
  Vector importance;              // one per neuron, channel or head (the ranking used)
};

namespace detail {

// Aggregate of each column of `a` (tokens x k) over its tokens.
template <typename Derived>
Vector aggregate_columns(const Eigen::MatrixBase<Derived>& a, Aggregation aggregation) {
  const MatrixD ad = a.template cast<double>();
  if (aggregation == Aggregation::l2) return ad.colwise().norm().transpose().template cast<float>();
  return (ad.cwiseAbs().colwise().sum().transpose() / double(a.rows())).template cast<float>();
}

template <typename DW, typename DX>
void require_structured_inputs(const Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DX>& x,
                               const char* fn) {
  require_nonempty(w, fn);
  require_nonempty(x, fn);
  require_finite(w, fn);
  require_finite(x, fn);
  require<ShapeError>(x.cols() == w.cols(), fn, ": activations have ", x.cols(),
                      " columns; expected in_features ", w.cols());
}

// Indices in [0, count) that survive pruning round(sparsity * count) of the lowest `importance`.
inline std::vector<Index> kept_indices(const Vector& importance, double sparsity) {
  const Index count = importance.size();
  std::vector<bool> pruned(static_cast<std::size_t>(count), false);
  for (Index i :
       lowest(count, pruned_count(sparsity, count), [&](Index j) { return importance(j); }))
    pruned[std::size_t(i)] = true;
  std::vector<Index> kept;
  for (Index i = 0; i < count; ++i) {
    if (!pruned[std::size_t(i)]) kept.push_back(i);
  }
  return kept;
}

}  // namespace detail

// Importance of each output neuron: aggregate over tokens of (X W^T)_{:,i}.
template <typename DW, typename DX>
Vector neuron_importance(const Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DX>& x,
                         Aggregation aggregation = Aggregation::l2) {
  detail::require_structured_inputs(w, x, "neuron_importance");
  const Matrix y = x.template cast<float>() * w.template cast<float>().transpose();
  return detail::aggregate_columns(y, aggregation);
}

// Importance of each input channel: aggregate over tokens of X_{:,j}.
template <typename DX>
Vector channel_importance(const Eigen::MatrixBase<DX>& x,
                          Aggregation aggregation = Aggregation::l2) {
  require_nonempty(x, "channel_importance: X");
  require_finite(x, "channel_importance: X");
  return detail::aggregate_columns(x, aggregation);
}

// Importance of each head of `head_size` rows: L2 over tokens and the head's rows of X W_h^T
// (aggregation l2), or mean |.| over them (mean_abs).
template <typename DW, typename DX>
Vector head_importance(const Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DX>& x,
                       Index head_size, Aggregation aggregation = Aggregation::l2) {
  detail::require_structured_inputs(w, x, "head_importance");
  require<ArgumentError>(head_size >= 1 && w.rows() % head_size == 0, "head_importance: head_size ",
                         head_size, " does not divide out_features ", w.rows());
  const Vector neuron = neuron_importance(w, x, aggregation);
  const Index heads = w.rows() / head_size;
  Vector out(heads);
  for (Index h = 0; h < heads; ++h) {
    const VectorD part = neuron.segment(h * head_size, head_size).template cast<double>();
    out(h) = static_cast<float>(aggregation == Aggregation::l2 ? part.norm()
                                                               : part.sum() / double(head_size));
  }
  return out;
}

// Rows `kept` of W, in the given order. Throws ArgumentError for an index out of range.
template <typename Derived>
Matrix select_rows(const Eigen::MatrixBase<Derived>& w, const std::vector<Index>& kept) {
  Matrix out(static_cast<Index>(kept.size()), w.cols());
  for (std::size_t i = 0; i < kept.size(); ++i) {
    require<ArgumentError>(kept[i] >= 0 && kept[i] < w.rows(), "select_rows: index ", kept[i],
                           " is outside 0..", w.rows() - 1);
    out.row(Index(i)) = w.row(kept[i]).template cast<float>();
  }
  return out;
}

// Columns `kept` of W (for the next layer after pruning this layer's rows).
template <typename Derived>
Matrix select_columns(const Eigen::MatrixBase<Derived>& w, const std::vector<Index>& kept) {
  Matrix out(w.rows(), static_cast<Index>(kept.size()));
  for (std::size_t i = 0; i < kept.size(); ++i) {
    require<ArgumentError>(kept[i] >= 0 && kept[i] < w.cols(), "select_columns: index ", kept[i],
                           " is outside 0..", w.cols() - 1);
    out.col(Index(i)) = w.col(kept[i]).template cast<float>();
  }
  return out;
}

// Minitron-style structured pruning of W (out x in) on calibration activations X (tokens x in).
template <typename DW, typename DX>
StructuredResult prune_structured(const Eigen::MatrixBase<DW>& w, const Eigen::MatrixBase<DX>& x,
                                  const StructuredOptions& options = {}) {
  constexpr const char* fn = "prune_structured";
  detail::require_structured_inputs(w, x, fn);
  detail::require_sparsity(options.sparsity, fn);
  StructuredResult result;
  switch (options.target) {
    case PatternKind::rows:
      result.importance = neuron_importance(w, x, options.aggregation);
      result.kept = detail::kept_indices(result.importance, options.sparsity);
      result.weight = select_rows(w, result.kept);
      break;
    case PatternKind::columns:
      result.importance = channel_importance(x, options.aggregation);
      result.kept = detail::kept_indices(result.importance, options.sparsity);
      result.weight = select_columns(w, result.kept);
      break;
    case PatternKind::heads:
      require<ArgumentError>(options.head_size >= 1 && w.rows() % options.head_size == 0, fn,
                             ": head_size ", options.head_size, " does not divide out_features ",
                             w.rows());
      result.importance = head_importance(w, x, options.head_size, options.aggregation);
      result.kept_heads = detail::kept_indices(result.importance, options.sparsity);
      for (Index h : result.kept_heads) {
        for (Index r = 0; r < options.head_size; ++r)
          result.kept.push_back(h * options.head_size + r);
      }
      result.weight = select_rows(w, result.kept);
      break;
    default:
      throw ArgumentError(slim::detail::concat(
          fn, ": target must be rows, columns or heads; unstructured and N:M are masks"));
  }
  return result;
}

}  // namespace slim::prune

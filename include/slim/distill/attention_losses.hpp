// MiniLM's self-attention transfer (Wang et al. 2020, eqs. 4-7) with analytic gradients w.r.t. the
// student's per-head queries, keys and values: the KL between teacher and student attention
// distributions softmax(Q K^T / sqrt(d_k)) per head and the value-relation KL between
// softmax(V V^T / sqrt(d_k)), each averaged over heads and query positions. Student and teacher may
// differ in head width (the maps are tokens x tokens) but not in head count or tokens.
#pragma once

#include <slim/core/checks.hpp>
#include <slim/core/error.hpp>
#include <slim/core/types.hpp>
#include <slim/distill/logit_losses.hpp>
#include <slim/distill/loss.hpp>

#include <cmath>
#include <limits>
#include <vector>

namespace slim::distill {

struct AttentionOptions {
  bool causal = false;  // decoder attention: query i sees keys 0..i only
};

// Attention-distribution loss with the gradients for each head's queries and keys.
template <typename Scalar>
struct AttentionLoss {
  double value = 0.0;
  std::vector<MatrixOf<Scalar>> query_gradient;  // per head, tokens x student head width
  std::vector<MatrixOf<Scalar>> key_gradient;    // per head, tokens x student head width
};

// Value-relation loss with the gradient for each head's values.
template <typename Scalar>
struct ValueRelationLoss {
  double value = 0.0;
  std::vector<MatrixOf<Scalar>> value_gradient;  // per head, tokens x student head width
};

namespace detail {

template <typename Scalar>
void check_heads(const std::vector<MatrixOf<Scalar>>& student_a,
                 const std::vector<MatrixOf<Scalar>>& student_b,
                 const std::vector<MatrixOf<Scalar>>& teacher_a,
                 const std::vector<MatrixOf<Scalar>>& teacher_b, const char* fn) {
  require<ArgumentError>(!student_a.empty(), fn, ": no attention heads were given");
  require<ShapeError>(
      student_b.size() == student_a.size() && teacher_a.size() == student_a.size() &&
          teacher_b.size() == student_a.size(),
      fn, ": head counts differ (student ", student_a.size(), " and ", student_b.size(),
      ", teacher ", teacher_a.size(), " and ", teacher_b.size(), "); expected equal");
  const Index tokens = student_a[0].rows();
  require<ShapeError>(tokens > 0, fn, ": heads have no tokens");
  for (std::size_t h = 0; h < student_a.size(); ++h) {
    for (const auto* pair : {&student_a, &student_b, &teacher_a, &teacher_b}) {
      const auto& m = (*pair)[h];
      require<ShapeError>(m.rows() == tokens && m.cols() > 0, fn, ": head ", h, " is ", m.rows(),
                          " x ", m.cols(), "; expected ", tokens, " tokens and a positive width");
      require_finite(m, fn);
    }
    require<ShapeError>(
        student_a[h].cols() == student_b[h].cols() && teacher_a[h].cols() == teacher_b[h].cols(),
        fn, ": head ", h, " has mismatched widths (student ", student_a[h].cols(), " vs ",
        student_b[h].cols(), ", teacher ", teacher_a[h].cols(), " vs ", teacher_b[h].cols(),
        "); expected equal");
  }
}

// Sets excluded entries of the tokens x tokens score matrix to -inf: keys of ignored positions,
// and keys after the query under a causal mask.
inline void mask_scores(MatrixD& scores, const RowWeights& rows, bool causal) {
  const double neg_inf = -std::numeric_limits<double>::infinity();
  for (Index i = 0; i < scores.rows(); ++i) {
    for (Index j = 0; j < scores.cols(); ++j) {
      const bool ignored = !rows.ignore.empty() && rows.ignore[static_cast<std::size_t>(j)];
      if (ignored || (causal && j > i)) scores(i, j) = neg_inf;
    }
  }
}

// For one head: the loss sum_i f_i KL(softmax(ts_i) || softmax(ss_i)) / heads and its gradient
// w.r.t. the student scores `ss`.
inline double score_kl(const MatrixD& ss, const MatrixD& ts, const VectorD& f, double heads,
                       MatrixD& grad) {
  const MatrixD ls = log_softmax(ss);
  const MatrixD lt = log_softmax(ts);
  grad = MatrixD::Zero(ss.rows(), ss.cols());
  double value = 0.0;
  for (Index i = 0; i < ss.rows(); ++i) {
    if (f[i] == 0.0) continue;
    value +=
        f[i] / heads * row_divergence(Divergence::forward_kl, ls.row(i), lt.row(i), grad.row(i));
    grad.row(i) *= f[i] / heads;
  }
  return value;
}

}  // namespace detail

// MiniLM attention transfer: with A = softmax(Q K^T / sqrt(d_k)) per head (d_k each model's own
// head width), L = (1/H) sum_h sum_i f_i KL(A^t_{h,i} || A^s_{h,i}). With G_h = dL/dscores:
// dL/dQ_h = G_h K_h / sqrt(d_k), dL/dK_h = G_h^T Q_h / sqrt(d_k). Ignored positions drop out as
// queries (their rows) and as keys (their columns are excluded from both softmaxes).
template <typename Scalar>
AttentionLoss<Scalar> attention_kl_loss(const std::vector<MatrixOf<Scalar>>& student_queries,
                                        const std::vector<MatrixOf<Scalar>>& student_keys,
                                        const std::vector<MatrixOf<Scalar>>& teacher_queries,
                                        const std::vector<MatrixOf<Scalar>>& teacher_keys,
                                        const AttentionOptions& options = {},
                                        const RowWeights& rows = {}) {
  detail::check_heads(student_queries, student_keys, teacher_queries, teacher_keys,
                      "attention_kl_loss");
  const Index tokens = student_queries[0].rows();
  const VectorD f = detail::row_factors(tokens, rows, "attention_kl_loss");
  const double heads = static_cast<double>(student_queries.size());
  AttentionLoss<Scalar> out;
  for (std::size_t h = 0; h < student_queries.size(); ++h) {
    const MatrixD sq = student_queries[h].template cast<double>();
    const MatrixD sk = student_keys[h].template cast<double>();
    const double s_scale = 1.0 / std::sqrt(static_cast<double>(sq.cols()));
    const double t_scale = 1.0 / std::sqrt(static_cast<double>(teacher_queries[h].cols()));
    MatrixD ss = s_scale * sq * sk.transpose();
    MatrixD ts = t_scale * teacher_queries[h].template cast<double>() *
                 teacher_keys[h].template cast<double>().transpose();
    detail::mask_scores(ss, rows, options.causal);
    detail::mask_scores(ts, rows, options.causal);
    MatrixD g;
    out.value += detail::score_kl(ss, ts, f, heads, g);
    out.query_gradient.push_back((s_scale * g * sk).template cast<Scalar>());
    out.key_gradient.push_back((s_scale * g.transpose() * sq).template cast<Scalar>());
  }
  return out;
}

// MiniLM value relation: R = softmax(V V^T / sqrt(d_k)) per head,
// L = (1/H) sum_h sum_i f_i KL(R^t_{h,i} || R^s_{h,i}); dL/dV_h = (G_h + G_h^T) V_h / sqrt(d_k).
template <typename Scalar>
ValueRelationLoss<Scalar> value_relation_loss(const std::vector<MatrixOf<Scalar>>& student_values,
                                              const std::vector<MatrixOf<Scalar>>& teacher_values,
                                              const AttentionOptions& options = {},
                                              const RowWeights& rows = {}) {
  detail::check_heads(student_values, student_values, teacher_values, teacher_values,
                      "value_relation_loss");
  const Index tokens = student_values[0].rows();
  const VectorD f = detail::row_factors(tokens, rows, "value_relation_loss");
  const double heads = static_cast<double>(student_values.size());
  ValueRelationLoss<Scalar> out;
  for (std::size_t h = 0; h < student_values.size(); ++h) {
    const MatrixD sv = student_values[h].template cast<double>();
    const MatrixD tv = teacher_values[h].template cast<double>();
    const double s_scale = 1.0 / std::sqrt(static_cast<double>(sv.cols()));
    const double t_scale = 1.0 / std::sqrt(static_cast<double>(tv.cols()));
    MatrixD ss = s_scale * sv * sv.transpose();
    MatrixD ts = t_scale * tv * tv.transpose();
    detail::mask_scores(ss, rows, options.causal);
    detail::mask_scores(ts, rows, options.causal);
    MatrixD g;
    out.value += detail::score_kl(ss, ts, f, heads, g);
    out.value_gradient.push_back((s_scale * (g + g.transpose()) * sv).template cast<Scalar>());
  }
  return out;
}

}  // namespace slim::distill

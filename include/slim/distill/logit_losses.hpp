// Logit distillation losses with analytic gradients w.r.t. the student logits (rows = positions,
// columns = vocabulary): Hinton et al. 2015 "Distilling the Knowledge in a Neural Network",
// T^2 * KL(softmax(t/T) || softmax(s/T)) (the T^2 factor of section 2 keeps gradient magnitudes
// comparable across T); reverse KL and Jensen-Shannon variants (as compared for generative students
// by MiniLLM, Gu et al. 2024, and GKD, Agarwal et al. 2024); soft- and hard-label cross-entropy;
// and DistilBERT's mix alpha * CE + (1 - alpha) * KD. Default temperature 2 and alpha 0.5 follow
// DistilBERT's training script; ignore_index -100 follows torch.nn.CrossEntropyLoss.
#pragma once

#include <slim/core/checks.hpp>
#include <slim/core/error.hpp>
#include <slim/core/types.hpp>
#include <slim/distill/loss.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

namespace slim::distill {

enum class Divergence {
  forward_kl,      // KL(teacher || student): mean-seeking, Hinton's KD
  reverse_kl,      // KL(student || teacher): mode-seeking
  jensen_shannon,  // (KL(t || m) + KL(s || m)) / 2 with m = (t + s) / 2
};

struct KdOptions {
  double temperature = 2.0;
  Divergence divergence = Divergence::forward_kl;
};

namespace detail {

// Divergence of one row given the student's and teacher's log-probabilities (entries equal to -inf
// are excluded positions, identical in both). Writes d divergence / d z_s, where z_s are the
// student's (temperature-scaled) logits, to `grad`, and returns the divergence.
//   forward: D = sum pt (lt - ls),          dD/dz = ps - pt
//   reverse: D = sum ps (ls - lt),          dD/dz_j = ps_j (ls_j - lt_j - D)
//   JS:      D = (sum ps (ls - lm) + sum pt (lt - lm)) / 2,  lm = log((ps + pt) / 2)
//            dD/dps_j = (ls_j - lm_j) / 2 =: a_j,  dD/dz_j = ps_j (a_j - sum_k ps_k a_k)
// (the constant terms of dD/dp cancel through the softmax Jacobian, whose rows sum to zero).
template <typename RowS, typename RowT, typename RowG>
double row_divergence(Divergence kind, const RowS& ls, const RowT& lt, RowG&& grad) {
  const Index n = ls.size();
  const double neg_inf = -std::numeric_limits<double>::infinity();
  double d = 0.0;
  switch (kind) {
    case Divergence::forward_kl:
      for (Index j = 0; j < n; ++j) {
        if (ls[j] == neg_inf) {
          grad[j] = 0.0;
          continue;
        }
        const double ps = std::exp(ls[j]);
        const double pt = std::exp(lt[j]);
        d += pt * (lt[j] - ls[j]);
        grad[j] = ps - pt;
      }
      return d;
    case Divergence::reverse_kl:
      for (Index j = 0; j < n; ++j) {
        if (ls[j] != neg_inf) d += std::exp(ls[j]) * (ls[j] - lt[j]);
      }
      for (Index j = 0; j < n; ++j) {
        grad[j] = ls[j] == neg_inf ? 0.0 : std::exp(ls[j]) * (ls[j] - lt[j] - d);
      }
      return d;
    case Divergence::jensen_shannon: {
      const double log2 = std::log(2.0);
      double mean_a = 0.0;
      for (Index j = 0; j < n; ++j) {
        if (ls[j] == neg_inf) {
          grad[j] = 0.0;
          continue;
        }
        const double hi = std::max(ls[j], lt[j]);
        const double lo = std::min(ls[j], lt[j]);
        const double lm = hi + std::log1p(std::exp(lo - hi)) - log2;  // log((ps + pt) / 2)
        const double ps = std::exp(ls[j]);
        const double pt = std::exp(lt[j]);
        d += 0.5 * (ps * (ls[j] - lm) + pt * (lt[j] - lm));
        const double a = 0.5 * (ls[j] - lm);
        grad[j] = a;  // a_j for now; the softmax Jacobian is applied below
        mean_a += ps * a;
      }
      for (Index j = 0; j < n; ++j) {
        if (ls[j] != neg_inf) grad[j] = std::exp(ls[j]) * (grad[j] - mean_a);
      }
      return d;
    }
  }
  return d;
}

template <typename DS, typename DT>
void check_logits(const Eigen::MatrixBase<DS>& student, const Eigen::MatrixBase<DT>& teacher,
                  const char* fn) {
  require_same_shape(student, teacher, fn);
  require_nonempty(student, fn);
  require_finite(student, (std::string(fn) + ": student logits").c_str());
  require_finite(teacher, (std::string(fn) + ": teacher logits").c_str());
}

}  // namespace detail

// Knowledge distillation on logits (Hinton et al. 2015):
//   L = sum_i f_i * T^2 * D(softmax(t_i / T), softmax(s_i / T)),  f_i = w_i / sum w (RowWeights)
//   dL/ds_i = f_i * T * dD/dz_i   (z = s / T)
// with D chosen by options.divergence (forward KL by default). For forward KL, dL/ds_i =
// f_i T (softmax(s_i/T) - softmax(t_i/T)).
template <typename DS, typename DT>
Loss<typename DS::Scalar> kd_loss(const Eigen::MatrixBase<DS>& student,
                                  const Eigen::MatrixBase<DT>& teacher,
                                  const KdOptions& options = {}, const RowWeights& rows = {}) {
  detail::check_logits(student, teacher, "kd_loss");
  detail::require_temperature(options.temperature, "kd_loss");
  const VectorD f = detail::row_factors(student.rows(), rows, "kd_loss");
  const double t = options.temperature;
  using Scalar = typename DS::Scalar;
  // Row by row in double, so that no full-size double copies are made.
  Eigen::RowVectorXd ls, lt, g(student.cols());
  MatrixOf<Scalar> grad = MatrixOf<Scalar>::Zero(student.rows(), student.cols());
  double value = 0.0;
  for (Index i = 0; i < student.rows(); ++i) {
    if (f[i] == 0.0) continue;
    detail::row_log_softmax(student.row(i), t, ls);
    detail::row_log_softmax(teacher.row(i), t, lt);
    const double d = detail::row_divergence(options.divergence, ls, lt, g);
    value += f[i] * t * t * d;
    grad.row(i) = (f[i] * t * g).template cast<Scalar>();
  }
  return {value, std::move(grad)};
}

// Cross-entropy against soft targets (rows of probabilities, each non-negative and summing to 1):
//   L = -sum_i f_i sum_j q_ij log softmax(s_i)_j,   dL/ds_i = f_i (softmax(s_i) - q_i).
template <typename DS, typename DQ>
Loss<typename DS::Scalar> soft_cross_entropy(const Eigen::MatrixBase<DS>& student,
                                             const Eigen::MatrixBase<DQ>& target_probabilities,
                                             const RowWeights& rows = {}) {
  detail::check_logits(student, target_probabilities, "soft_cross_entropy");
  const MatrixD q = target_probabilities.template cast<double>();
  for (Index i = 0; i < q.rows(); ++i) {
    const double sum = q.row(i).sum();
    require<ArgumentError>(q.row(i).minCoeff() >= 0.0 && std::abs(sum - 1.0) <= 1e-4,
                           "soft_cross_entropy: target row ", i, " sums to ", sum, " with minimum ",
                           q.row(i).minCoeff(),
                           "; expected non-negative probabilities summing to 1");
  }
  const VectorD f = detail::row_factors(student.rows(), rows, "soft_cross_entropy");
  using Scalar = typename DS::Scalar;
  Eigen::RowVectorXd ls;
  MatrixOf<Scalar> grad = MatrixOf<Scalar>::Zero(student.rows(), student.cols());
  double value = 0.0;
  for (Index i = 0; i < student.rows(); ++i) {
    if (f[i] == 0.0) continue;
    detail::row_log_softmax(student.row(i), 1.0, ls);
    value -= f[i] * q.row(i).dot(ls);
    grad.row(i) = (f[i] * (ls.unaryExpr(detail::ScalarExp{}) * q.row(i).sum() - q.row(i)))
                      .template cast<Scalar>();
  }
  return {value, std::move(grad)};
}

struct CrossEntropyOptions {
  std::int64_t ignore_index = -100;  // rows with this label are skipped (torch.nn.CrossEntropyLoss)
};

// Hard-label cross-entropy: L = -sum_i f_i log softmax(s_i)_{y_i}, dL/ds_i = f_i (softmax(s_i) -
// e_{y_i}). Rows whose label equals ignore_index count as ignored rows in the weighting.
template <typename DS>
Loss<typename DS::Scalar> cross_entropy(const Eigen::MatrixBase<DS>& student,
                                        const IndexVector& labels,
                                        const CrossEntropyOptions& options = {},
                                        const RowWeights& rows = {}) {
  require_nonempty(student, "cross_entropy: student logits");
  require_finite(student, "cross_entropy: student logits");
  require<ShapeError>(labels.size() == student.rows(), "cross_entropy: labels have ", labels.size(),
                      " entries but student logits have ", student.rows(),
                      " rows; expected one label per row");
  RowWeights effective = rows;
  // Size the mask only if it is valid, so that row_factors reports a wrong-sized one.
  if (effective.ignore.empty())
    effective.ignore.assign(static_cast<std::size_t>(labels.size()), false);
  for (Index i = 0; i < labels.size(); ++i) {
    const Index y = labels[i];
    if (y == options.ignore_index) {
      if (static_cast<Index>(effective.ignore.size()) == labels.size()) {
        effective.ignore[static_cast<std::size_t>(i)] = true;
      }
      continue;
    }
    require<ArgumentError>(y >= 0 && y < student.cols(), "cross_entropy: label ", y, " at row ", i,
                           " is outside [0, ", student.cols(), ") and is not ignore_index ",
                           options.ignore_index);
  }
  const VectorD f = detail::row_factors(student.rows(), effective, "cross_entropy");
  using Scalar = typename DS::Scalar;
  Eigen::RowVectorXd ls, g;
  MatrixOf<Scalar> grad = MatrixOf<Scalar>::Zero(student.rows(), student.cols());
  double value = 0.0;
  for (Index i = 0; i < student.rows(); ++i) {
    if (f[i] == 0.0) continue;
    detail::row_log_softmax(student.row(i), 1.0, ls);
    value -= f[i] * ls[labels[i]];
    g = f[i] * ls.unaryExpr(detail::ScalarExp{});
    g[labels[i]] -= f[i];
    grad.row(i) = g.template cast<Scalar>();
  }
  return {value, std::move(grad)};
}

struct DistillationOptions {
  double temperature = 2.0;  // DistilBERT
  double alpha = 0.5;        // weight of the hard-label cross-entropy
  Divergence divergence = Divergence::forward_kl;
  std::int64_t ignore_index = -100;
};

// alpha * cross_entropy(s, labels) + (1 - alpha) * kd_loss(s, t). Each term is its own weighted
// mean over its kept rows (rows with ignore_index labels drop out of the CE term only); a term with
// weight 0 is not evaluated.
template <typename DS, typename DT>
Loss<typename DS::Scalar> distillation_loss(const Eigen::MatrixBase<DS>& student,
                                            const Eigen::MatrixBase<DT>& teacher,
                                            const IndexVector& labels,
                                            const DistillationOptions& options = {},
                                            const RowWeights& rows = {}) {
  require<ArgumentError>(options.alpha >= 0.0 && options.alpha <= 1.0, "distillation_loss: alpha ",
                         options.alpha, " is outside [0, 1]");
  detail::check_logits(student, teacher, "distillation_loss");
  detail::require_temperature(options.temperature, "distillation_loss");
  require<ShapeError>(labels.size() == student.rows(), "distillation_loss: labels have ",
                      labels.size(), " entries but student logits have ", student.rows(),
                      " rows; expected one label per row");
  Loss<typename DS::Scalar> total{
      0.0, MatrixOf<typename DS::Scalar>::Zero(student.rows(), student.cols())};
  if (options.alpha > 0.0) {
    const auto ce = cross_entropy(student, labels, {.ignore_index = options.ignore_index}, rows);
    total.value += options.alpha * ce.value;
    total.gradient += static_cast<typename DS::Scalar>(options.alpha) * ce.gradient;
  }
  if (options.alpha < 1.0) {
    const auto kd =
        kd_loss(student, teacher,
                {.temperature = options.temperature, .divergence = options.divergence}, rows);
    total.value += (1.0 - options.alpha) * kd.value;
    total.gradient += static_cast<typename DS::Scalar>(1.0 - options.alpha) * kd.gradient;
  }
  return total;
}

}  // namespace slim::distill

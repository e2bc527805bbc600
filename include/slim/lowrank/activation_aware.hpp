// Activation-aware factorizations, which minimise the layer's output error on calibration
// activations rather than the weight error:
// - ASVD (Yuan et al., 2023): scale input channel j by s_j = mean|x_j|^alpha (alpha = 0.5),
//   truncate the SVD of W diag(s) and fold diag(s)^-1 into V.
// - SVD-LLM (Wang et al., 2024, truncation-aware data whitening): with S the Cholesky factor of
//   H = X^T X (up to the positive factor calib::Hessian applies), truncate the SVD of W S and fold
//   S^-1 into V. Since ||X (W - W')^T||_F^2 is proportional to ||(W - W') S||_F^2, the output error
//   of the rank-r result is exactly the discarded singular values of W S:
//     ||X W^T - X W'^T||_F / ||X W^T||_F = sqrt(sum_{i>r} sigma_i^2 / sum_i sigma_i^2).
//   The whitening is computed in double. If H is not positive definite, it is dampened by
//   lambda * mean(diag H) with lambda = 1e-6, 1e-5, ... (the identity then holds for the dampened
//   H), and NumericalError is thrown naming the last lambda when that fails too.
#pragma once

#include <slim/calib/activation_stats.hpp>
#include <slim/calib/hessian.hpp>
#include <slim/lowrank/svd.hpp>

#include <Eigen/Cholesky>

#include <algorithm>
#include <cmath>
#include <queue>
#include <utility>
#include <vector>

namespace slim::lowrank {

struct AsvdOptions {
  double alpha = 0.5;  // exponent of mean|x| (ASVD's default)
};

// ASVD factors of W at `rank`, from per-channel activation statistics.
template <typename Derived>
Factorization asvd(const Eigen::MatrixBase<Derived>& w, const calib::ActivationStats& stats,
                   Index rank, const AsvdOptions& options = {}) {
  detail::validate_weight(w, rank, "lowrank::asvd");
  require<ShapeError>(stats.in_features() == w.cols(), "lowrank::asvd: statistics have ",
                      stats.in_features(), " channels; expected in_features ", w.cols());
  require<ArgumentError>(options.alpha >= 0.0 && options.alpha <= 1.0, "lowrank::asvd: alpha ",
                         options.alpha, " is outside [0, 1]");
  const Eigen::ArrayXd mean = stats.mean_abs().cast<double>().array();
  // A channel that never fires carries no output; give it a tiny positive scale so S^-1 exists.
  const double floor = std::max(mean.maxCoeff() * 1e-6, 1e-30);
  const Eigen::VectorXf s = mean.max(floor).pow(options.alpha).cast<float>().matrix();
  const Matrix scaled = w.template cast<float>() * s.asDiagonal();
  Factorization out = truncated_svd(scaled, rank);
  out.factors.V = out.factors.V * s.cwiseInverse().asDiagonal();
  return out;
}

struct SvdLlmOptions {
  int max_dampening_attempts = 8;  // lambda = 1e-6 * 10^k, k < attempts, if H is not PD
};

namespace detail {

// Lower Cholesky factor L of H (H = L L^T), dampened as documented above when needed.
inline Eigen::MatrixXd whitening_factor(const calib::Hessian& hessian, const SvdLlmOptions& options,
                                        const char* fn) {
  const Eigen::MatrixXd h = hessian.matrix_double();
  const double mean_diag = h.diagonal().mean();
  Eigen::LLT<Eigen::MatrixXd> llt(h);
  double lambda = 0.0;
  for (int attempt = 0; llt.info() != Eigen::Success; ++attempt) {
    require<NumericalError>(attempt < options.max_dampening_attempts && mean_diag > 0.0, fn,
                            ": the Hessian (", h.rows(), " x ", h.cols(),
                            ") is not positive definite after dampening lambda = ", lambda,
                            " times mean(diag H) = ", mean_diag);
    lambda = 1e-6 * std::pow(10.0, attempt);
    Eigen::MatrixXd damped = h;
    damped.diagonal().array() += lambda * mean_diag;
    llt.compute(damped);
  }
  return llt.matrixL();
}

}  // namespace detail

// SVD-LLM factors of W at `rank`. The returned singular values are those of W S, so
// sqrt(sum_{i>rank} sigma_i^2 / sum sigma_i^2) is the relative output error on the calibration
// activations.
template <typename Derived>
Factorization svd_llm(const Eigen::MatrixBase<Derived>& w, const calib::Hessian& hessian,
                      Index rank, const SvdLlmOptions& options = {}) {
  detail::validate_weight(w, rank, "lowrank::svd_llm");
  require<ShapeError>(hessian.in_features() == w.cols(), "lowrank::svd_llm: Hessian is ",
                      hessian.in_features(), " x ", hessian.in_features(),
                      "; expected in_features ", w.cols());
  const Eigen::MatrixXd l = detail::whitening_factor(hessian, options, "lowrank::svd_llm");
  const Eigen::MatrixXd ws = w.template cast<double>() * l;
  Eigen::BDCSVD<Eigen::MatrixXd> svd(ws, Eigen::ComputeThinU | Eigen::ComputeThinV);
  const Eigen::VectorXd root = svd.singularValues().head(rank).cwiseSqrt();
  // V = sqrt(S_r) V_r^T L^-1, computed as the solution of V L = sqrt(S_r) V_r^T.
  const Eigen::MatrixXd right = root.asDiagonal() * svd.matrixV().leftCols(rank).transpose();
  const Eigen::MatrixXd v =
      l.transpose().triangularView<Eigen::Upper>().solve(right.transpose()).transpose();
  Factorization out;
  out.factors.U = (svd.matrixU().leftCols(rank) * root.asDiagonal()).cast<float>();
  out.factors.V = v.cast<float>();
  out.singular_values = svd.singularValues().cast<float>();
  return out;
}

// Relative output error predicted by a spectrum truncated at `rank`:
// sqrt(sum_{i >= rank} sigma_i^2 / sum sigma_i^2).
inline double truncation_error(const Vector& singular_values, Index rank) {
  const Eigen::VectorXd s = singular_values.cast<double>();
  const double total = s.squaredNorm();
  if (total == 0.0 || rank >= s.size()) return 0.0;
  return std::sqrt(s.tail(s.size() - rank).squaredNorm() / total);
}

// One layer's entry for global rank allocation: its shape and its whitened spectrum (the
// singular values of W S, e.g. svd_llm(...).singular_values, or of W for plain SVD).
struct LayerSpectrum {
  Index out_features = 0;
  Index in_features = 0;
  Vector singular_values;
};

// Allocates ranks across layers under one budget: the factors together may use at most
// `budget` times the layers' dense parameters. Greedy on marginal output-error reduction per
// parameter: every layer starts at rank 1 and the next rank goes to the layer whose next
// singular value removes the most relative squared output error (sigma_{r+1}^2 / sum sigma^2)
// per parameter added (out + in), until the next pick no longer fits. Because each layer's
// gains decrease with rank, the picks form one fixed sequence and a larger budget extends it:
// ranks are monotone in the budget. A layer never exceeds the break-even rank out*in/(out+in)
// or its spectrum's length. Throws ArgumentError if the budget cannot give every layer rank 1.
inline std::vector<Index> allocate_ranks(const std::vector<LayerSpectrum>& layers, double budget) {
  require<ArgumentError>(!layers.empty(), "lowrank::allocate_ranks: no layers given");
  require<ArgumentError>(budget > 0.0 && budget <= 1.0, "lowrank::allocate_ranks: budget ", budget,
                         " is outside (0, 1]");
  double dense = 0.0;
  double used = 0.0;
  std::vector<Index> ranks(layers.size(), 1);
  std::vector<double> totals(layers.size());
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const LayerSpectrum& l = layers[i];
    require<ArgumentError>(l.out_features > 0 && l.in_features > 0 && l.singular_values.size() > 0,
                           "lowrank::allocate_ranks: layer ", i, " has shape ", l.out_features,
                           " x ", l.in_features, " and ", l.singular_values.size(),
                           " singular values; expected positive");
    dense += static_cast<double>(l.out_features) * static_cast<double>(l.in_features);
    used += static_cast<double>(l.out_features + l.in_features);
    totals[i] = std::max(l.singular_values.cast<double>().squaredNorm(), 1e-300);
  }
  const double allowed = budget * dense;
  require<ArgumentError>(used <= allowed, "lowrank::allocate_ranks: budget ", budget,
                         " cannot give every layer rank 1 (", used, " of ", dense,
                         " parameters needed)");
  auto cap = [&](std::size_t i) {
    const LayerSpectrum& l = layers[i];
    const Index even = (l.out_features * l.in_features) / (l.out_features + l.in_features);
    return std::min<Index>(std::max<Index>(even, 1), l.singular_values.size());
  };
  auto gain = [&](std::size_t i) {
    const double s = layers[i].singular_values(ranks[i]);
    return s * s / totals[i] / static_cast<double>(layers[i].out_features + layers[i].in_features);
  };
  using Entry = std::pair<double, std::size_t>;
  auto later = [](const Entry& a, const Entry& b) {
    return a.first < b.first || (a.first == b.first && a.second > b.second);
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(later)> queue(later);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (ranks[i] < cap(i)) queue.push({gain(i), i});
  }
  while (!queue.empty()) {
    const std::size_t i = queue.top().second;
    const double cost = static_cast<double>(layers[i].out_features + layers[i].in_features);
    if (used + cost > allowed) break;  // stop at the first pick that does not fit (monotone)
    queue.pop();
    used += cost;
    ++ranks[i];
    if (ranks[i] < cap(i)) queue.push({gain(i), i});
  }
  return ranks;
}

}  // namespace slim::lowrank

// Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for LLMs", eq. 1): score
// S_ij = |W_ij| * ||X_j||_2 with ||X_j||_2 the L2 norm of input channel j over all calibration
// tokens; weights are compared within each output row (the paper's default) or within N:M groups.
// No weight update. Defaults: 50% unstructured, per-row comparison, as in the paper.
#pragma once

#include <slim/calib/activation_stats.hpp>
#include <slim/core/checks.hpp>
#include <slim/prune/mask.hpp>

namespace slim::prune {

struct WandaOptions {
  Pattern pattern = Pattern::unstructured(0.5);
  Scope scope = Scope::per_row;
};

// The Wanda scores |W_ij| * channel_norms_j (out x in).
template <typename Derived>
Matrix wanda_scores(const Eigen::MatrixBase<Derived>& w, const Vector& channel_norms) {
  require_nonempty(w, "wanda: W");
  require_finite(w, "wanda: W");
  require<ShapeError>(channel_norms.size() == w.cols(), "wanda: channel_norms has ",
                      channel_norms.size(), " entries; expected in_features ", w.cols());
  require_finite(channel_norms, "wanda: channel_norms");
  require<ArgumentError>(channel_norms.minCoeff() >= 0.0f, "wanda: channel_norms has a negative",
                         " entry ", channel_norms.minCoeff(), "; expected L2 norms (>= 0)");
  return w.template cast<float>().cwiseAbs() * channel_norms.asDiagonal();
}

// Prunes W by Wanda scores given per-input-channel activation norms ||X_j||_2.
template <typename Derived>
PruneResult wanda(const Eigen::MatrixBase<Derived>& w, const Vector& channel_norms,
                  const WandaOptions& options = {}) {
  PruneResult result;
  result.mask = select_mask(wanda_scores(w, channel_norms), options.pattern, options.scope);
  result.weight = result.mask.apply(w);
  return result;
}

// Prunes W by Wanda scores from accumulated calibration statistics.
template <typename Derived>
PruneResult wanda(const Eigen::MatrixBase<Derived>& w, const calib::ActivationStats& stats,
                  const WandaOptions& options = {}) {
  return wanda(w, stats.l2_norm(), options);
}

}  // namespace slim::prune

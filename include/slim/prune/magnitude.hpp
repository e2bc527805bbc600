// Magnitude pruning: prune the weights of smallest |w|, layer-wise or globally across layers
// (Han et al. 2015), and the gradual schedule of Zhu & Gupta 2017 ("To prune, or not to prune",
// eq. 1): s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3, updated every dt steps. Defaults:
// s_i = 0, dt = 100 steps (the paper's pruning frequency range starts at 100).
#pragma once

#include <slim/core/checks.hpp>
#include <slim/prune/mask.hpp>

#include <cstdint>
#include <vector>

namespace slim::prune {

struct MagnitudeOptions {
  Pattern pattern = Pattern::unstructured(0.5);
  Scope scope = Scope::per_layer;
};

// The mask that prunes the smallest |W_ij| under options.pattern / options.scope.
template <typename Derived>
Mask magnitude_mask(const Eigen::MatrixBase<Derived>& w, const MagnitudeOptions& options = {}) {
  require_nonempty(w, "magnitude: W");
  require_finite(w, "magnitude: W");
  return select_mask(w.template cast<float>().cwiseAbs(), options.pattern, options.scope);
}

// W with its smallest-magnitude weights zeroed, and the mask.
template <typename Derived>
PruneResult magnitude(const Eigen::MatrixBase<Derived>& w, const MagnitudeOptions& options = {}) {
  PruneResult result;
  result.mask = magnitude_mask(w, options);
  result.weight = result.mask.apply(w);
  return result;
}

// Global magnitude pruning: one threshold across all `weights`, exactly
// round(sparsity * total weights) pruned; ties go to the earlier layer, then the lower row-major
// index. Returns one mask per layer.
inline std::vector<Mask> magnitude_mask_global(const std::vector<Matrix>& weights,
                                               double sparsity) {
  require<ArgumentError>(!weights.empty(), "magnitude_mask_global: weights is an empty list");
  detail::require_sparsity(sparsity, "magnitude_mask_global");
  std::vector<Index> offsets{0};
  for (const Matrix& w : weights) {
    require_nonempty(w, "magnitude_mask_global: weights[i]");
    require_finite(w, "magnitude_mask_global: weights[i]");
    offsets.push_back(offsets.back() + w.size());
  }
  const Index total = offsets.back();
  std::vector<float> magnitudes(static_cast<std::size_t>(total));
  for (std::size_t l = 0; l < weights.size(); ++l) {
    const Matrix& w = weights[l];
    for (Index i = 0; i < w.size(); ++i)
      magnitudes[static_cast<std::size_t>(offsets[l] + i)] = std::abs(w.data()[i]);
  }
  std::vector<Mask> masks;
  for (const Matrix& w : weights) masks.emplace_back(w.rows(), w.cols());
  const Index k = detail::pruned_count(sparsity, total);
  for (Index i : detail::lowest(total, k, [&](Index j) { return magnitudes[std::size_t(j)]; })) {
    const auto l = static_cast<std::size_t>(std::upper_bound(offsets.begin(), offsets.end(), i) -
                                            offsets.begin() - 1);
    const Index local = i - offsets[l];
    masks[l].set(local / weights[l].cols(), local % weights[l].cols(), false);
  }
  return masks;
}

// Zhu & Gupta's gradual pruning schedule.
struct GradualSchedule {
  double initial_sparsity = 0.0;  // s_i
  double final_sparsity = 0.5;    // s_f
  std::int64_t begin_step = 0;    // t0
  std::int64_t steps = 10;        // n: number of pruning steps
  std::int64_t frequency = 100;   // dt: training steps between pruning steps
};

// Target sparsity at training step `step`: s_i before t0, s_f after t0 + n dt, and the cubic ramp
// evaluated at the last pruning step (a multiple of dt after t0) in between. Users call this
// between training steps and re-prune with magnitude() when the value changes.
inline double gradual_sparsity(std::int64_t step, const GradualSchedule& s) {
  detail::require_sparsity(s.initial_sparsity, "gradual_sparsity: initial_sparsity");
  detail::require_sparsity(s.final_sparsity, "gradual_sparsity: final_sparsity");
  require<ArgumentError>(s.steps >= 1, "gradual_sparsity: steps ", s.steps, " must be positive");
  require<ArgumentError>(s.frequency >= 1, "gradual_sparsity: frequency ", s.frequency,
                         " must be positive");
  if (step <= s.begin_step) return s.initial_sparsity;
  const std::int64_t k = std::min((step - s.begin_step) / s.frequency, s.steps);
  if (k == s.steps) return s.final_sparsity;
  const double remaining = 1.0 - double(k) / double(s.steps);
  // s_f + (s_i - s_f) r^3, written so that r = 1 gives s_i exactly.
  return s.initial_sparsity +
         (s.final_sparsity - s.initial_sparsity) * (1.0 - remaining * remaining * remaining);
}

}  // namespace slim::prune

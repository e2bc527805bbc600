// Pruning on the trained test model's real weights and the real activations that reach them: the
// ordering the Wanda and SparseGPT papers report (SparseGPT < Wanda < magnitude in output error)
// at 50% and 2:4, with magnitude and Wanda compared in the same per-row group, and exact sparsity.
#include <slim/calib.hpp>
#include <slim/prune.hpp>

#include "../support/reference_model.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

namespace {

using slim::Matrix;
using slim::prune::Pattern;

struct Errors {
  double magnitude = 0.0, wanda = 0.0, sparsegpt = 0.0;
};

Errors prune_layer(const std::string& layer, const Pattern& pattern) {
  const Matrix& w = slim::test::reference_model().linear_weight(layer);
  const Matrix x = slim::test::reference_activations(layer);
  slim::calib::ActivationStats stats(w.cols());
  stats.add(x);
  slim::calib::Hessian h(w.cols());
  h.add(x);
  slim::prune::MagnitudeOptions m;
  m.pattern = pattern;
  m.scope = slim::prune::Scope::per_row;
  const auto magnitude = slim::prune::magnitude_mask(w, m);
  slim::prune::WandaOptions wo;
  wo.pattern = pattern;
  const auto wanda = slim::prune::wanda(w, stats, wo);
  slim::prune::SparseGptOptions so;
  so.pattern = pattern;
  const auto sparsegpt = slim::prune::sparsegpt(w, h.matrix(), so);
  const double expected = static_cast<double>(w.size()) * pattern.sparsity;
  EXPECT_NEAR(static_cast<double>(w.size() - magnitude.kept_count()), expected, 1.0) << layer;
  EXPECT_NEAR(static_cast<double>(w.size() - wanda.mask.kept_count()), expected, 1.0) << layer;
  EXPECT_NEAR(static_cast<double>(w.size() - sparsegpt.mask.kept_count()), expected, 1.0) << layer;
  return {slim::metrics::output_error(x, w, magnitude.apply(w)),
          slim::metrics::output_error(x, w, wanda.mask.apply(w)),
          slim::metrics::output_error(x, w, sparsegpt.weight)};
}

class RealLayers : public ::testing::TestWithParam<Pattern> {};

TEST_P(RealLayers, SparseGptBeatsWandaWhichBeatsMagnitudeInTheSameGroup) {
  int wanda_wins = 0, layers = 0;
  double wanda_total = 0.0, magnitude_total = 0.0;
  for (const std::string& name : slim::test::reference_model().linear_names()) {
    if (name == "output") continue;
    const Errors e = prune_layer(name, GetParam());
    EXPECT_LT(e.sparsegpt, e.wanda) << name;
    EXPECT_LT(e.sparsegpt, e.magnitude) << name;
    wanda_wins += e.wanda < e.magnitude ? 1 : 0;
    wanda_total += e.wanda * e.wanda;
    magnitude_total += e.magnitude * e.magnitude;
    ++layers;
  }
  // Wanda's activation-weighted score is not better on every single layer of this 32-wide model
  // (where input norms are nearly uniform it has nothing to work with); the claim held is that it
  // is better on most of them, and on their total squared output error. Measured: 12 of 14
  // layers at 50%, 10 of 14 at 2:4 (per-row magnitude as the comparison).
  EXPECT_GT(2 * wanda_wins, layers) << wanda_wins << " of " << layers;
  EXPECT_LT(wanda_total, magnitude_total);
}

INSTANTIATE_TEST_SUITE_P(Patterns, RealLayers,
                         ::testing::Values(Pattern::unstructured(0.5), Pattern::n_m(2, 4)),
                         [](const auto& info) {
                           return info.param.kind == slim::prune::PatternKind::n_m
                                      ? std::string("TwoFour")
                                      : std::string("Half");
                         });

}  // namespace

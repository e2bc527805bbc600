// Whole-model methods on the trained test model: Minitron MLP width pruning against the same model
// with the pruned neurons' W2 columns zeroed (an independent oracle: a removed neuron contributes
// nothing), the ranking against a brute-force recomputation of the activations, the comparison
// row it produces, and bad input.
#include <slim/pipeline.hpp>

#include "../support/reference_model.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

namespace {

using slim::Index;
using slim::Matrix;
using slim::model::Transformer;

TEST(MlpWidthPruning, EqualsTheOriginalWithThePrunedNeuronsSilenced) {
  const Transformer& original = slim::test::reference_model();
  const auto calib = slim::test::reference_calibration(4);
  const auto pruned = slim::pipeline::prune_mlp_width(original, calib.inputs, 0.25);
  const Index hidden = original.config().hidden_dim;
  EXPECT_EQ(pruned.model.config().hidden_dim, hidden - hidden / 4);
  ASSERT_EQ(static_cast<Index>(pruned.kept.size()), original.config().n_layers);

  slim::model::Weights silenced = original.weights();
  for (std::size_t l = 0; l < pruned.kept.size(); ++l) {
    std::vector<bool> kept(static_cast<std::size_t>(hidden), false);
    for (Index i : pruned.kept[l]) kept[static_cast<std::size_t>(i)] = true;
    for (Index i = 0; i < hidden; ++i) {
      if (!kept[static_cast<std::size_t>(i)]) silenced.layers[l].w2.col(i).setZero();
    }
  }
  const Transformer reference(std::move(silenced));
  const auto tokens = slim::test::reference_validation(2).inputs;
  const Matrix expected = reference.forward(tokens);
  const Matrix actual = pruned.model.forward(tokens);
  EXPECT_LT((actual - expected).norm(), 1e-5 * expected.norm());
}

TEST(MlpWidthPruning, KeepsTheNeuronsWithTheLargestActivationNorm) {
  const Transformer& original = slim::test::reference_model();
  const auto calib = slim::test::reference_calibration(4);
  const auto pruned = slim::pipeline::prune_mlp_width(original, calib.inputs, 0.5);
  // Brute force: the SwiGLU activation of layer l from the hook's input to W1, recomputed here.
  for (Index l = 0; l < original.config().n_layers; ++l) {
    const std::string prefix = "layers." + std::to_string(l) + ".feed_forward.";
    Matrix x;
    Transformer probe = original;
    probe.set_hook([&](const std::string& name, const Eigen::Ref<const Matrix>& in) {
      if (name == prefix + "w1") x = in;
    });
    probe.forward(calib.inputs);
    const Matrix gate = x * original.linear_weight(prefix + "w1").transpose();
    const Matrix up = x * original.linear_weight(prefix + "w3").transpose();
    const Matrix act = (gate.array() / (1.0f + (-gate.array()).exp()) * up.array()).matrix();
    std::vector<double> norm(static_cast<std::size_t>(act.cols()));
    for (Index j = 0; j < act.cols(); ++j) norm[static_cast<std::size_t>(j)] = act.col(j).norm();
    std::vector<Index> order(norm.size());
    std::iota(order.begin(), order.end(), Index{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](Index a, Index b) { return norm[std::size_t(a)] > norm[std::size_t(b)]; });
    const std::vector<Index>& kept = pruned.kept[static_cast<std::size_t>(l)];
    // Every kept neuron's norm is at least every dropped one's (up to float noise at the cut).
    double weakest_kept = 1e300, strongest_dropped = 0.0;
    std::vector<bool> is_kept(norm.size(), false);
    for (Index i : kept) is_kept[std::size_t(i)] = true;
    for (std::size_t j = 0; j < norm.size(); ++j) {
      if (is_kept[j]) {
        weakest_kept = std::min(weakest_kept, norm[j]);
      } else {
        strongest_dropped = std::max(strongest_dropped, norm[j]);
      }
    }
    EXPECT_GE(weakest_kept, strongest_dropped * (1.0 - 1e-4)) << "layer " << l;
    EXPECT_TRUE(std::is_sorted(kept.begin(), kept.end()));
  }
}

TEST(MlpWidthPruning, ComparisonRowReportsTheSmallerModel) {
  const Transformer& original = slim::test::reference_model();
  slim::pipeline::CompareOptions o;
  o.calibration_windows = 2;
  o.eval_windows = 2;
  o.latency_tokens = 4;
  o.latency_repetitions = 1;
  o.threads = 1;
  const auto rows = slim::pipeline::compare(original, slim::test::reference_corpus(), {}, o,
                                            {slim::pipeline::minitron_mlp_method(0.5, 0)});
  ASSERT_EQ(rows.size(), 2u);
  const auto& r = rows[1];
  EXPECT_EQ(r.name, "Minitron MLP 50%");
  // The selected layers: 4 attention projections of dim x dim (or kv x dim) and 3 MLP matrices
  // per layer; half the MLP weights go.
  const auto& c = original.config();
  const double attention = double(2 * c.dim * c.dim + 2 * c.kv_dim() * c.dim);
  const double mlp = double(3 * c.hidden_dim * c.dim);
  EXPECT_NEAR(r.bits_per_weight, 32.0 * (attention + mlp / 2) / (attention + mlp), 1e-9);
  EXPECT_LT(r.size_mb, rows[0].size_mb);
  EXPECT_GT(r.mean_kl, 0.0);
}

TEST(MlpWidthPruning, BadInputThrowsTypedErrors) {
  const Transformer& original = slim::test::reference_model();
  const auto calib = slim::test::reference_calibration(1);
  EXPECT_THROW(slim::pipeline::prune_mlp_width(original, calib.inputs, 0.0), slim::ArgumentError);
  EXPECT_THROW(slim::pipeline::prune_mlp_width(original, calib.inputs, 1.0), slim::ArgumentError);
  EXPECT_THROW(slim::pipeline::prune_mlp_width(original, calib.inputs, 0.001), slim::ArgumentError);
  Transformer replaced = original;
  replaced.replace(
      "layers.0.feed_forward.w1",
      std::make_shared<slim::DenseLinear>(original.linear_weight("layers.0.feed_forward.w1")));
  EXPECT_THROW(slim::pipeline::prune_mlp_width(replaced, calib.inputs, 0.5), slim::ArgumentError);
}

}  // namespace

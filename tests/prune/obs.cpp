#include <slim/prune.hpp>

#include <gtest/gtest.h>

#include <Eigen/LU>

#include <limits>
#include <vector>

namespace {

using slim::Index;
using slim::Matrix;
using slim::MatrixD;
using slim::VectorD;
using slim::prune::ObsOptions;
using slim::prune::Pattern;

// The exact empirical Fisher of the flattened weight: damp I + (1/m) G^T G.
MatrixD exact_fisher(const Matrix& gradients, double damp) {
  const MatrixD g = gradients.cast<double>();
  return damp * MatrixD::Identity(g.cols(), g.cols()) + g.transpose() * g / double(g.rows());
}

// 0.5 dw^T F dw for the change from w to pruned (flattened row-major).
double quadratic_loss(const MatrixD& fisher, const Matrix& w, const Matrix& pruned) {
  const MatrixD diff = (pruned - w).cast<double>();
  const Eigen::Map<const VectorD> dw(diff.data(), diff.size());
  return 0.5 * dw.dot(fisher * dw);
}

// Correlated per-sample gradients (the structure OBS exploits).
Matrix correlated_gradients(Index samples, Index width, std::uint64_t seed) {
  return slim::random::correlated_activations(samples, width, seed, {.rank = 4});
}

TEST(Obs, WoodburyBlocksEqualTheDirectInverseOfEachFisherBlock) {
  const Matrix g = correlated_gradients(40, 23, 70);
  const auto blocks = slim::prune::detail::block_fisher_inverse(g, 10, 1e-2, "test");
  ASSERT_EQ(blocks.size(), 3u);  // 10 + 10 + 3
  for (std::size_t b = 0; b < 3; ++b) {
    const Index begin = Index(b) * 10;
    const Index size = std::min<Index>(10, 23 - begin);
    const MatrixD gb = g.middleCols(begin, size).cast<double>();
    const MatrixD direct =
        (1e-2 * MatrixD::Identity(size, size) + gb.transpose() * gb / 40.0).inverse();
    EXPECT_LT((blocks[b] - direct).cwiseAbs().maxCoeff(), 1e-8 * direct.cwiseAbs().maxCoeff());
  }
}

TEST(Obs, ExactFisherUpdateIsOptimalAndBeatsMagnitude) {
  // One row, block = full width: F is the exact (dampened) empirical Fisher of the layer.
  const Matrix w = slim::random::gaussian(1, 16, 71);
  const Matrix g = correlated_gradients(64, 16, 72);
  const double damp = 1e-3;
  const MatrixD fisher = exact_fisher(g, damp);
  for (const Pattern& pattern : {Pattern::unstructured(0.5), Pattern::n_m(2, 4)}) {
    const auto result =
        slim::prune::obs_prune(w, g, {.pattern = pattern, .block_size = 16, .damp = damp});
    const auto magnitude = slim::prune::magnitude(w, {.pattern = pattern});
    EXPECT_EQ(result.mask.pruned_count(), 8);
    if (pattern.kind == slim::prune::PatternKind::n_m) {
      EXPECT_TRUE(slim::prune::satisfies_n_m(result.mask, 2, 4));
    }
    for (Index c = 0; c < 16; ++c) {
      if (!result.mask.kept(0, c)) {
        EXPECT_EQ(result.weight(0, c), 0.0f);
      }
    }
    const double obs_loss = quadratic_loss(fisher, w, result.weight);
    EXPECT_NEAR(obs_loss, result.loss, 1e-4 * result.loss);
    EXPECT_LT(obs_loss, quadratic_loss(fisher, w, magnitude.weight));
    // Optimality for its mask: the loss gradient F dw vanishes on every kept weight.
    const MatrixD diff = (result.weight - w).cast<double>();
    const VectorD gradient = fisher * Eigen::Map<const VectorD>(diff.data(), 16);
    for (Index c = 0; c < 16; ++c) {
      if (result.mask.kept(0, c)) {
        EXPECT_NEAR(gradient(c), 0.0,
                    1e-3 * fisher.diagonal().maxCoeff() * w.cwiseAbs().maxCoeff());
      }
    }
  }
}

TEST(Obs, SingleWeightMatchesTheClassicalObsFormula) {
  // Pruning one weight in a block: dw = -w_q / [F^-1]_qq * F^-1 e_q, loss w_q^2 / (2 [F^-1]_qq).
  const Matrix w = slim::random::gaussian(1, 8, 73);
  const Matrix g = correlated_gradients(32, 8, 74);
  const MatrixD f_inv = exact_fisher(g, 1e-2).inverse();
  const auto result = slim::prune::obs_prune(
      w, g, {.pattern = Pattern::unstructured(0.125), .block_size = 8, .damp = 1e-2});
  Index q = -1;
  double best = std::numeric_limits<double>::infinity();
  for (Index j = 0; j < 8; ++j) {
    const double rho = double(w(0, j)) * w(0, j) / (2.0 * f_inv(j, j));
    if (rho < best) {
      best = rho;
      q = j;
    }
  }
  ASSERT_FALSE(result.mask.kept(0, q));
  EXPECT_NEAR(result.loss, best, 1e-6 * best);
  for (Index j = 0; j < 8; ++j) {
    const double expected = j == q ? 0.0 : w(0, j) - w(0, q) / f_inv(q, q) * f_inv(j, q);
    EXPECT_NEAR(result.weight(0, j), expected, 1e-4 * std::abs(w(0, q)) + 1e-6);
  }
}

TEST(ObsBadInput, RejectsWrongGradientWidthSingularBlocksAndBadOptions) {
  const Matrix w = slim::random::gaussian(2, 8, 75);
  const Matrix g = correlated_gradients(10, 16, 76);
  using slim::prune::obs_prune;
  EXPECT_THROW(obs_prune(w, Matrix::Ones(10, 15)), slim::ShapeError);
  EXPECT_THROW(obs_prune(w, Matrix(0, 16)), slim::ShapeError);
  EXPECT_THROW(obs_prune(w, g, {.damp = 0.0}), slim::NumericalError);  // singular block
  EXPECT_THROW(obs_prune(w, g, {.damp = -1.0}), slim::ArgumentError);
  EXPECT_THROW(obs_prune(w, g, {.block_size = 0}), slim::ArgumentError);
  EXPECT_THROW(obs_prune(w, g, {.pattern = Pattern::n_m(4, 2)}), slim::ArgumentError);
  EXPECT_THROW(obs_prune(w, g, {.pattern = Pattern::n_m(2, 3)}), slim::ArgumentError);
  EXPECT_THROW(obs_prune(w, g, {.pattern = Pattern::unstructured(1.0)}), slim::ArgumentError);
  EXPECT_THROW(obs_prune(w, g, {.pattern = Pattern::rows(0.5)}), slim::ArgumentError);
  Matrix bad = g;
  bad(3, 3) = std::numeric_limits<float>::infinity();
  EXPECT_THROW(obs_prune(w, bad), slim::NumericalError);
}

}  // namespace

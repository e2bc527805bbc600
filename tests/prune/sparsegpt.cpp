#include <slim/calib.hpp>
#include <slim/prune.hpp>
#include <slim/quant/rtn.hpp>

#include <gtest/gtest.h>

#include <Eigen/Cholesky>
#include <Eigen/LU>

#include <algorithm>
#include <limits>
#include <tuple>
#include <vector>

namespace {

using slim::Index;
using slim::Matrix;
using slim::MatrixD;
using slim::Vector;
using slim::prune::Mask;
using slim::prune::Pattern;
using slim::prune::Scope;
using slim::prune::SparseGptOptions;

MatrixD hessian_of(const Matrix& x) {
  return (2.0 / double(x.rows())) * x.cast<double>().transpose() * x.cast<double>();
}

TEST(SparseGpt, WithIdentityHessianSelectsBlockwiseMagnitudeMaskAndMakesNoUpdate) {
  const Matrix w = slim::random::student_t(8, 320, 4, 21);  // blocks of 128, 128, 64 columns
  const MatrixD identity = 2.0 * MatrixD::Identity(320, 320);
  for (Scope scope : {Scope::per_layer, Scope::per_row}) {
    const auto result = slim::prune::sparsegpt(
        w, identity, {.pattern = Pattern::unstructured(0.5), .scope = scope});
    for (Index b = 0; b < 320; b += 128) {
      const Index count = std::min<Index>(128, 320 - b);
      const Mask expected = slim::prune::magnitude_mask(
          w.middleCols(b, count), {.pattern = Pattern::unstructured(0.5), .scope = scope});
      EXPECT_EQ(expected.matrix(), result.mask.matrix().middleCols(b, count)) << "block " << b;
    }
    EXPECT_EQ(result.weight, result.mask.apply(w));  // survivors exactly unchanged
    EXPECT_EQ(result.mask.pruned_count(), 8 * 160);
  }
  const auto nm = slim::prune::sparsegpt(w, identity, {.pattern = Pattern::n_m(2, 4)});
  EXPECT_EQ(nm.mask, slim::prune::magnitude_mask(w, {.pattern = Pattern::n_m(2, 4)}));
  EXPECT_EQ(nm.weight, nm.mask.apply(w));
}

// The OBS loop of SparseGPT written directly from its definition, in double, with explicit
// inverses instead of the Cholesky trick: at column j, F = {j, ..., n-1} is the set of columns
// not yet processed, Hinv_F = (H_FF)^-1, the score of w_rj is w_rj^2 / (Hinv_F)_00 (chosen for a
// whole block of columns at the block's start, or per N:M group when the sweep reaches it), and
// removing w_rj updates the rest of row r by -w_rj / (Hinv_F)_00 * (Hinv_F)_{1:,0}.
struct BruteForce {
  MatrixD weight;
  Mask mask;
};

BruteForce brute_force_obs(const Matrix& w_in, const MatrixD& h_in, const Pattern& pattern,
                           Index block) {
  const Index rows = w_in.rows();
  const Index n = w_in.cols();
  MatrixD h = h_in;
  h.diagonal().array() += 0.01 * h.diagonal().mean();
  std::vector<MatrixD> hinv(static_cast<std::size_t>(n));
  for (Index j = 0; j < n; ++j) {
    hinv[std::size_t(j)] = h.bottomRightCorner(n - j, n - j).inverse();
  }
  auto d = [&](Index j) { return hinv[std::size_t(j)](0, 0); };
  MatrixD w = w_in.cast<double>();
  Mask mask(rows, n);
  for (Index j = 0; j < n; ++j) {
    if (pattern.kind == slim::prune::PatternKind::unstructured && j % block == 0) {
      const Index count = std::min(block, n - j);
      std::vector<std::tuple<double, Index, Index>> scores;  // (score, tie index, column)
      for (Index r = 0; r < rows; ++r) {
        for (Index c = j; c < j + count; ++c) {
          scores.emplace_back(w(r, c) * w(r, c) / d(c), r * count + (c - j), c);
        }
      }
      std::sort(scores.begin(), scores.end());
      const auto k = static_cast<std::size_t>(pattern.sparsity * double(rows * count) + 0.5);
      for (std::size_t i = 0; i < k; ++i) {
        mask.set(std::get<1>(scores[i]) / count, std::get<2>(scores[i]), false);
      }
    }
    if (pattern.kind == slim::prune::PatternKind::n_m && j % pattern.m == 0) {
      for (Index r = 0; r < rows; ++r) {
        std::vector<std::pair<double, Index>> scores;
        for (Index c = j; c < j + pattern.m; ++c) scores.emplace_back(w(r, c) * w(r, c) / d(c), c);
        std::sort(scores.begin(), scores.end());
        for (Index i = 0; i < pattern.m - pattern.n; ++i)
          mask.set(r, scores[std::size_t(i)].second, false);
      }
    }
    for (Index r = 0; r < rows; ++r) {
      if (mask.kept(r, j)) continue;
      const double e = w(r, j) / d(j);
      w.row(r).tail(n - j) -= e * hinv[std::size_t(j)].col(0).transpose();
      w(r, j) = 0.0;
    }
  }
  return {w, mask};
}

TEST(SparseGpt, MatchesBruteForceObsLoopOnTinyLayer) {
  const Matrix x = slim::random::correlated_activations(96, 16, 22, {.rank = 4});
  const Matrix w = slim::random::gaussian(5, 16, 23);
  const MatrixD h = hessian_of(x);
  struct Case {
    Pattern pattern;
    Index block;
  };
  for (const Case& c : {Case{Pattern::unstructured(0.5), 16}, Case{Pattern::unstructured(0.4), 4},
                        Case{Pattern::n_m(2, 4), 8}, Case{Pattern::n_m(1, 4), 16}}) {
    const auto result = slim::prune::sparsegpt(w, h, {.pattern = c.pattern, .block_size = c.block});
    const BruteForce expected = brute_force_obs(w, h, c.pattern, c.block);
    EXPECT_EQ(result.mask, expected.mask) << "block " << c.block;
    const double scale = expected.weight.cwiseAbs().maxCoeff();
    EXPECT_LT((result.weight.cast<double>() - expected.weight).cwiseAbs().maxCoeff(), 2e-4 * scale)
        << "block " << c.block;
  }
}

TEST(SparseGpt, MatchesBruteForceObsLoopAcrossBlocksOfAWiderLayer) {
  const Matrix x = slim::random::correlated_activations(256, 96, 31, {.rank = 8});
  const Matrix w = slim::random::student_t(4, 96, 4, 32);
  const MatrixD h = hessian_of(x);
  const auto result =
      slim::prune::sparsegpt(w, h, {.pattern = Pattern::unstructured(0.5), .block_size = 32});
  const BruteForce expected = brute_force_obs(w, h, Pattern::unstructured(0.5), 32);
  EXPECT_EQ(result.mask, expected.mask);
  EXPECT_LT((result.weight.cast<double>() - expected.weight).cwiseAbs().maxCoeff(),
            2e-4 * expected.weight.cwiseAbs().maxCoeff());
}

TEST(SparseGpt, OutputErrorIsBelowWandaWhichIsBelowMagnitude) {
  // Calibrate on the first half of the tokens, evaluate on the held-out second half.
  const Matrix x = slim::random::correlated_activations(1024, 256, 24);
  const Matrix calib = x.topRows(512);
  const Matrix eval = x.bottomRows(512);
  const Matrix w = slim::random::gaussian(96, 256, 25);
  slim::calib::Hessian hessian(256);
  slim::calib::ActivationStats stats(256);
  hessian.add(calib);
  stats.add(calib);
  for (const Pattern& pattern : {Pattern::unstructured(0.5), Pattern::n_m(2, 4)}) {
    const double sparsegpt = slim::metrics::output_error(
        eval, w, slim::prune::sparsegpt(w, hessian, {.pattern = pattern}).weight);
    const double wanda = slim::metrics::output_error(
        eval, w, slim::prune::wanda(w, stats, {.pattern = pattern}).weight);
    const double magnitude = slim::metrics::output_error(
        eval, w, slim::prune::magnitude(w, {.pattern = pattern}).weight);
    EXPECT_LT(sparsegpt, wanda) << "sparsity " << pattern.sparsity;
    EXPECT_LT(wanda, magnitude) << "sparsity " << pattern.sparsity;
  }
}

TEST(SparseGpt, JointQuantizationKeepsSurvivorsOnTheGridAndBeatsPruneThenRtn) {
  const Matrix x = slim::random::correlated_activations(768, 256, 26);
  const Matrix w = slim::random::gaussian(32, 256, 27);
  const MatrixD h = hessian_of(x.topRows(512));
  const slim::quant::Scheme scheme = slim::quant::int4_group(64);
  const auto joint =
      slim::prune::sparsegpt(w, h, {.pattern = Pattern::unstructured(0.5), .scheme = scheme});
  ASSERT_TRUE(joint.quantized.has_value());
  EXPECT_EQ(joint.quantized->dequantize(), joint.weight);
  EXPECT_EQ(joint.mask.pruned_count(), 32 * 128);
  for (Index r = 0; r < 32; ++r) {
    for (Index c = 0; c < 256; ++c) {
      if (!joint.mask.kept(r, c)) {
        EXPECT_EQ(joint.weight(r, c), 0.0f);
      }
    }
  }
  const Matrix naive = slim::quant::fake_quantize(
      slim::prune::magnitude(w, {.pattern = Pattern::unstructured(0.5)}).weight, scheme);
  const Matrix eval = x.bottomRows(256);
  EXPECT_LT(slim::metrics::output_error(eval, w, joint.weight),
            slim::metrics::output_error(eval, w, naive));
  const auto per_channel = slim::prune::sparsegpt(
      w, h, {.pattern = Pattern::n_m(2, 4), .scheme = slim::quant::int8_per_channel()});
  EXPECT_EQ(per_channel.quantized->dequantize(), per_channel.weight);
  EXPECT_TRUE(slim::prune::satisfies_n_m(per_channel.mask, 2, 4));
}

TEST(SparseGpt, DeadInputsAreZeroedWithoutNonFiniteValues) {
  Matrix x = slim::random::correlated_activations(64, 16, 28);
  x.col(3).setZero();
  const Matrix w = slim::random::gaussian(4, 16, 29);
  const auto result = slim::prune::sparsegpt(w, hessian_of(x));
  EXPECT_TRUE(result.weight.allFinite());
  EXPECT_TRUE(result.weight.col(3).isZero(0.0f));
  EXPECT_EQ(result.mask.pruned_count(), 32);
}

TEST(SparseGptBadInput, RejectsWrongShapesPatternsAndIndefiniteHessian) {
  const Matrix w = slim::random::gaussian(4, 12, 30);
  const MatrixD h = MatrixD::Identity(12, 12);
  using slim::prune::sparsegpt;
  EXPECT_THROW(sparsegpt(w, MatrixD::Identity(11, 11)), slim::ShapeError);
  EXPECT_THROW(sparsegpt(w, MatrixD::Identity(12, 11)), slim::ShapeError);
  slim::calib::Hessian wrong_width(10);
  wrong_width.add(Matrix::Ones(3, 10));
  EXPECT_THROW(sparsegpt(w, wrong_width), slim::ShapeError);
  EXPECT_THROW(sparsegpt(w, slim::calib::Hessian(12)), slim::ArgumentError);  // no samples
  EXPECT_THROW(sparsegpt(w, h, {.pattern = Pattern::unstructured(1.0)}), slim::ArgumentError);
  EXPECT_THROW(sparsegpt(w, h, {.pattern = Pattern::rows(0.5)}), slim::ArgumentError);
  EXPECT_THROW(sparsegpt(w, h, {.pattern = Pattern::n_m(3, 2)}), slim::ArgumentError);
  EXPECT_THROW(sparsegpt(w, h, {.pattern = Pattern::n_m(2, 3), .block_size = 128}),
               slim::ArgumentError);  // 3 does not divide block_size 128
  EXPECT_THROW(sparsegpt(w, h, {.block_size = 0}), slim::ArgumentError);
  EXPECT_THROW(sparsegpt(w, h, {.percdamp = -0.1}), slim::ArgumentError);
  EXPECT_THROW(sparsegpt(w, h, {.scheme = slim::quant::int4_group(5)}), slim::ArgumentError);
  MatrixD indefinite = MatrixD::Identity(12, 12);
  indefinite(4, 4) = -1e6;
  EXPECT_THROW(sparsegpt(w, indefinite), slim::NumericalError);
  MatrixD nan = h;
  nan(2, 2) = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(sparsegpt(w, nan), slim::NumericalError);
  Matrix bad = w;
  bad(0, 0) = std::numeric_limits<float>::infinity();
  EXPECT_THROW(sparsegpt(bad, h), slim::NumericalError);
}

}  // namespace

#include <slim/calib.hpp>
#include <slim/core.hpp>
#include <slim/lowrank.hpp>

#include <gtest/gtest.h>
#include "support/reference_model.hpp"

#include <Eigen/SVD>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <vector>

namespace {

using slim::Index;
using slim::Matrix;
namespace lowrank = slim::lowrank;

// W = Q1 diag(sigma) Q2^T with orthonormal Q1, Q2 from QR of Gaussians and a chosen spectrum.
Matrix with_spectrum(Index rows, Index cols, const Eigen::VectorXd& sigma, std::uint64_t seed) {
  const Eigen::MatrixXd a = slim::random::gaussian(rows, sigma.size(), seed).cast<double>();
  const Eigen::MatrixXd b = slim::random::gaussian(cols, sigma.size(), seed + 1).cast<double>();
  const Eigen::MatrixXd q1 = Eigen::HouseholderQR<Eigen::MatrixXd>(a).householderQ() *
                             Eigen::MatrixXd::Identity(rows, sigma.size());
  const Eigen::MatrixXd q2 = Eigen::HouseholderQR<Eigen::MatrixXd>(b).householderQ() *
                             Eigen::MatrixXd::Identity(cols, sigma.size());
  return (q1 * sigma.asDiagonal() * q2.transpose()).cast<float>();
}

Eigen::VectorXd decaying(Index n, double rate) {
  Eigen::VectorXd s(n);
  for (Index i = 0; i < n; ++i) s(i) = std::exp(-rate * static_cast<double>(i));
  return s;
}

// Independent oracle for Eckart-Young: the discarded spectrum from a double-precision Jacobi SVD.
double discarded_energy(const Matrix& w, Index rank) {
  Eigen::JacobiSVD<Eigen::MatrixXd> svd(w.cast<double>());
  const Eigen::VectorXd s = svd.singularValues();
  return std::sqrt(s.tail(s.size() - rank).squaredNorm());
}

TEST(TruncatedSvd, ErrorEqualsRootSumSquareOfDiscardedSingularValues) {
  const Matrix w = slim::random::student_t(40, 56, 4, 1);
  for (Index rank : {1, 5, 20, 39, 40}) {
    const auto f = lowrank::truncated_svd(w, rank);
    ASSERT_EQ(f.factors.rank(), rank);
    const double err = (w - f.factors.reconstruct()).cast<double>().norm();
    EXPECT_NEAR(err, discarded_energy(w, rank), 1e-4 * w.norm() + 1e-6) << "rank " << rank;
  }
}

TEST(RandomizedSvd, IsWithinTwoPercentOfTruncatedSvdOnDecayingSpectra) {
  const Matrix w = with_spectrum(300, 200, decaying(200, 0.03), 2);
  for (Index rank : {10, 40}) {
    const double exact = (w - lowrank::truncated_svd(w, rank).factors.reconstruct()).norm();
    const double fast = (w - lowrank::randomized_svd(w, rank).factors.reconstruct()).norm();
    EXPECT_LE(fast, 1.02 * exact) << "rank " << rank;
    EXPECT_GE(fast, exact * (1 - 1e-4));  // Eckart-Young: nothing beats the truncated SVD
  }
}

TEST(RandomizedSvd, IsExactForMatricesOfExactRank) {
  const Matrix w = with_spectrum(120, 90, decaying(12, 0.2), 3);
  const auto f = lowrank::randomized_svd(w, 12, {.oversampling = 0});
  EXPECT_LT(slim::metrics::relative_frobenius(w, f.factors.reconstruct()), 1e-5);
}

TEST(RandomizedSvd, SameSeedGivesBitIdenticalFactors) {
  const Matrix w = slim::random::gaussian(50, 40, 4);
  const auto a = lowrank::randomized_svd(w, 8, {.seed = 9});
  const auto b = lowrank::randomized_svd(w, 8, {.seed = 9});
  EXPECT_EQ(a.factors.U, b.factors.U);
  EXPECT_EQ(a.factors.V, b.factors.V);
}

struct ActivationCase {
  Matrix x;
  Matrix w;
  slim::calib::Hessian hessian{64};
  slim::calib::ActivationStats stats{64};
  ActivationCase() {
    x = slim::random::correlated_activations(1024, 64, 5);
    w = slim::random::gaussian(48, 64, 6);
    hessian.add(x);
    stats.add(x);
  }
};

TEST(SvdLlm, OutputErrorEqualsTheDiscardedSingularValuesOfWS) {
  ActivationCase c;
  for (Index rank : {4, 16, 32}) {
    const auto f = lowrank::svd_llm(c.w, c.hessian, rank);
    const double measured = slim::metrics::output_error(c.x, c.w, f.factors.reconstruct());
    const double predicted = lowrank::truncation_error(f.singular_values, rank);
    EXPECT_NEAR(measured, predicted, 1e-3 * predicted) << "rank " << rank;
  }
}

TEST(SvdLlm, BeatsAsvdWhichBeatsPlainSvdInOutputError) {
  ActivationCase c;
  for (Index rank : {8, 16, 24}) {
    const double plain = slim::metrics::output_error(
        c.x, c.w, lowrank::truncated_svd(c.w, rank).factors.reconstruct());
    const double asvd = slim::metrics::output_error(
        c.x, c.w, lowrank::asvd(c.w, c.stats, rank).factors.reconstruct());
    const double whitened = slim::metrics::output_error(
        c.x, c.w, lowrank::svd_llm(c.w, c.hessian, rank).factors.reconstruct());
    std::printf("rank %2ld output error: SVD %.4f  ASVD %.4f  SVD-LLM %.4f\n",
                static_cast<long>(rank), plain, asvd, whitened);
    EXPECT_LT(whitened, asvd);
    EXPECT_LT(asvd, plain);
  }
}

// Real weights and real captured activations of the trained test model. SVD-LLM is optimal for
// the calibration output error (up to the 1e-6 dampening at most), so it must beat both. ASVD
// beating plain SVD is only the published tendency, and it does not hold on every real layer:
// measured output errors (SVD / ASVD / SVD-LLM) wq r8 0.1256 / 0.1261 / 0.1022, wq r16 0.0417 /
// 0.0415 / 0.0275, w2 r8 0.5949 / 0.5586 / 0.4345, w2 r16 0.2613 / 0.2352 / 0.1747. So the
// ASVD-vs-SVD ordering is asserted on synthetic correlated channels above and printed here.
TEST(SvdLlmOnReferenceModel, BeatsAsvdAndPlainSvdInOutputError) {
  for (const char* name : {"layers.0.attention.wq", "layers.1.feed_forward.w2"}) {
    const Matrix& w = slim::test::reference_model().linear_weight(name);
    const Matrix x = slim::test::reference_activations(name, 1024);
    slim::calib::Hessian hessian(w.cols());
    slim::calib::ActivationStats stats(w.cols());
    hessian.add(x);
    stats.add(x);
    for (Index rank : {std::min(w.rows(), w.cols()) / 4, std::min(w.rows(), w.cols()) / 2}) {
      const double plain =
          slim::metrics::output_error(x, w, lowrank::truncated_svd(w, rank).factors.reconstruct());
      const double asvd =
          slim::metrics::output_error(x, w, lowrank::asvd(w, stats, rank).factors.reconstruct());
      const double whitened = slim::metrics::output_error(
          x, w, lowrank::svd_llm(w, hessian, rank).factors.reconstruct());
      std::printf("%s rank %2ld output error: SVD %.4f  ASVD %.4f  SVD-LLM %.4f\n", name,
                  static_cast<long>(rank), plain, asvd, whitened);
      EXPECT_LT(whitened, asvd) << name << " rank " << rank;
      EXPECT_LT(whitened, plain) << name << " rank " << rank;
    }
  }
}

TEST(SvdLlm, DampensASingularHessianAndThrowsWhenDampeningCannotHelp) {
  // 16 tokens of width 64: X^T X has rank 16, so the whitening needs dampening.
  const Matrix x = slim::random::gaussian(16, 64, 7);
  slim::calib::Hessian h(64);
  h.add(x);
  const Matrix w = slim::random::gaussian(8, 64, 8);
  const auto f = lowrank::svd_llm(w, h, 4);
  EXPECT_TRUE(f.factors.U.allFinite() && f.factors.V.allFinite());
  slim::calib::Hessian zero(64);
  zero.add(Matrix::Zero(10, 64));
  EXPECT_THROW(lowrank::svd_llm(w, zero, 4), slim::NumericalError);
}

TEST(RankSelection, BudgetRankNeverExceedsTheBudgetAndIsMonotone) {
  Index previous = 0;
  for (double budget = 0.01; budget <= 1.0; budget += 0.01) {
    const Index r = lowrank::rank_for_budget(4096, 11008, budget);
    EXPECT_LE(static_cast<double>(r) * (4096 + 11008), budget * 4096.0 * 11008.0);
    EXPECT_GT(static_cast<double>(r + 1) * (4096 + 11008), budget * 4096.0 * 11008.0);
    EXPECT_GE(r, previous);
    previous = r;
  }
  EXPECT_EQ(lowrank::rank_for_budget(4096, 4096, 0.25), 512);
}

TEST(RankSelection, EnergyRankKeepsTheRequestedFraction) {
  slim::Vector s(4);
  s << 3, 2, 1, 1;  // energies 9, 4, 1, 1 of 15
  EXPECT_EQ(lowrank::rank_for_energy(s, 0.6), 1);
  EXPECT_EQ(lowrank::rank_for_energy(s, 0.61), 2);
  EXPECT_EQ(lowrank::rank_for_energy(s, 13.0 / 15.0), 2);
  EXPECT_EQ(lowrank::rank_for_energy(s, 1.0), 4);
}

TEST(RankAllocation, StaysWithinBudgetIsMonotoneAndBeatsUniformRanks) {
  std::vector<lowrank::LayerSpectrum> layers;
  layers.push_back({64, 64, decaying(64, 0.5).cast<float>()});    // compressible
  layers.push_back({64, 128, decaying(64, 0.02).cast<float>()});  // flat spectrum
  layers.push_back({32, 64, decaying(32, 0.1).cast<float>()});
  const double dense = 64 * 64 + 64 * 128 + 32 * 64;
  std::vector<Index> previous(3, 0);
  for (double budget = 0.1; budget <= 1.0; budget += 0.05) {
    const auto ranks = lowrank::allocate_ranks(layers, budget);
    double used = 0;
    for (std::size_t i = 0; i < 3; ++i) {
      used += static_cast<double>(ranks[i] * (layers[i].out_features + layers[i].in_features));
      EXPECT_GE(ranks[i], previous[i]);
    }
    EXPECT_LE(used, budget * dense);
    previous = ranks;
  }
  // At 40% the greedy total relative squared error is below that of one rank for all layers.
  const auto ranks = lowrank::allocate_ranks(layers, 0.4);
  Index uniform = 1;
  while (static_cast<double>((uniform + 1) * (128 + 192 + 96)) <= 0.4 * dense) ++uniform;
  double greedy_error = 0, uniform_error = 0;
  for (std::size_t i = 0; i < 3; ++i) {
    greedy_error += std::pow(lowrank::truncation_error(layers[i].singular_values, ranks[i]), 2);
    uniform_error += std::pow(
        lowrank::truncation_error(layers[i].singular_values,
                                  std::min<Index>(uniform, layers[i].singular_values.size())),
        2);
  }
  EXPECT_LT(greedy_error, uniform_error);
}

// Alternating projections converge to a stationary point, not always to the planted split (here
// about 4% error remains once the spikes have bent the first SVD); the properties that must hold
// are monotone descent and a large gain over the low-rank part alone.
TEST(DenseSparse, ErrorNeverIncreasesAndBeatsLowRankAloneOnLowRankPlusSpikes) {
  Matrix w = with_spectrum(60, 50, decaying(6, 0.3), 9);
  slim::random::Generator g(10);
  for (int k = 0; k < 40; ++k)
    w(static_cast<Index>(g.below(60)), static_cast<Index>(g.below(50))) += 5.0f;
  const auto split = lowrank::dense_sparse(w, 6, 40, {.iterations = 8});
  for (std::size_t i = 1; i < split.error_history.size(); ++i) {
    EXPECT_LE(split.error_history[i], split.error_history[i - 1] * (1 + 1e-5));
  }
  EXPECT_LT(slim::metrics::relative_frobenius(w, split.reconstruct()),
            0.2 * slim::metrics::relative_frobenius(
                      w, lowrank::truncated_svd(w, 6).factors.reconstruct()));
  EXPECT_EQ(split.sparse.nonZeros(), 40);
  EXPECT_EQ(split.bytes(), 4u * 6u * 110u + 40u * 8u + 4u * 61u);
}

// The residual's top-k comes from prune's selection; the oracle is a stable sort by magnitude,
// on values with many exact ties of both signs (ties go to the lower row-major index).
TEST(DenseSparse, KeepsTheLargestResidualEntriesWithTiesToTheLowerIndex) {
  Matrix r(2, 3);
  r << 1, -2, 2, 0.5f, -2, -1;
  const auto top3 = lowrank::detail::top_k_entries(r, 3);
  const auto top4 = lowrank::detail::top_k_entries(r, 4);
  EXPECT_EQ(Matrix(top3), (Matrix(2, 3) << 0, -2, 2, 0, -2, 0).finished());
  EXPECT_EQ(Matrix(top4), (Matrix(2, 3) << 1, -2, 2, 0, -2, 0).finished());
  Matrix q = slim::random::gaussian(9, 7, 15);
  q = (q * 2.0f).array().round().matrix();  // few distinct magnitudes: many ties
  std::vector<Index> order(static_cast<std::size_t>(q.size()));
  std::iota(order.begin(), order.end(), Index{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](Index a, Index b) { return std::abs(q.data()[a]) > std::abs(q.data()[b]); });
  for (Index k : {0, 1, 10, 30, 63}) {
    Matrix expected = Matrix::Zero(9, 7);
    for (Index i = 0; i < k; ++i) expected.data()[order[i]] = q.data()[order[i]];
    const auto got = lowrank::detail::top_k_entries(q, k);
    EXPECT_EQ(got.nonZeros(), k);
    EXPECT_EQ(Matrix(got), expected) << "k " << k;
  }
}

TEST(LowRankLinear, ForwardEqualsTheReconstructedDenseProduct) {
  const Matrix w = slim::random::gaussian(30, 20, 11);
  const Matrix x = slim::random::gaussian(7, 20, 12);
  const lowrank::Linear layer(lowrank::truncated_svd(w, 5).factors);
  const Matrix expected = x * layer.factors().reconstruct().transpose();
  EXPECT_LT(slim::metrics::relative_frobenius(expected, layer(x)), 1e-5);
  EXPECT_EQ(layer.bytes(), 4u * 5u * 50u);
  const auto split = lowrank::dense_sparse(w, 5, 30);
  const Matrix expected_split = x * split.reconstruct().transpose();
  const lowrank::Linear with_residual(split);
  EXPECT_LT(slim::metrics::relative_frobenius(expected_split, with_residual(x)), 1e-5);
  EXPECT_THROW(layer(Matrix::Zero(3, 21)), slim::ShapeError);
}

TEST(LowRank, BadInputThrowsTypedErrors) {
  Matrix w = slim::random::gaussian(10, 8, 13);
  EXPECT_THROW(lowrank::truncated_svd(w, 0), slim::ArgumentError);
  EXPECT_THROW(lowrank::truncated_svd(w, 9), slim::ArgumentError);
  EXPECT_THROW(lowrank::randomized_svd(w, 0), slim::ArgumentError);
  EXPECT_THROW(lowrank::rank_for_budget(10, 8, 0.0), slim::ArgumentError);
  EXPECT_THROW(lowrank::rank_for_budget(10, 8, 1.5), slim::ArgumentError);
  EXPECT_THROW(lowrank::rank_for_budget(10, 8, 0.01), slim::ArgumentError);  // below rank 1
  EXPECT_THROW(lowrank::allocate_ranks({{10, 8, slim::Vector::Ones(8)}}, -0.1),
               slim::ArgumentError);
  slim::calib::Hessian h(7);
  h.add(slim::random::gaussian(20, 7, 14));
  EXPECT_THROW(lowrank::svd_llm(w, h, 2), slim::ShapeError);
  w(3, 3) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(lowrank::truncated_svd(w, 2), slim::NumericalError);
  EXPECT_THROW(lowrank::truncated_svd(Matrix(0, 4), 1), slim::ShapeError);
}

}  // namespace

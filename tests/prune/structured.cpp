#include <slim/prune.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace {

using slim::Index;
using slim::Matrix;
using slim::MatrixD;
using slim::Vector;
using slim::prune::Aggregation;
using slim::prune::PatternKind;

// max |a - b| relative to max |b|.
double relative_max_error(const Matrix& a, const Matrix& b) {
  return (a - b).cwiseAbs().maxCoeff() / b.cwiseAbs().maxCoeff();
}

TEST(Structured, NeuronImportanceIsTheAggregateOfEachOutputOverTokens) {
  const Matrix x = slim::random::correlated_activations(64, 24, 50);
  const Matrix w = slim::random::gaussian(10, 24, 51);
  const Vector l2 = slim::prune::neuron_importance(w, x);
  const Vector mean_abs = slim::prune::neuron_importance(w, x, Aggregation::mean_abs);
  for (Index i = 0; i < 10; ++i) {
    double sum_squares = 0.0;
    double sum_abs = 0.0;
    for (Index t = 0; t < 64; ++t) {
      double y = 0.0;
      for (Index j = 0; j < 24; ++j) y += double(x(t, j)) * double(w(i, j));
      sum_squares += y * y;
      sum_abs += std::abs(y);
    }
    EXPECT_NEAR(l2(i), std::sqrt(sum_squares), 1e-4 * std::sqrt(sum_squares));
    EXPECT_NEAR(mean_abs(i), sum_abs / 64.0, 1e-4 * sum_abs / 64.0);
  }
}

TEST(Structured, PrunedRowsReproduceTheKeptNeuronsAndTheNextLayerExactly) {
  const Matrix x = slim::random::correlated_activations(128, 32, 52);
  const Matrix w = slim::random::gaussian(20, 32, 53);
  const Matrix next = slim::random::gaussian(6, 20, 54);  // consumes this layer's 20 outputs
  const auto result =
      slim::prune::prune_structured(w, x, {.target = PatternKind::rows, .sparsity = 0.25});
  ASSERT_EQ(result.kept.size(), 15u);
  EXPECT_TRUE(std::is_sorted(result.kept.begin(), result.kept.end()));
  EXPECT_EQ(result.weight.rows(), 15);
  EXPECT_EQ(result.weight.cols(), 32);
  // The smaller layer's outputs are the full layer's outputs on the kept neurons.
  const Matrix full = x * w.transpose();
  const Matrix small = x * result.weight.transpose();
  for (std::size_t i = 0; i < result.kept.size(); ++i) {
    EXPECT_EQ(result.weight.row(Index(i)), w.row(result.kept[i]));
  }
  EXPECT_LT(relative_max_error(small, slim::prune::select_columns(full, result.kept)), 1e-6);
  // Slicing the next layer's columns equals zeroing the pruned neurons in the full network.
  Matrix zeroed = w;
  std::vector<bool> kept(20, false);
  for (Index k : result.kept) kept[std::size_t(k)] = true;
  for (Index r = 0; r < 20; ++r) {
    if (!kept[std::size_t(r)]) zeroed.row(r).setZero();
  }
  const Matrix expected = (x * zeroed.transpose()) * next.transpose();
  const Matrix sliced = small * slim::prune::select_columns(next, result.kept).transpose();
  EXPECT_LT(relative_max_error(sliced, expected), 1e-5);
  // The removed neurons are the least important.
  for (Index a = 0; a < 20; ++a) {
    for (Index b = 0; b < 20; ++b) {
      if (!kept[std::size_t(a)] && kept[std::size_t(b)]) {
        EXPECT_LE(result.importance(a), result.importance(b));
      }
    }
  }
}

TEST(Structured, PrunedColumnsReproduceTheLayerWithThoseChannelsZeroed) {
  const Matrix x = slim::random::correlated_activations(128, 40, 55);
  const Matrix w = slim::random::gaussian(12, 40, 56);
  const auto result = slim::prune::prune_structured(
      w, x,
      {.target = PatternKind::columns, .sparsity = 0.5, .aggregation = Aggregation::mean_abs});
  ASSERT_EQ(result.weight.cols(), 20);
  const Vector expected_importance = x.cwiseAbs().colwise().mean().transpose();
  EXPECT_LT((result.importance - expected_importance).cwiseAbs().maxCoeff(),
            1e-5 * expected_importance.maxCoeff());
  Matrix zeroed = Matrix::Zero(12, 40);
  for (Index c : result.kept) zeroed.col(c) = w.col(c);
  const Matrix small = slim::prune::select_columns(x, result.kept) * result.weight.transpose();
  EXPECT_LT(relative_max_error(small, x * zeroed.transpose()), 1e-5);
}

TEST(Structured, HeadsAreRemovedWholeByTheNormOfTheirOutputs) {
  const Matrix x = slim::random::correlated_activations(96, 16, 57);
  Matrix w = slim::random::gaussian(24, 16, 58);
  w.middleRows(6, 6) *= 0.01f;   // head 1 is nearly silent
  w.middleRows(18, 6) *= 0.02f;  // head 3 too
  const auto result = slim::prune::prune_structured(
      w, x, {.target = PatternKind::heads, .sparsity = 0.5, .head_size = 6});
  EXPECT_EQ(result.kept_heads, (std::vector<Index>{0, 2}));
  std::vector<Index> rows;
  for (Index r = 0; r < 6; ++r) rows.push_back(r);
  for (Index r = 12; r < 18; ++r) rows.push_back(r);
  EXPECT_EQ(result.kept, rows);
  EXPECT_EQ(result.weight, slim::prune::select_rows(w, rows));
  const Matrix y = x * w.transpose();
  for (Index h = 0; h < 4; ++h) {
    const double norm = y.middleCols(6 * h, 6).cast<double>().norm();
    EXPECT_NEAR(result.importance(h), norm, 1e-4 * norm);
  }
}

TEST(StructuredBadInput, RejectsHeadSizesWidthsTargetsAndIndices) {
  const Matrix x = slim::random::gaussian(8, 16, 59);
  const Matrix w = slim::random::gaussian(12, 16, 60);
  using slim::prune::prune_structured;
  EXPECT_THROW(prune_structured(w, x, {.target = PatternKind::heads, .head_size = 5}),
               slim::ArgumentError);
  EXPECT_THROW(prune_structured(w, x, {.target = PatternKind::heads, .head_size = 0}),
               slim::ArgumentError);
  EXPECT_THROW(prune_structured(w, x, {.target = PatternKind::unstructured}), slim::ArgumentError);
  EXPECT_THROW(prune_structured(w, x, {.sparsity = 1.0}), slim::ArgumentError);
  EXPECT_THROW(prune_structured(w, Matrix::Ones(8, 15)), slim::ShapeError);
  EXPECT_THROW(slim::prune::head_importance(w, x, 7), slim::ArgumentError);
  EXPECT_THROW(slim::prune::select_rows(w, {0, 12}), slim::ArgumentError);
  EXPECT_THROW(slim::prune::select_columns(w, {-1}), slim::ArgumentError);
  Matrix bad = x;
  bad(0, 0) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(prune_structured(w, bad), slim::NumericalError);
}

}  // namespace

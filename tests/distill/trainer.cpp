// Layer-wise distillation: on inputs with correlated channels and outliers, training the compressed
// layer on its output MSE must beat the compression's starting point and approach the closed-form
// optimum of the same objective (computed here independently in double).
#include <slim/core/metrics.hpp>
#include <slim/core/random.hpp>
#include <slim/distill/trainer.hpp>
#include <slim/quant/rtn.hpp>

#include <gtest/gtest.h>
#include <Eigen/Cholesky>
#include <Eigen/SVD>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

namespace {

using slim::Index;
using slim::Matrix;
using slim::MatrixD;
namespace distill = slim::distill;

struct Layer {
  Matrix x;  // tokens x in, low-rank-plus-outliers activations
  Matrix w;  // out x in teacher weight
  Matrix y;  // teacher outputs X W^T
};

Layer make_layer(Index tokens, Index in, Index out, std::uint64_t seed) {
  Layer layer;
  layer.x = slim::random::correlated_activations(tokens, in, seed);
  layer.w = slim::random::gaussian(out, in, seed + 1, 1.0 / std::sqrt(static_cast<double>(in)));
  layer.y = layer.x * layer.w.transpose();
  return layer;
}

// ||X W^T - X W~^T||_F / ||X W^T||_F in double.
double output_error(const Layer& layer, const Matrix& approx) {
  return slim::metrics::output_error(layer.x, layer.w, approx);
}

// Plain truncated SVD of W, singular values split evenly: U = U_r sqrt(S_r), V = sqrt(S_r) V_r^T.
void svd_factors(const Matrix& w, Index rank, Matrix& u, Matrix& v) {
  Eigen::BDCSVD<MatrixD> svd(w.cast<double>(), Eigen::ComputeThinU | Eigen::ComputeThinV);
  const Eigen::VectorXd root = svd.singularValues().head(rank).cwiseSqrt();
  u = (svd.matrixU().leftCols(rank) * root.asDiagonal()).cast<float>();
  v = (root.asDiagonal() * svd.matrixV().leftCols(rank).transpose()).cast<float>();
}

// The activation-aware optimum of min_{rank W~ <= r} ||X (W - W~)^T||_F (SVD-LLM, Wang et al.
// 2024): with X^T X = S S^T (Cholesky), ||X A^T||_F = ||A S||_F, so W~ = trunc_r(W S) S^{-1}.
Matrix closed_form_low_rank(const Layer& layer, Index rank) {
  const MatrixD xd = layer.x.cast<double>();
  MatrixD gram = xd.transpose() * xd;
  const Eigen::LLT<MatrixD> llt(gram);
  EXPECT_EQ(llt.info(), Eigen::Success);
  const MatrixD s = llt.matrixL();
  const MatrixD ws = layer.w.cast<double>() * s;
  Eigen::BDCSVD<MatrixD> svd(ws, Eigen::ComputeThinU | Eigen::ComputeThinV);
  const MatrixD truncated = svd.matrixU().leftCols(rank) *
                            svd.singularValues().head(rank).asDiagonal() *
                            svd.matrixV().leftCols(rank).transpose();
  // W~ = truncated * S^{-1}: solve W~ S = truncated, i.e. S^T W~^T = truncated^T.
  const MatrixD wt = s.transpose().triangularView<Eigen::Upper>().solve(truncated.transpose());
  return wt.transpose().cast<float>();
}

// These checks are small; Eigen's OpenMP threads only add contention on a shared machine.
const int kTrainerSingleThreaded = (Eigen::setNbThreads(1), 0);

TEST(LayerwiseTrainer, LowRankDistillationBeatsSvdInitAndApproachesTheWhitenedOptimum) {
  const Layer layer = make_layer(512, 64, 48, 7);
  const Index rank = 8;
  Matrix u, v;
  svd_factors(layer.w, rank, u, v);
  const double svd_error = output_error(layer, u * v);
  const double optimum_error = output_error(layer, closed_form_low_rank(layer, rank));
  // The premise of the check: on these activations plain SVD is far from output-optimal.
  ASSERT_LT(optimum_error, 0.8 * svd_error);

  const distill::LayerwiseTrainer trainer(layer.x, layer.y, {.steps = 1500});
  const auto result = trainer.fit_low_rank(u, v);
  const double trained_error = output_error(layer, u * v);
  std::printf(
      "low-rank r=%ld: SVD init %.4f, distilled %.4f, closed-form optimum %.4f "
      "(distilled / optimum = %.4f)\n",
      static_cast<long>(rank), svd_error, trained_error, optimum_error,
      trained_error / optimum_error);
  EXPECT_TRUE(result.improved);
  EXPECT_LT(result.final_mse, result.initial_mse);
  EXPECT_NEAR(result.final_mse, trainer.output_mse(u * v), 1e-6 * result.final_mse);
  EXPECT_NEAR(result.initial_mse, result.history.front(), 1e-6 * result.initial_mse);
  EXPECT_LE(trained_error, 0.8 * svd_error);             // at least 20% below the SVD init
  EXPECT_GE(trained_error, optimum_error * (1 - 1e-4));  // nothing beats the optimum
  EXPECT_LE(trained_error, 1.02 * optimum_error);        // and training reaches it
}

TEST(LayerwiseTrainer, SgdWithMomentumAlsoRecoversLowRankError) {
  const Layer layer = make_layer(512, 64, 48, 11);
  Matrix u, v;
  svd_factors(layer.w, 8, u, v);
  const double svd_error = output_error(layer, u * v);
  const distill::LayerwiseTrainer trainer(
      layer.x, layer.y, {.steps = 1000, .lr = 1e-3, .optimizer = distill::OptimizerKind::sgd});
  EXPECT_TRUE(trainer.fit_low_rank(u, v).improved);
  EXPECT_LE(output_error(layer, u * v), 0.8 * svd_error);
}

// Per-row least squares over the kept columns: the exact optimum of the masked objective.
Matrix closed_form_masked(const Layer& layer, const Matrix& keep) {
  const MatrixD x = layer.x.cast<double>();
  const MatrixD y = layer.y.cast<double>();
  Matrix w = Matrix::Zero(layer.w.rows(), layer.w.cols());
  for (Index r = 0; r < w.rows(); ++r) {
    std::vector<Index> cols;
    for (Index c = 0; c < w.cols(); ++c) {
      if (keep(r, c) != 0.0f) cols.push_back(c);
    }
    MatrixD xs(x.rows(), static_cast<Index>(cols.size()));
    for (std::size_t k = 0; k < cols.size(); ++k) xs.col(static_cast<Index>(k)) = x.col(cols[k]);
    const Eigen::VectorXd sol = (xs.transpose() * xs).ldlt().solve(xs.transpose() * y.col(r));
    for (std::size_t k = 0; k < cols.size(); ++k) {
      w(r, cols[k]) = static_cast<float>(sol[static_cast<Index>(k)]);
    }
  }
  return w;
}

TEST(LayerwiseTrainer, MaskedDistillationKeepsTheMaskAndApproachesPerRowLeastSquares) {
  const Layer layer = make_layer(512, 64, 48, 21);
  // Magnitude pruning at 50% per row: keep the 32 largest |w| of each row.
  Matrix keep = Matrix::Zero(layer.w.rows(), layer.w.cols());
  for (Index r = 0; r < keep.rows(); ++r) {
    std::vector<Index> order(static_cast<std::size_t>(keep.cols()));
    for (Index c = 0; c < keep.cols(); ++c) order[static_cast<std::size_t>(c)] = c;
    std::sort(order.begin(), order.end(),
              [&](Index a, Index b) { return std::abs(layer.w(r, a)) > std::abs(layer.w(r, b)); });
    for (Index k = 0; k < keep.cols() / 2; ++k) keep(r, order[static_cast<std::size_t>(k)]) = 1.0f;
  }
  Matrix w = layer.w;  // the trainer zeroes the pruned weights itself
  const double start_error = output_error(layer, layer.w.cwiseProduct(keep));
  const double optimum_error = output_error(layer, closed_form_masked(layer, keep));
  const distill::LayerwiseTrainer trainer(layer.x, layer.y, {.steps = 1500});
  const auto result = trainer.fit_masked(w, keep);
  const double trained_error = output_error(layer, w);
  std::printf("masked 50%%: magnitude start %.4f, distilled %.4f, least-squares optimum %.4f\n",
              start_error, trained_error, optimum_error);
  EXPECT_TRUE(result.improved);
  EXPECT_EQ(w.cwiseProduct((1.0f - keep.array()).matrix()).cwiseAbs().maxCoeff(), 0.0f);
  EXPECT_LE(trained_error, 0.8 * start_error);
  EXPECT_GE(trained_error, optimum_error * (1 - 1e-4));
  EXPECT_LE(trained_error, 1.05 * optimum_error);
}

// With codes and zero-points fixed, X W~^T is linear in the scales: per output row r, column g of
// A_r is X_g (q_rg - z_rg) over the inputs of group g, and the best scales solve A_r s = y_r.
Matrix closed_form_scales(const Layer& layer, const slim::quant::QuantizedMatrix& q) {
  const MatrixD x = layer.x.cast<double>();
  const Index groups = q.groups_per_row(), size = q.group_size();
  Matrix w(q.rows(), q.cols());
  for (Index r = 0; r < q.rows(); ++r) {
    MatrixD a(x.rows(), groups);
    Eigen::VectorXd centred(q.cols());
    for (Index c = 0; c < q.cols(); ++c) {
      centred[c] = static_cast<double>(q.code(r, c)) - q.params(r, c / size).zero;
    }
    for (Index g = 0; g < groups; ++g) {
      a.col(g) = x.middleCols(g * size, size) * centred.segment(g * size, size);
    }
    const Eigen::VectorXd s =
        (a.transpose() * a).ldlt().solve(a.transpose() * layer.y.col(r).cast<double>());
    for (Index c = 0; c < q.cols(); ++c) {
      w(r, c) = static_cast<float>(s[c / size] * centred[c]);
    }
  }
  return w;
}

TEST(LayerwiseTrainer, QuantizedScaleDistillationKeepsCodesAndApproachesTheLeastSquaresScales) {
  const Layer layer = make_layer(512, 64, 48, 31);
  slim::quant::QuantizedMatrix q =
      slim::quant::quantize(layer.w, slim::quant::int4_group(16, /*symmetric=*/false));
  const slim::quant::QuantizedMatrix rtn = q;
  const double start_error = output_error(layer, rtn.dequantize());
  const double optimum_error = output_error(layer, closed_form_scales(layer, rtn));
  const distill::LayerwiseTrainer trainer(layer.x, layer.y, {.steps = 1500});
  const auto result = trainer.fit_quantized_scales(q);
  const double trained_error = output_error(layer, q.dequantize());
  std::printf("int4 g16 scales: RTN %.4f, distilled %.4f, least-squares optimum %.4f\n",
              start_error, trained_error, optimum_error);
  EXPECT_TRUE(result.improved);
  EXPECT_EQ(q.codes(), rtn.codes());
  EXPECT_EQ(q.zeros_packed(), rtn.zeros_packed());
  EXPECT_NEAR(result.final_mse, trainer.output_mse(q.dequantize()), 1e-6 * result.final_mse);
  EXPECT_LT(trained_error, start_error);
  EXPECT_GE(trained_error, optimum_error * (1 - 1e-3));  // fp16 scales cannot beat exact ones
  EXPECT_LE(trained_error, 1.05 * optimum_error);
}

TEST(LayerwiseTrainer, MiniBatchesAreSeededAndDeterministic) {
  const Layer layer = make_layer(256, 32, 16, 41);
  Matrix u1, v1;
  svd_factors(layer.w, 4, u1, v1);
  Matrix u2 = u1, v2 = v1, u3 = u1, v3 = v1;
  const double svd_error = output_error(layer, u1 * v1);
  const distill::LayerwiseOptions options{.steps = 400, .batch_size = 64, .seed = 5};
  const distill::LayerwiseTrainer trainer(layer.x, layer.y, options);
  trainer.fit_low_rank(u1, v1);
  trainer.fit_low_rank(u2, v2);
  EXPECT_EQ(u1, u2);
  EXPECT_EQ(v1, v2);
  auto other_seed = options;
  other_seed.seed = 6;
  distill::LayerwiseTrainer(layer.x, layer.y, other_seed).fit_low_rank(u3, v3);
  EXPECT_NE(u1, u3);
  EXPECT_LT(output_error(layer, u1 * v1), svd_error);
}

TEST(LayerwiseTrainer, NeverReturnsSomethingWorseThanTheStart) {
  const Layer layer = make_layer(256, 32, 16, 51);
  Matrix u, v;
  svd_factors(layer.w, 4, u, v);
  const Matrix u0 = u, v0 = v;
  // A learning rate that makes SGD diverge at once.
  const distill::LayerwiseTrainer trainer(
      layer.x, layer.y, {.steps = 50, .lr = 10.0, .optimizer = distill::OptimizerKind::sgd});
  const auto result = trainer.fit_low_rank(u, v);
  EXPECT_FALSE(result.improved);
  EXPECT_EQ(u, u0);
  EXPECT_EQ(v, v0);
  EXPECT_EQ(result.final_mse, result.initial_mse);
}

TEST(LayerwiseTrainerBadInput, ShapesThatDoNotFitAreShapeErrors) {
  const Layer layer = make_layer(64, 16, 8, 61);
  EXPECT_THROW(distill::LayerwiseTrainer(layer.x, layer.y.topRows(10)), slim::ShapeError);
  EXPECT_THROW(distill::LayerwiseTrainer(Matrix(0, 16), Matrix(0, 8)), slim::ShapeError);
  const distill::LayerwiseTrainer trainer(layer.x, layer.y, {.steps = 2});
  Matrix u = Matrix::Zero(8, 3), v = Matrix::Zero(3, 16);
  Matrix bad_u = Matrix::Zero(7, 3), bad_v = Matrix::Zero(2, 16);
  EXPECT_THROW(trainer.fit_low_rank(bad_u, v), slim::ShapeError);
  EXPECT_THROW(trainer.fit_low_rank(u, bad_v), slim::ShapeError);
  Matrix w = layer.w;
  EXPECT_THROW(trainer.fit_masked(w, Matrix::Ones(8, 15)), slim::ShapeError);
  Matrix wrong_w = Matrix::Zero(8, 15);
  EXPECT_THROW(trainer.fit_masked(wrong_w, Matrix::Ones(8, 15)), slim::ShapeError);
  auto q = slim::quant::quantize(Matrix(layer.w.topRows(4)), slim::quant::int4_group(8));
  EXPECT_THROW(trainer.fit_quantized_scales(q), slim::ShapeError);
  EXPECT_THROW(trainer.output_mse(wrong_w), slim::ShapeError);
}

TEST(LayerwiseTrainerBadInput, InvalidOptionsAreArgumentErrorsAndNonFiniteDataNumericalErrors) {
  const Layer layer = make_layer(64, 16, 8, 71);
  EXPECT_THROW(distill::LayerwiseTrainer(layer.x, layer.y, {.steps = -1}), slim::ArgumentError);
  EXPECT_THROW(distill::LayerwiseTrainer(layer.x, layer.y, {.lr = 0.0}), slim::ArgumentError);
  EXPECT_THROW(distill::LayerwiseTrainer(layer.x, layer.y, {.steps = 10, .warmup_steps = 11}),
               slim::ArgumentError);
  EXPECT_THROW(distill::LayerwiseTrainer(layer.x, layer.y, {.batch_size = -2}),
               slim::ArgumentError);
  EXPECT_THROW(distill::LayerwiseTrainer(layer.x, layer.y, {.max_gradient_norm = -1.0}),
               slim::ArgumentError);
  Matrix x = layer.x;
  x(3, 4) = std::numeric_limits<float>::infinity();
  EXPECT_THROW(distill::LayerwiseTrainer(x, layer.y), slim::NumericalError);
  const distill::LayerwiseTrainer trainer(layer.x, layer.y, {.steps = 2});
  Matrix u = Matrix::Zero(8, 3), v = Matrix::Zero(3, 16);
  u(0, 0) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(trainer.fit_low_rank(u, v), slim::NumericalError);
}

}  // namespace

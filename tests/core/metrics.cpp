#include <slim/core.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace {

using slim::Matrix;

TEST(Metrics, RelativeFrobeniusMatchesHandComputedValue) {
  Matrix a(2, 2);
  a << 3, 0, 0, 4;  // ||a|| = 5
  Matrix b = a;
  b(0, 0) = 0;  // ||a - b|| = 3
  EXPECT_DOUBLE_EQ(slim::metrics::relative_frobenius(a, b), 0.6);
  EXPECT_DOUBLE_EQ(slim::metrics::max_abs_error(a, b), 3.0);
  EXPECT_NEAR(slim::metrics::sqnr_db(a, b), 10.0 * std::log10(25.0 / 9.0), 1e-12);
}

TEST(Metrics, CosineSimilarityIsOneForParallelAndZeroForOrthogonal) {
  Matrix a(1, 3);
  a << 1, 2, 3;
  EXPECT_NEAR(slim::metrics::cosine_similarity(a, Matrix(2.5f * a)), 1.0, 1e-12);
  Matrix b(1, 3);
  b << 3, 0, -1;
  EXPECT_NEAR(slim::metrics::cosine_similarity(a, b), 0.0, 1e-12);
}

TEST(Metrics, ExactApproximationHasInfiniteSqnrAndZeroError) {
  const Matrix a = slim::random::gaussian(5, 7, 1);
  EXPECT_EQ(slim::metrics::relative_frobenius(a, a), 0.0);
  EXPECT_TRUE(std::isinf(slim::metrics::sqnr_db(a, a)));
}

TEST(Metrics, OutputErrorEqualsDirectComputation) {
  const Matrix x = slim::random::gaussian(9, 6, 2);
  const Matrix w = slim::random::gaussian(4, 6, 3);
  const Matrix wq = w + slim::random::gaussian(4, 6, 4, 0.01);
  const slim::MatrixD y = (x * w.transpose()).cast<double>();
  const slim::MatrixD yq = (x.cast<double>() * wq.cast<double>().transpose());
  const double expected = (y - yq).norm() / y.norm();
  EXPECT_NEAR(slim::metrics::output_error(x, w, wq), expected, 1e-5 * expected);
}

TEST(Metrics, ShapeMismatchThrowsShapeError) {
  const Matrix a = Matrix::Zero(2, 3);
  const Matrix b = Matrix::Zero(3, 2);
  EXPECT_THROW(slim::metrics::relative_frobenius(a, b), slim::ShapeError);
  EXPECT_THROW(slim::metrics::output_error(Matrix::Zero(4, 5), a, a), slim::ShapeError);
}

}  // namespace

namespace {

TEST(Checks, RequireFiniteFindsNanAndInfInPlainMatricesBlocksAndExpressions) {
  slim::Matrix m = slim::random::gaussian(7, 33, 5);
  EXPECT_NO_THROW(slim::require_finite(m, "m"));
  EXPECT_NO_THROW(slim::require_finite(m.block(1, 2, 3, 4), "block"));
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    slim::Matrix c = m;
    c(5, 31) = bad;
    EXPECT_THROW(slim::require_finite(c, "c"), slim::NumericalError);
    EXPECT_THROW(slim::require_finite(c.block(4, 30, 2, 2), "block"), slim::NumericalError);
    EXPECT_NO_THROW(slim::require_finite(c.block(0, 0, 5, 31), "block"));
    EXPECT_THROW(slim::require_finite(c.transpose(), "transpose"), slim::NumericalError);
    EXPECT_THROW(slim::require_finite(c.cast<double>(), "cast"), slim::NumericalError);
    EXPECT_THROW(slim::require_finite(2.0f * c, "expression"), slim::NumericalError);
  }
  EXPECT_NO_THROW(
      slim::require_finite(slim::Vector::Constant(3, std::numeric_limits<float>::max()), "max"));
}

}  // namespace

#include <slim/calib.hpp>

#include <gtest/gtest.h>

namespace {

using slim::Matrix;
using slim::MatrixD;

TEST(Hessian, StreamingBatchesEqualOneShotProduct) {
  const Matrix x = slim::random::correlated_activations(301, 24, 5);
  slim::calib::Hessian h(24);
  h.add(x.topRows(1));
  h.add(x.middleRows(1, 100));
  h.add(x.middleRows(101, 0));
  h.add(x.bottomRows(200));
  const MatrixD expected = (2.0 / 301.0) * x.cast<double>().transpose() * x.cast<double>();
  EXPECT_EQ(h.samples(), 301);
  EXPECT_LT((h.matrix().cast<double>() - expected).norm(), 1e-5 * expected.norm());
}

TEST(Hessian, DoublePrecisionAccumulationMatchesToDoubleTolerance) {
  const Matrix x = slim::random::gaussian(500, 16, 6);
  slim::calib::Hessian h(16, {.double_precision = true});
  for (int b = 0; b < 5; ++b) h.add(x.middleRows(100 * b, 100));
  const MatrixD expected = (2.0 / 500.0) * x.cast<double>().transpose() * x.cast<double>();
  EXPECT_LT((h.matrix_double() - expected).norm(), 1e-12 * expected.norm());
  EXPECT_TRUE(h.matrix().isApprox(h.matrix().transpose()));
}

TEST(Hessian, RejectsWrongWidthNonFiniteRowsAndEmptyResult) {
  slim::calib::Hessian h(8);
  EXPECT_THROW(h.matrix(), slim::ArgumentError);
  EXPECT_THROW(h.add(Matrix::Zero(3, 7)), slim::ShapeError);
  Matrix bad = Matrix::Zero(3, 8);
  bad(1, 2) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(h.add(bad), slim::NumericalError);
  EXPECT_EQ(h.samples(), 0);
  EXPECT_THROW(slim::calib::Hessian(0), slim::ArgumentError);
}

TEST(ActivationStats, MatchesDirectColumnStatistics) {
  const Matrix x = slim::random::correlated_activations(77, 10, 9);
  slim::calib::ActivationStats s(10);
  s.add(x.topRows(30));
  s.add(x.bottomRows(47));
  for (slim::Index j = 0; j < 10; ++j) {
    const Eigen::VectorXd col = x.col(j).cast<double>();
    EXPECT_NEAR(s.l2_norm()(j), col.norm(), 1e-5 * col.norm());
    EXPECT_NEAR(s.mean_abs()(j), col.cwiseAbs().mean(), 1e-5 * col.cwiseAbs().mean());
    EXPECT_FLOAT_EQ(s.max_abs()(j), static_cast<float>(col.cwiseAbs().maxCoeff()));
  }
}

TEST(ActivationStats, RejectsWrongWidthAndNonFiniteRows) {
  slim::calib::ActivationStats s(4);
  EXPECT_THROW(s.l2_norm(), slim::ArgumentError);
  EXPECT_THROW(s.add(Matrix::Zero(2, 5)), slim::ShapeError);
  Matrix bad = Matrix::Ones(2, 4);
  bad(0, 3) = std::numeric_limits<float>::infinity();
  EXPECT_THROW(s.add(bad), slim::NumericalError);
}

}  // namespace

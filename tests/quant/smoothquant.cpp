#include <slim/calib/activation_stats.hpp>
#include <slim/core/metrics.hpp>
#include <slim/core/random.hpp>
#include <slim/quant/smoothquant.hpp>

#include "support/reference_model.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace {

using slim::Index;
using slim::Matrix;
using slim::MatrixD;
using slim::Vector;

slim::calib::ActivationStats stats_of(const Matrix& x) {
  slim::calib::ActivationStats stats(x.cols());
  stats.add(x);
  return stats;
}

// Symmetric int8 fake quantization with one scale per tensor (activations) or per row (weights).
Matrix int8_per_tensor(const Matrix& m) {
  const float scale = m.cwiseAbs().maxCoeff() / 127.0f;
  return (m / scale).array().round().max(-127.0f).min(127.0f) * scale;
}
Matrix int8_per_row(const Matrix& m) {
  Matrix out(m.rows(), m.cols());
  for (Index r = 0; r < m.rows(); ++r) {
    const float scale = m.row(r).cwiseAbs().maxCoeff() / 127.0f;
    out.row(r) = (m.row(r) / scale).array().round().max(-127.0f).min(127.0f) * scale;
  }
  return out;
}
// Relative error of the simulated W8A8 product against the fp32 layer X W^T.
double w8a8_error(const Matrix& x, const Matrix& w, const Matrix& x_used, const Matrix& w_used) {
  const MatrixD exact = x.cast<double>() * w.cast<double>().transpose();
  const MatrixD approx =
      int8_per_tensor(x_used).cast<double>() * int8_per_row(w_used).cast<double>().transpose();
  return (exact - approx).norm() / exact.norm();
}

TEST(SmoothQuant, ScalesFollowTheClosedFormAndKeepTheProduct) {
  const Matrix x = slim::random::correlated_activations(200, 48, 1);
  const Matrix w = slim::random::student_t(24, 48, 4, 2);
  for (double alpha : {0.0, 0.5, 0.8, 1.0}) {
    const auto result = slim::quant::smoothquant(w, stats_of(x), {.alpha = alpha});
    for (Index j = 0; j < 48; ++j) {
      const double act = x.col(j).cwiseAbs().maxCoeff();
      const double wmax = w.col(j).cwiseAbs().maxCoeff();
      const double expected = std::pow(act, alpha) / std::pow(wmax, 1.0 - alpha);
      EXPECT_NEAR(result.scales(j), expected, 1e-5 * expected) << "alpha " << alpha;
      EXPECT_EQ(result.weights.col(j), w.col(j) * result.scales(j));
    }
    Matrix x_smoothed = x;
    x_smoothed.array().rowwise() /= result.scales.transpose().array();
    EXPECT_LT(slim::metrics::relative_frobenius(x * w.transpose(),
                                                x_smoothed * result.weights.transpose()),
              1e-5);
  }
}

TEST(SmoothQuant, HalfStrengthEqualizesActivationAndWeightRanges) {
  // With alpha = 0.5 both sides of every channel end up with range sqrt(max|X_j| max|W_j|).
  const Matrix x = slim::random::correlated_activations(300, 32, 3);
  const Matrix w = slim::random::student_t(16, 32, 4, 4);
  const auto result = slim::quant::smoothquant(w, stats_of(x));
  for (Index j = 0; j < 32; ++j) {
    const double activation_range = x.col(j).cwiseAbs().maxCoeff() / result.scales(j);
    const double weight_range = result.weights.col(j).cwiseAbs().maxCoeff();
    EXPECT_NEAR(activation_range, weight_range, 1e-5 * weight_range);
  }
}

TEST(SmoothQuant, LowersW8A8OutputErrorVersusPlainPerTensorInt8Activations) {
  for (std::uint64_t seed = 1; seed <= 3; ++seed) {
    const Matrix x = slim::random::correlated_activations(1024, 256, seed);
    const Matrix calibration = x.topRows(512);
    const Matrix held_out = x.bottomRows(512);
    const Matrix w = slim::random::student_t(128, 256, 5, seed + 10);
    const auto result = slim::quant::smoothquant(w, stats_of(calibration));
    Matrix smoothed = held_out;
    smoothed.array().rowwise() /= result.scales.transpose().array();
    const double plain = w8a8_error(held_out, w, held_out, w);
    const double smooth = w8a8_error(held_out, w, smoothed, result.weights);
    EXPECT_LT(smooth, 0.5 * plain)
        << "seed " << seed << ": smoothed " << smooth << " plain " << plain;
  }
}

TEST(SmoothQuantOnReferenceModel, LowersW8A8OutputErrorOnRealLayers) {
  for (const char* name : {"layers.0.attention.wq", "layers.1.feed_forward.w2"}) {
    const Matrix& w = slim::test::reference_model().linear_weight(name);
    const Matrix x = slim::test::reference_activations(name, 1024);
    const Index half = x.rows() / 2;
    const Matrix held_out = x.bottomRows(x.rows() - half);
    const auto result = slim::quant::smoothquant(w, stats_of(x.topRows(half)));
    Matrix smoothed = held_out;
    smoothed.array().rowwise() /= result.scales.transpose().array();
    const double plain = w8a8_error(held_out, w, held_out, w);
    const double smooth = w8a8_error(held_out, w, smoothed, result.weights);
    EXPECT_LT(smooth, plain) << name << ": smoothed " << smooth << " plain " << plain;
  }
}

TEST(SmoothQuant, ClampsDeadChannelsInsteadOfDividingByZero) {
  Matrix w = slim::random::student_t(8, 6, 4, 5);
  w.col(2).setZero();
  Vector act_max = Vector::Constant(6, 3.0f);
  act_max(4) = 0.0f;
  const auto result = slim::quant::smoothquant(w, act_max);
  EXPECT_TRUE(result.scales.allFinite());
  EXPECT_GT(result.scales.minCoeff(), 0.0f);
  EXPECT_FLOAT_EQ(result.scales(4), 1e-5f);
  EXPECT_TRUE(result.weights.allFinite());
}

TEST(SmoothQuant, RejectsBadInputWithTypedErrors) {
  const Matrix w = slim::random::student_t(8, 6, 4, 6);
  const Vector act_max = Vector::Constant(6, 2.0f);
  using slim::quant::smoothquant;
  EXPECT_THROW(smoothquant(w, Vector(Vector::Ones(5))), slim::ShapeError);
  EXPECT_THROW(smoothquant(Matrix(0, 6), act_max), slim::ShapeError);
  EXPECT_THROW(smoothquant(w, act_max, {.alpha = 1.5}), slim::ArgumentError);
  EXPECT_THROW(smoothquant(w, act_max, {.alpha = -0.1}), slim::ArgumentError);
  EXPECT_THROW(smoothquant(w, act_max, {.alpha = std::nan("")}), slim::ArgumentError);
  Vector negative = act_max;
  negative(1) = -1.0f;
  EXPECT_THROW(smoothquant(w, negative), slim::ArgumentError);
  Vector nan = act_max;
  nan(0) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(smoothquant(w, nan), slim::NumericalError);
  EXPECT_THROW(smoothquant(w, slim::calib::ActivationStats(6)), slim::ArgumentError);
}

}  // namespace

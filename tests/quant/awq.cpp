#include <slim/core/metrics.hpp>
#include <slim/core/random.hpp>
#include <slim/quant/awq.hpp>
#include <slim/quant/rtn.hpp>

#include "support/reference_model.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace {

using slim::Index;
using slim::Matrix;
using slim::Vector;
using slim::quant::AwqOptions;
using slim::quant::Scheme;

TEST(Awq, NeverAboveRtnOnIsotropicActivations) {
  // Without channel structure RTN is hard to beat; the alpha = 0 grid point is RTN itself.
  for (std::uint64_t seed = 1; seed <= 3; ++seed) {
    const Matrix x = slim::random::gaussian(256, 128, seed);
    const Matrix w = slim::random::student_t(32, 128, 5, seed + 10);
    const Scheme scheme = slim::quant::int4_group(32);
    const double rtn = slim::metrics::output_error(x, w, slim::quant::fake_quantize(w, scheme));
    for (bool clip : {false, true}) {
      const auto result = slim::quant::awq(w, x, {.scheme = scheme, .clip_search = clip});
      const double error = slim::metrics::output_error(x, w, result.effective_weights());
      EXPECT_LE(error, rtn) << "seed " << seed << " clip " << clip;
      EXPECT_DOUBLE_EQ(result.rtn_output_error, rtn);
    }
  }
}

TEST(Awq, StrictlyLowerThanRtnWithOutlierChannels) {
  // Calibrate on half the tokens; the gain must hold on the held-out half too.
  for (std::uint64_t seed = 1; seed <= 3; ++seed) {
    const Matrix x = slim::random::correlated_activations(1024, 256, seed, {.outlier_channels = 4});
    const Matrix calibration = x.topRows(512);
    const Matrix held_out = x.bottomRows(512);
    const Matrix w = slim::random::student_t(64, 256, 5, seed + 20);
    const Scheme scheme = slim::quant::int4_group(64);
    const Matrix rtn_weights = slim::quant::fake_quantize(w, scheme);
    const auto result = slim::quant::awq(w, calibration, {.scheme = scheme});
    const Matrix effective = result.effective_weights();
    EXPECT_GT(result.alpha, 0.0);
    EXPECT_LT(slim::metrics::output_error(calibration, w, effective),
              slim::metrics::output_error(calibration, w, rtn_weights));
    EXPECT_LT(slim::metrics::output_error(held_out, w, effective),
              slim::metrics::output_error(held_out, w, rtn_weights));
  }
}

TEST(Awq, ChosenAlphaMinimisesOutputErrorOverTheGrid) {
  // Brute force: rebuild every grid point's effective weights from the paper's formula.
  const Matrix x = slim::random::correlated_activations(300, 64, 31);
  const Matrix w = slim::random::student_t(16, 64, 4, 32);
  const Scheme scheme = slim::quant::int4_group(16);
  const auto result = slim::quant::awq(w, x, {.scheme = scheme, .clip_search = false});
  const Eigen::ArrayXf mean_abs = x.cwiseAbs().colwise().mean().transpose().array();
  double best = std::numeric_limits<double>::infinity();
  double best_alpha = -1.0;
  for (int k = 0; k < 20; ++k) {
    const float alpha = static_cast<float>(k) / 20.0f;
    Eigen::ArrayXf s(64);
    for (Index j = 0; j < 64; ++j) s(j) = std::max(std::pow(mean_abs(j), alpha), 1e-4f);
    s /= std::sqrt(s.maxCoeff() * s.minCoeff());
    Matrix scaled = w;
    for (Index j = 0; j < 64; ++j) scaled.col(j) *= s(j);
    Matrix effective = slim::quant::fake_quantize(scaled, scheme);
    for (Index j = 0; j < 64; ++j) effective.col(j) /= s(j);
    const double error = slim::metrics::output_error(x, w, effective);
    if (error < best * (1.0 - 1e-9)) {
      best = error;
      best_alpha = k / 20.0;
    }
  }
  EXPECT_DOUBLE_EQ(result.alpha, best_alpha);
  EXPECT_NEAR(result.output_error, best, 1e-6 * best);
  EXPECT_NEAR(slim::metrics::output_error(x, w, result.effective_weights()), result.output_error,
              1e-9);
  EXPECT_FALSE(result.clipped);
}

TEST(Awq, SingleGridPointWithoutClippingIsRtn) {
  const Matrix x = slim::random::correlated_activations(100, 32, 41);
  const Matrix w = slim::random::student_t(8, 32, 4, 42);
  const Scheme scheme{.bits = 3, .group_size = 8};
  const auto result = slim::quant::awq(w, x, {.scheme = scheme, .grid = 1, .clip_search = false});
  EXPECT_TRUE(result.scales.isOnes(0.0f));
  EXPECT_EQ(result.quantized.codes(), slim::quant::quantize(w, scheme).codes());
  EXPECT_EQ(result.alpha, 0.0);
}

TEST(Awq, ClippingSearchNeverRaisesTheOutputError) {
  for (std::uint64_t seed = 1; seed <= 3; ++seed) {
    const Matrix x = slim::random::correlated_activations(600, 128, seed + 50);
    const Matrix w = slim::random::student_t(32, 128, 3, seed + 60);  // heavy tails: clipping helps
    const Scheme scheme{.bits = 3, .group_size = 32};
    const auto plain = slim::quant::awq(w, x, {.scheme = scheme, .clip_search = false});
    const auto clipped = slim::quant::awq(w, x, {.scheme = scheme, .clip_tokens = 128});
    EXPECT_EQ(clipped.alpha, plain.alpha);
    EXPECT_LE(clipped.output_error, plain.output_error);
    if (clipped.clipped) {
      // Clipping only ever shrinks ranges: the largest effective weight cannot grow.
      EXPECT_LE(clipped.quantized.dequantize().cwiseAbs().maxCoeff(),
                plain.quantized.dequantize().cwiseAbs().maxCoeff());
    }
  }
}

TEST(AwqOnReferenceModel, NotAboveRtnAndLowerOnHeldOutTokensOfRealLayers) {
  for (const char* name : {"layers.0.attention.wq", "layers.1.feed_forward.w2"}) {
    SCOPED_TRACE(name);
    const Matrix& w = slim::test::reference_model().linear_weight(name);
    const Matrix x = slim::test::reference_activations(name, 1024);
    const Index half = x.rows() / 2;
    const Matrix calibration = x.topRows(half);
    const Matrix held_out = x.bottomRows(x.rows() - half);
    const Scheme scheme = slim::quant::int4_group(32);
    const Matrix rtn = slim::quant::fake_quantize(w, scheme);
    const auto result = slim::quant::awq(w, calibration, {.scheme = scheme});
    const Matrix effective = result.effective_weights();
    EXPECT_LE(slim::metrics::output_error(calibration, w, effective),
              slim::metrics::output_error(calibration, w, rtn));
    EXPECT_LT(slim::metrics::output_error(held_out, w, effective),
              slim::metrics::output_error(held_out, w, rtn));
  }
}

TEST(Awq, RejectsBadInputWithTypedErrors) {
  const Matrix x = slim::random::correlated_activations(64, 32, 71);
  const Matrix w = slim::random::student_t(8, 32, 4, 72);
  const Scheme g8 = slim::quant::int4_group(8);
  using slim::quant::awq;
  EXPECT_THROW(awq(w, Matrix(64, 31), {.scheme = g8}), slim::ShapeError);
  EXPECT_THROW(awq(w, Matrix(0, 32), {.scheme = g8}), slim::ShapeError);
  EXPECT_THROW(awq(Matrix(0, 32), x, {.scheme = g8}), slim::ShapeError);
  EXPECT_THROW(awq(w, x, {.scheme = {.bits = 9, .group_size = 8}}), slim::ArgumentError);
  EXPECT_THROW(awq(w, x, {.scheme = {.bits = 4, .group_size = 5}}), slim::ArgumentError);
  EXPECT_THROW(awq(w, x, {.scheme = g8, .grid = 0}), slim::ArgumentError);
  EXPECT_THROW(awq(w, x, {.scheme = g8, .clip_max_shrink = 1.0}), slim::ArgumentError);
  EXPECT_THROW(awq(w, x, {.scheme = g8, .clip_tokens = 0}), slim::ArgumentError);
  Matrix bad = x;
  bad(3, 4) = std::numeric_limits<float>::infinity();
  EXPECT_THROW(awq(w, bad, {.scheme = g8}), slim::NumericalError);
}

}  // namespace

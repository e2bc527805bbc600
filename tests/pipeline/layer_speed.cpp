// Per-layer speed measurement: every format builds at a small shape, computes the dense product
// of its own effective weight (the oracle: x * W_eff^T in double precision), stores what it says
// (kept counts, N:M groups, rank), and layer_speed returns finite positive times. Timings are
// not asserted: a test is not a benchmark.
#include <slim/pipeline/layer_speed.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

using slim::Index;
using slim::Matrix;
using slim::pipeline::FormatSpec;
using slim::pipeline::LayerFormat;

constexpr Index kOut = 256;
constexpr Index kIn = 512;

std::vector<FormatSpec> every_format() {
  using slim::quant::ActivationPath;
  return {FormatSpec::dense(),
          FormatSpec::quantized(4, 32, false),
          FormatSpec::quantized(4, 32, true),
          FormatSpec::quantized(4, 128, false),
          FormatSpec::quantized(4, 32, false, ActivationPath::fp32),
          FormatSpec::quantized(8, 0, true),
          FormatSpec::quantized(8, 0, true, ActivationPath::fp32),
          FormatSpec::unstructured(0.5),
          FormatSpec::unstructured(0.9),
          FormatSpec::n_m(2, 4),
          FormatSpec::n_m(1, 8),
          FormatSpec::low_rank(0.5),
          FormatSpec::low_rank(0.1)};
}

// ||y - x W^T|| / ||x W^T|| with the reference in double precision.
double relative_error(const Matrix& y, const Matrix& x, const Matrix& w) {
  const Eigen::MatrixXd reference = x.cast<double>() * w.cast<double>().transpose();
  return (y.cast<double>() - reference).norm() / reference.norm();
}

// Each row rounded to the int8 grid of its absmax: q = clamp(round(x * 127 / amax)), x' = q
// amax/127.
Matrix int8_rounded(const Matrix& x) {
  Matrix out(x.rows(), x.cols());
  for (Index t = 0; t < x.rows(); ++t) {
    const float amax = x.row(t).cwiseAbs().maxCoeff();
    for (Index k = 0; k < x.cols(); ++k) {
      const float q = std::clamp(std::nearbyint(x(t, k) * (127.0f / amax)), -127.0f, 127.0f);
      out(t, k) = q * (amax / 127.0f);
    }
  }
  return out;
}

TEST(LayerSpeed, EveryFormatComputesTheProductOfItsOwnEffectiveWeight) {
  const Matrix x = slim::random::gaussian(3, kIn, 11);
  for (const FormatSpec& spec : every_format()) {
    SCOPED_TRACE(spec.name());
    const auto built = slim::pipeline::build_format_layer(spec, kOut, kIn, 1, 5, true);
    ASSERT_EQ(built.layer->out_features(), kOut);
    ASSERT_EQ(built.layer->in_features(), kIn);
    ASSERT_EQ(built.effective_weight.rows(), kOut);
    ASSERT_EQ(built.effective_weight.cols(), kIn);
    // The int8 path multiplies each token rounded to 8 bits (absmax / 127 steps, as llama.cpp's
    // Q8 activations): the oracle rounds x the same way; every other path is fp32 arithmetic.
    const bool int8 = spec.format == LayerFormat::quantized &&
                      spec.activations == slim::quant::ActivationPath::int8;
    for (Index tokens : {Index{1}, Index{3}}) {
      const Matrix xt = x.topRows(tokens);
      const Matrix y = (*built.layer)(xt);
      ASSERT_EQ(y.rows(), tokens);
      const Matrix x_seen = int8 ? int8_rounded(xt) : xt;
      EXPECT_LT(relative_error(y, x_seen, built.effective_weight), 1e-5) << tokens << " tokens";
    }
  }
}

TEST(LayerSpeed, BuiltLayersHaveTheRequestedStructure) {
  const auto sparse =
      slim::pipeline::build_format_layer(FormatSpec::unstructured(0.75), kOut, kIn, 1, 3, true);
  for (Index r = 0; r < kOut; ++r)
    ASSERT_EQ((sparse.effective_weight.row(r).array() != 0.0f).count(), kIn / 4) << "row " << r;

  const auto nm = slim::pipeline::build_format_layer(FormatSpec::n_m(2, 4), kOut, kIn, 1, 3, true);
  for (Index r = 0; r < kOut; ++r)
    for (Index g = 0; g < kIn; g += 4)
      ASSERT_EQ((nm.effective_weight.row(r).segment(g, 4).array() != 0.0f).count(), 2);

  const auto low = slim::pipeline::build_format_layer(FormatSpec::low_rank(0.5), kOut, kIn);
  const auto& factors = dynamic_cast<const slim::lowrank::Linear&>(*low.layer);
  EXPECT_EQ(factors.rank(), slim::lowrank::rank_for_budget(kOut, kIn, 0.5));

  // The same seed gives the same layer.
  const auto a =
      slim::pipeline::build_format_layer(FormatSpec::quantized(4, 32), kOut, kIn, 1, 9, true);
  const auto b =
      slim::pipeline::build_format_layer(FormatSpec::quantized(4, 32), kOut, kIn, 1, 9, true);
  EXPECT_EQ(a.effective_weight, b.effective_weight);
  // Compressed formats store fewer bytes than fp32 (4 * out * in) at these settings.
  EXPECT_LT(a.layer->bytes(), sizeof(float) * kOut * kIn / 4);
}

TEST(LayerSpeed, ReturnsFinitePositiveTimesForEveryFormat) {
  slim::pipeline::LayerSpeedOptions options;
  options.seconds = 0.005;
  for (const FormatSpec& spec : every_format()) {
    SCOPED_TRACE(spec.name());
    for (Index tokens : {Index{1}, Index{4}}) {
      options.tokens = tokens;
      const auto s = slim::pipeline::layer_speed(spec, kOut, kIn, options);
      EXPECT_TRUE(std::isfinite(s.dense_ms) && s.dense_ms > 0.0);
      EXPECT_TRUE(std::isfinite(s.compressed_ms) && s.compressed_ms > 0.0);
      EXPECT_TRUE(std::isfinite(s.speedup) && s.speedup > 0.0);
      EXPECT_NEAR(s.speedup, s.dense_ms / s.compressed_ms, 1e-9 * s.speedup);
      EXPECT_GT(s.bytes, 0u);
      EXPECT_EQ(s.dense_bytes, sizeof(float) * kOut * kIn);
      EXPECT_FALSE(s.layer.empty());
    }
  }
}

TEST(LayerSpeed, TwoThreadsGiveTheSameOutputAsOne) {
  const Matrix x = slim::random::gaussian(2, kIn, 4);
  for (const FormatSpec& spec : {FormatSpec::quantized(4, 32), FormatSpec::unstructured(0.5)}) {
    const auto one = slim::pipeline::build_format_layer(spec, kOut, kIn, 1, 2);
    const auto two = slim::pipeline::build_format_layer(spec, kOut, kIn, 2, 2);
    const Matrix y1 = (*one.layer)(x);
    const Matrix y2 = (*two.layer)(x);
    EXPECT_LT((y1 - y2).norm(), 1e-5 * y1.norm()) << spec.name();
  }
}

TEST(LayerSpeed, BadSpecsThrowTypedErrors) {
  using slim::ArgumentError;
  using slim::pipeline::build_format_layer;
  using slim::pipeline::layer_speed;
  EXPECT_THROW(build_format_layer(FormatSpec::quantized(3, 32), kOut, kIn), ArgumentError);
  EXPECT_THROW(build_format_layer(FormatSpec::quantized(4, 100), kOut, kIn), ArgumentError);
  EXPECT_THROW(build_format_layer(FormatSpec::quantized(4, -1), kOut, kIn), ArgumentError);
  // Divides in_features, but quant::Linear's kernels take 32, multiples of 64 or whole rows.
  EXPECT_THROW(build_format_layer(FormatSpec::quantized(4, 16), kOut, kIn), ArgumentError);
  EXPECT_THROW(build_format_layer(FormatSpec::unstructured(1.0), kOut, kIn), ArgumentError);
  EXPECT_THROW(build_format_layer(FormatSpec::unstructured(-0.1), kOut, kIn), ArgumentError);
  EXPECT_THROW(build_format_layer(FormatSpec::n_m(3, 2), kOut, kIn), ArgumentError);
  EXPECT_THROW(build_format_layer(FormatSpec::n_m(2, 3), kOut, kIn), ArgumentError);
  EXPECT_THROW(build_format_layer(FormatSpec::low_rank(0.0), kOut, kIn), ArgumentError);
  EXPECT_THROW(build_format_layer(FormatSpec::low_rank(1.5), kOut, kIn), ArgumentError);
  EXPECT_THROW(build_format_layer(FormatSpec::low_rank(1e-4), kOut, kIn), ArgumentError);
  EXPECT_THROW(build_format_layer(FormatSpec::dense(), 0, kIn), slim::ShapeError);
  EXPECT_THROW(build_format_layer(FormatSpec::dense(), kOut, kIn, 0), ArgumentError);
  slim::pipeline::LayerSpeedOptions options;
  options.tokens = 0;
  EXPECT_THROW(layer_speed(FormatSpec::dense(), kOut, kIn, options), ArgumentError);
  options.tokens = 1;
  options.seconds = -1.0;
  EXPECT_THROW(layer_speed(FormatSpec::dense(), kOut, kIn, options), ArgumentError);
  try {
    build_format_layer(FormatSpec::quantized(3, 32), kOut, kIn);
    FAIL() << "bits 3 was accepted";
  } catch (const ArgumentError& e) {
    EXPECT_NE(std::string(e.what()).find("bits 3"), std::string::npos) << e.what();
  }
}

TEST(LayerSpeed, Llama7bShapesAreOutByIn) {
  const auto shapes = slim::pipeline::llama7b_shapes();
  ASSERT_EQ(shapes.size(), 2u);
  EXPECT_EQ(shapes[0].out_features, 4096);
  EXPECT_EQ(shapes[0].in_features, 4096);
  EXPECT_EQ(shapes[1].out_features, 11008);
  EXPECT_EQ(shapes[1].in_features, 4096);
}

}  // namespace

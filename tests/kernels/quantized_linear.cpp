#include <slim/core/random.hpp>
#include <slim/kernels.hpp>
#include <slim/quant/linear.hpp>
#include <slim/quant/rtn.hpp>

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

using slim::Index;
using slim::Matrix;
using slim::MatrixD;
using slim::kernels::PackedWeights;
using slim::kernels::QuantizedActivations;
using slim::quant::ActivationPath;
using slim::quant::Granularity;
using slim::quant::Linear;
using slim::quant::LinearOptions;
using slim::quant::QuantizedMatrix;
using slim::quant::Scheme;

struct Format {
  int bits;
  Index group;  // 0: per-channel, -1: per-tensor
  bool symmetric;
  Index cols;
};

std::string format_name(const ::testing::TestParamInfo<Format>& info) {
  const Format& f = info.param;
  const std::string group =
      f.group > 0 ? "_g" + std::to_string(f.group) : (f.group == 0 ? "_channel" : "_tensor");
  return "int" + std::to_string(f.bits) + group + (f.symmetric ? "_sym_" : "_asym_") +
         std::to_string(f.cols);
}

Scheme scheme_of(const Format& f) {
  Scheme s{.bits = f.bits, .group_size = f.group, .symmetric = f.symmetric};
  if (f.group == 0) s.granularity = Granularity::per_channel;
  if (f.group < 0) s.granularity = Granularity::per_tensor;
  return s;
}

// RTN of heavy-tailed weights (Student t, 4 degrees of freedom): outliers like real layers.
QuantizedMatrix rtn_weights(const Format& f, Index rows, std::uint64_t seed) {
  return slim::quant::quantize(slim::random::student_t(rows, f.cols, 4, seed), scheme_of(f));
}

// Every code `code` (or random codes if code < 0), random fp16 scales and zero-points.
QuantizedMatrix adversarial_weights(const Format& f, Index rows, int code, std::uint64_t seed) {
  QuantizedMatrix q(rows, f.cols, scheme_of(f));
  std::mt19937_64 rng(seed);
  const int maxq = (1 << f.bits) - 1;
  std::uniform_int_distribution<int> any_code(0, maxq);
  std::uniform_real_distribution<float> scale(0.001f, 2.0f);
  for (Index r = 0; r < rows; ++r) {
    for (Index c = 0; c < f.cols; ++c)
      q.set_code(r, c, static_cast<std::uint32_t>(code < 0 ? any_code(rng) : code));
    for (Index g = 0; g < q.groups_per_row(); ++g)
      q.set_params(r, g, {slim::round_to_fp16(scale(rng)), f.symmetric ? 0 : any_code(rng)});
  }
  return q;
}

// Activations whose int8 codes are all +-127: every entry is +-1.
Matrix extreme_activations(Index tokens, Index cols, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  Matrix x(tokens, cols);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = (rng() & 1) ? 1.0f : -1.0f;
  return x;
}

// sum_k |w_rk| |x_tk|: the magnitude against which float rounding is measured.
MatrixD magnitudes(const Matrix& x, const Matrix& w) {
  return x.cast<double>().cwiseAbs() * w.cast<double>().cwiseAbs().transpose();
}

class KernelFormats : public ::testing::TestWithParam<Format> {};

INSTANTIATE_TEST_SUITE_P(AllFormats, KernelFormats,
                         ::testing::Values(Format{4, 32, true, 96}, Format{4, 32, false, 160},
                                           Format{4, 64, true, 192}, Format{4, 64, false, 128},
                                           Format{4, 128, true, 256}, Format{4, 128, false, 384},
                                           Format{4, 0, false, 100}, Format{8, 0, true, 100},
                                           Format{8, 0, false, 200}, Format{8, 64, false, 128},
                                           Format{8, 32, true, 96}, Format{8, -1, true, 72}),
                         format_name);

TEST_P(KernelFormats, PackingKeepsEveryCodeAndDequantizesExactly) {
  const QuantizedMatrix q = rtn_weights(GetParam(), 13, 1);
  const PackedWeights p = slim::kernels::pack(q);
  for (Index r = 0; r < q.rows(); ++r)
    for (Index k = 0; k < q.cols(); ++k)
      ASSERT_EQ(p.code(r, k), static_cast<int>(q.code(r, k))) << r << "," << k;
  const Matrix expected = q.dequantize();
  const Matrix got = slim::kernels::dequantize(p);
  EXPECT_EQ(0.0f, (got - expected).cwiseAbs().maxCoeff());
}

TEST_P(KernelFormats, FastBlockDequantizationEqualsTheScalarOne) {
  const QuantizedMatrix q = rtn_weights(GetParam(), 13, 1);
  const PackedWeights p = slim::kernels::pack(q);
  std::vector<float> expected(static_cast<std::size_t>(4 * p.cols_padded));
  std::vector<float> got(expected.size(), -1.0f);
  for (Index b = 0; b < p.row_blocks; ++b) {
    slim::kernels::dequantize_block(p, b, expected.data());
    slim::kernels::dequantize_block_fast(p, b, got.data());
    ASSERT_EQ(expected, got) << "block " << b;
  }
}

// The scalar reference against an oracle computed in double straight from QuantizedMatrix, on
// RTN weights and correlated activations and on extreme codes and +-127 activations.
TEST_P(KernelFormats, ScalarReferenceMatchesTheIntegerFormula) {
  const Format f = GetParam();
  const std::vector<QuantizedMatrix> weights = {rtn_weights(f, 9, 2),
                                                adversarial_weights(f, 9, 0, 3),
                                                adversarial_weights(f, 9, (1 << f.bits) - 1, 4)};
  const std::vector<Matrix> inputs = {slim::random::correlated_activations(5, f.cols, 3),
                                      extreme_activations(5, f.cols, 4)};
  for (const QuantizedMatrix& q : weights) {
    const PackedWeights p = slim::kernels::pack(q);
    for (const Matrix& x : inputs) {
      QuantizedActivations a;
      slim::kernels::quantize_activations(x, p, a);
      Matrix y(5, 9);
      slim::kernels::matmul_int8_reference(p, a, y.data(), 9);
      for (Index t = 0; t < 5; ++t)
        for (Index r = 0; r < 9; ++r) {
          double sum = 0.0, mag = 0.0;
          for (Index k = 0; k < q.cols(); ++k) {
            const double term = static_cast<double>(q.dequantized(r, k)) * a.value(t, k);
            sum += term;
            mag += std::abs(q.params(r, k / q.group_size()).scale) *
                   (q.code(r, k) + q.params(r, k / q.group_size()).zero) * std::abs(a.value(t, k));
          }
          const double d = a.scales[static_cast<std::size_t>(t)];
          const double tol =
              4.0 * (static_cast<double>(p.groups_padded) + 8.0) * FLT_EPSILON * d * mag;
          ASSERT_NEAR(y(t, r), d * sum, tol) << t << "," << r;
        }
    }
  }
}

// Runs `dots` and `matmul` (one SIMD path) against the reference on weights q and activations x:
// int32 accumulators exactly, outputs within float summation-order rounding.
template <typename Dots, typename Mul>
void expect_path_matches_reference(const QuantizedMatrix& q, const Matrix& x, Dots dots, Mul mul) {
  const PackedWeights p = slim::kernels::pack(q);
  QuantizedActivations a;
  slim::kernels::quantize_activations(x, p, a);
  const auto n = static_cast<std::size_t>(q.rows() * x.rows() * p.groups_padded);
  std::vector<std::int32_t> expected(n, 0), got(n, -1);
  slim::kernels::group_dots_reference(p, a, expected.data());
  dots(p, a, got.data());
  ASSERT_EQ(expected, got);

  Matrix y_ref(x.rows(), q.rows()), y(x.rows(), q.rows());
  slim::kernels::matmul_int8_reference(p, a, y_ref.data(), q.rows());
  mul(p, a, y.data(), q.rows());
  // Dequantized activations, to measure the magnitude of the sums.
  Matrix xq(x.rows(), x.cols());
  for (Index t = 0; t < x.rows(); ++t)
    for (Index k = 0; k < x.cols(); ++k)
      xq(t, k) = a.scales[static_cast<std::size_t>(t)] * static_cast<float>(a.value(t, k));
  Matrix w_abs = q.dequantize().cwiseAbs();
  // Zero-point terms are summed separately, so measure with |s q| + |s z| per weight.
  for (Index r = 0; r < q.rows(); ++r)
    for (Index k = 0; k < q.cols(); ++k) {
      const auto gp = q.params(r, k / q.group_size());
      w_abs(r, k) = std::abs(gp.scale) * static_cast<float>(q.code(r, k) + gp.zero);
    }
  const MatrixD mag = magnitudes(xq, w_abs);
  const double rounding = 4.0 * (static_cast<double>(p.groups_padded) + 32.0) * FLT_EPSILON;
  for (Index t = 0; t < x.rows(); ++t)
    for (Index r = 0; r < q.rows(); ++r)
      ASSERT_NEAR(y(t, r), y_ref(t, r), rounding * mag(t, r) + 1e-30) << t << "," << r;
}

#if defined(SLIM_KERNELS_AVX512VNNI) || defined(SLIM_KERNELS_AVX2)
void expect_path_on_random_and_adversarial_inputs(
    const Format& f, void (*dots)(const PackedWeights&, const QuantizedActivations&, std::int32_t*),
    void (*mul)(const PackedWeights&, const QuantizedActivations&, float*, Index, int)) {
  const auto mul1 = [mul](const PackedWeights& p, const QuantizedActivations& a, float* y,
                          Index ldy) { mul(p, a, y, ldy, 1); };
  const int maxq = (1 << f.bits) - 1;
  // Odd token counts exercise every token-tile width (4, 3, 2, 1); 67 crosses a token panel.
  for (Index tokens : {1, 2, 3, 5, 7, 67}) {
    SCOPED_TRACE("tokens " + std::to_string(tokens));
    expect_path_matches_reference(rtn_weights(f, 13, 10 + tokens),
                                  slim::random::correlated_activations(tokens, f.cols, 20 + tokens),
                                  dots, mul1);
  }
  for (int code : {0, maxq, -1}) {
    SCOPED_TRACE("code " + std::to_string(code));
    const QuantizedMatrix q = adversarial_weights(f, 7, code, 30);
    expect_path_matches_reference(q, extreme_activations(5, f.cols, 31), dots, mul1);
    Matrix x = extreme_activations(3, f.cols, 32);
    x.row(1) *= -1.0f;
    x.row(2).setZero();  // an all-zero token: scale 0, output 0
    expect_path_matches_reference(q, x, dots, mul1);
  }
}

#endif

// Both SIMD paths are compiled in a -march=native build on an AVX-512 VNNI machine, so both are
// held to the reference there; a build without them reports the test as skipped.
TEST_P(KernelFormats, Avx512VnniMatchesScalarReferenceExactly) {
#if defined(SLIM_KERNELS_AVX512VNNI)
  expect_path_on_random_and_adversarial_inputs(GetParam(), slim::kernels::group_dots_avx512,
                                               slim::kernels::matmul_int8_avx512);
#else
  GTEST_SKIP() << "AVX-512 VNNI path not compiled in";
#endif
}

TEST_P(KernelFormats, Avx2MatchesScalarReferenceExactly) {
#if defined(SLIM_KERNELS_AVX2)
  expect_path_on_random_and_adversarial_inputs(GetParam(), slim::kernels::group_dots_avx2,
                                               slim::kernels::matmul_int8_avx2);
#else
  GTEST_SKIP() << "AVX2 path not compiled in";
#endif
}

// Path (a): X * dequantize(W)^T up to float rounding (oracle in double).
TEST_P(KernelFormats, Fp32PathMatchesDequantizedProduct) {
  const QuantizedMatrix q = rtn_weights(GetParam(), 70, 4);
  const Linear layer(q, {.activations = ActivationPath::fp32});
  // 1..8 tokens take the direct kernel, more the dequantized tiles with Eigen.
  for (Index tokens : {1, 3, 5, 8, 9, 40}) {
    const Matrix x = slim::random::correlated_activations(tokens, q.cols(), 5 + tokens);
    const Matrix w = q.dequantize();
    const MatrixD expected = x.cast<double>() * w.cast<double>().transpose();
    const MatrixD mag = magnitudes(x, w);
    const Matrix y = layer(x);
    ASSERT_EQ(y.rows(), tokens);
    ASSERT_EQ(y.cols(), q.rows());
    const double rounding = 2.0 * static_cast<double>(q.cols()) * FLT_EPSILON;
    for (Index t = 0; t < tokens; ++t)
      for (Index r = 0; r < q.rows(); ++r)
        ASSERT_NEAR(y(t, r), expected(t, r), rounding * mag(t, r) + 1e-30) << t << "," << r;
  }
}

// Path (b): the error is the activation quantization error, bounded per output by
// sum_k |w_k| * step / 2 with step = absmax / 127, plus float rounding.
TEST_P(KernelFormats, Int8PathStaysWithinTheActivationQuantizationBound) {
  const QuantizedMatrix q = rtn_weights(GetParam(), 70, 6);
  const Linear layer(q);
  const Matrix w = q.dequantize();
  for (Index tokens : {1, 6, 67}) {
    const Matrix x = slim::random::correlated_activations(tokens, q.cols(), 7 + tokens);
    const MatrixD expected = x.cast<double>() * w.cast<double>().transpose();
    const MatrixD mag = magnitudes(x, w);
    const Matrix y = layer(x);
    const double rounding = 4.0 * static_cast<double>(q.cols()) * FLT_EPSILON;
    double worst_fraction = 0.0;
    for (Index t = 0; t < tokens; ++t) {
      const double step = static_cast<double>(x.row(t).cwiseAbs().maxCoeff()) / 127.0;
      for (Index r = 0; r < q.rows(); ++r) {
        const double bound =
            w.row(r).cast<double>().cwiseAbs().sum() * step / 2.0 + rounding * mag(t, r);
        const double err = std::abs(y(t, r) - expected(t, r));
        ASSERT_LE(err, bound) << t << "," << r;
        worst_fraction = std::max(worst_fraction, err / bound);
      }
    }
    // The bound is not vacuous: the kernel really quantizes (errors are a visible fraction).
    EXPECT_GT(worst_fraction, 0.01);
  }
}

TEST_P(KernelFormats, ResultsAreIdenticalForAnyThreadCount) {
  const QuantizedMatrix q = rtn_weights(GetParam(), 37, 8);
  const Matrix x = slim::random::correlated_activations(9, q.cols(), 9);
  for (ActivationPath path : {ActivationPath::int8, ActivationPath::fp32}) {
    const Matrix y1 = Linear(q, {.activations = path, .threads = 1})(x);
    for (int threads : {2, 3}) {
      const Matrix yn = Linear(q, {.activations = path, .threads = threads})(x);
      EXPECT_EQ(0.0f, (y1 - yn).cwiseAbs().maxCoeff()) << threads;
    }
  }
}

TEST(QuantLinear, ReportsShapeBytesAndDescription) {
  const QuantizedMatrix q = rtn_weights({4, 32, true, 128}, 8, 1);
  const Linear layer(q);
  EXPECT_EQ(layer.in_features(), 128);
  EXPECT_EQ(layer.out_features(), 8);
  // The codes and fp16 scales of QuantizedMatrix, plus at most a cache line per 4-row block.
  EXPECT_GE(layer.bytes(), q.bytes());
  EXPECT_LE(layer.bytes(), q.bytes() + 2u * 64u);
  EXPECT_NE(layer.describe().find("int4 g32 sym"), std::string::npos);
}

TEST(QuantLinear, RejectsWrongInputWidth) {
  const QuantizedMatrix q = rtn_weights({4, 32, false, 64}, 4, 1);
  for (ActivationPath path : {ActivationPath::int8, ActivationPath::fp32}) {
    const Linear layer(q, {.activations = path});
    Matrix y;
    EXPECT_THROW(layer.forward(Matrix::Ones(2, 65), y), slim::ShapeError);
  }
}

TEST(QuantLinear, RejectsEmptyInput) {
  const QuantizedMatrix q = rtn_weights({8, 0, true, 64}, 4, 1);
  for (ActivationPath path : {ActivationPath::int8, ActivationPath::fp32}) {
    const Linear layer(q, {.activations = path});
    Matrix y;
    EXPECT_THROW(layer.forward(Matrix(0, 64), y), slim::ShapeError);
  }
}

TEST(QuantLinear, Int8PathThrowsOnNonFiniteActivations) {
  const QuantizedMatrix q = rtn_weights({4, 64, true, 128}, 4, 1);
  const Linear layer(q);
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    Matrix x = Matrix::Ones(3, 128);
    x(2, 77) = bad;
    Matrix y;
    EXPECT_THROW(layer.forward(x, y), slim::NumericalError) << bad;
  }
}

TEST(QuantLinear, Fp32PathPropagatesNonFiniteActivationsLikeADenseLayer) {
  const QuantizedMatrix q = rtn_weights({4, 64, true, 128}, 4, 1);
  const Linear layer(q, {.activations = ActivationPath::fp32});
  Matrix x = Matrix::Ones(2, 128);
  x(1, 5) = std::numeric_limits<float>::quiet_NaN();
  const Matrix y = layer(x);
  EXPECT_TRUE(y.row(0).allFinite());
  EXPECT_TRUE(y.row(1).array().isNaN().all());
}

TEST(QuantLinear, RejectsThreadCountBelowOne) {
  const QuantizedMatrix q = rtn_weights({4, 64, true, 128}, 4, 1);
  EXPECT_THROW(Linear(q, {.threads = 0}), slim::ArgumentError);
  Linear layer(q);
  EXPECT_THROW(layer.set_threads(-1), slim::ArgumentError);
  const PackedWeights p = slim::kernels::pack(q);
  QuantizedActivations a;
  slim::kernels::quantize_activations(Matrix::Ones(1, 128), p, a);
  std::vector<float> y(4);
  EXPECT_THROW(slim::kernels::matmul_int8_reference(p, a, y.data(), 4, 0), slim::ArgumentError);
  EXPECT_THROW(slim::kernels::matmul_int8(p, a, y.data(), 4, 0), slim::ArgumentError);
  Matrix ym;
  EXPECT_THROW(slim::kernels::matmul_fp32(p, Matrix::Ones(1, 128), ym, 0), slim::ArgumentError);
}

TEST(QuantLinear, RejectsFormatsTheKernelsDoNotTake) {
  const Matrix w = slim::random::gaussian(4, 192, 1);
  EXPECT_THROW(Linear(slim::quant::quantize(w, {.bits = 3, .group_size = 64})),
               slim::ArgumentError);
  EXPECT_THROW(Linear(slim::quant::quantize(w, {.bits = 4, .group_size = 96})),
               slim::ArgumentError);
}

TEST(QuantLinear, Int8PathRejectsRowsLongEnoughToOverflowInt32) {
  // 8-bit per-channel: 70000 * 255 * 127 > 2^31 - 1. The fp32 path has no such limit.
  const QuantizedMatrix q(1, 70000, slim::quant::int8_per_channel());
  EXPECT_THROW(Linear(q, {.activations = ActivationPath::int8}), slim::ArgumentError);
  EXPECT_NO_THROW(Linear(q, {.activations = ActivationPath::fp32}));
}

}  // namespace

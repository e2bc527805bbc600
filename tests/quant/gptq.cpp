#include <slim/calib/hessian.hpp>
#include <slim/calib/inverse.hpp>
#include <slim/core/metrics.hpp>
#include <slim/core/random.hpp>
#include <slim/quant/gptq.hpp>
#include <slim/quant/rtn.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include "support/reference_model.hpp"

#include <Eigen/LU>

#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace {

using slim::Index;
using slim::Matrix;
using slim::MatrixD;
using slim::quant::GptqOptions;
using slim::quant::Granularity;
using slim::quant::QuantizedMatrix;
using slim::quant::Scheme;

Matrix hessian_of(const Matrix& x) {
  slim::calib::Hessian h(x.cols());
  h.add(x);
  return h.matrix();
}

// Identical codes and group parameters, and the count of codes that differ.
Index differing_codes(const QuantizedMatrix& a, const QuantizedMatrix& b) {
  Index differ = 0;
  for (Index r = 0; r < a.rows(); ++r) {
    for (Index c = 0; c < a.cols(); ++c) differ += a.code(r, c) != b.code(r, c);
  }
  return differ;
}

void expect_same_params(const QuantizedMatrix& a, const QuantizedMatrix& b) {
  for (Index r = 0; r < a.rows(); ++r) {
    for (Index g = 0; g < a.groups_per_row(); ++g) {
      EXPECT_EQ(a.params(r, g).scale, b.params(r, g).scale) << "row " << r << " group " << g;
      EXPECT_EQ(a.params(r, g).zero, b.params(r, g).zero) << "row " << r << " group " << g;
    }
  }
}

TEST(Gptq, MatchesRtnWhenHessianIsIdentity) {
  const Matrix w = slim::random::student_t(24, 64, 4, 11);
  const Matrix identity = Matrix::Identity(64, 64);
  const std::vector<GptqOptions> cases = {
      {.scheme = slim::quant::int4_group(32)},
      {.scheme = {.bits = 3,
                  .group_size = 0,
                  .symmetric = true,
                  .granularity = Granularity::per_channel}},
      {.scheme = {.bits = 8, .group_size = 0, .granularity = Granularity::per_tensor}},
      {.scheme = {.bits = 2, .group_size = 16}, .block_size = 5},
      {.scheme = slim::quant::int4_group(16), .act_order = true, .static_groups = true},
  };
  for (const GptqOptions& options : cases) {
    SCOPED_TRACE(options.scheme.name());
    const auto result = slim::quant::gptq(w, identity, options);
    const QuantizedMatrix rtn = slim::quant::quantize(w, options.scheme);
    EXPECT_EQ(differing_codes(result.quantized, rtn), 0);
    expect_same_params(result.quantized, rtn);
    EXPECT_EQ(result.quantized.codes(), rtn.codes());
  }
}

TEST(Gptq, ActOrderWithDiagonalHessianEqualsRtnInOriginalColumnOrder) {
  // A diagonal H couples no columns, so GPTQ changes nothing but the processing order.
  const Matrix w = slim::random::student_t(16, 48, 4, 12);
  Matrix h = Matrix::Zero(48, 48);
  slim::random::Generator g(13);
  for (Index j = 0; j < 48; ++j) h(j, j) = static_cast<float>(0.1 + g.uniform());
  const Scheme scheme = slim::quant::int4_group(16);
  const auto result = slim::quant::gptq(
      w, h,
      {.scheme = scheme, .act_order = true, .static_groups = true, .return_dequantized = true});
  const QuantizedMatrix rtn = slim::quant::quantize(w, scheme);
  EXPECT_EQ(differing_codes(result.quantized, rtn), 0);
  expect_same_params(result.quantized, rtn);
  EXPECT_EQ(result.dequantized, rtn.dequantize());
  for (Index k = 1; k < 48; ++k) {
    EXPECT_GE(h(result.order(k - 1), result.order(k - 1)), h(result.order(k), result.order(k)));
  }
  EXPECT_NE(result.order, slim::IndexVector::LinSpaced(48, 0, 47));
}

// Column-wise OBS quantization (GPTQ paper eqs. 2-3), written directly: quantize column q, move the
// remaining weights by -(w_q - quant(w_q)) / [H_F^-1]_qq * [H_F^-1]_{:,q}, then remove q from the
// inverse Hessian with a rank-one downdate. Double precision; group parameters are fitted when a
// group is entered, on the updated weights.
struct ObsReference {
  std::vector<std::vector<int>> codes;
  std::vector<double> column_loss;
};

ObsReference obs_reference(const Matrix& w, const Matrix& h, double percdamp, const Scheme& s) {
  const Index rows = w.rows();
  const Index cols = w.cols();
  MatrixD weights = w.cast<double>();
  MatrixD damped = h.cast<double>();
  damped.diagonal().array() += percdamp * damped.diagonal().mean();
  MatrixD inverse = damped.inverse();
  const Index gs = s.granularity == Granularity::per_group ? s.group_size : cols;
  ObsReference out;
  out.codes.assign(static_cast<std::size_t>(rows), std::vector<int>(cols));
  out.column_loss.assign(static_cast<std::size_t>(cols), 0.0);
  std::vector<slim::quant::GroupParams> params(static_cast<std::size_t>(rows));
  for (Index q = 0; q < cols; ++q) {
    if (q % gs == 0) {
      for (Index r = 0; r < rows; ++r) {
        const std::vector<float> group = [&] {
          std::vector<float> v(static_cast<std::size_t>(gs));
          for (Index k = 0; k < gs; ++k) v[k] = static_cast<float>(weights(r, q + k));
          return v;
        }();
        params[r] = slim::quant::fit_group(group.data(), gs, s);
      }
    }
    const double hqq = inverse(q, q);
    for (Index r = 0; r < rows; ++r) {
      const int code =
          slim::quant::quantize_code(static_cast<float>(weights(r, q)), params[r], s.bits);
      const double quantized = slim::quant::dequantize_code(code, params[r]);
      const double error = weights(r, q) - quantized;
      out.codes[r][q] = code;
      out.column_loss[q] += error * error / (2.0 * hqq);
      for (Index j = q + 1; j < cols; ++j) weights(r, j) -= error / hqq * inverse(q, j);
    }
    const Eigen::VectorXd col = inverse.col(q);
    inverse -= col * col.transpose() / hqq;
  }
  return out;
}

TEST(Gptq, CodesEqualDirectColumnwiseObsOnSmallThreeBitLayer) {
  const Matrix w = slim::random::student_t(8, 16, 4, 21);
  const Matrix h = hessian_of(slim::random::correlated_activations(128, 16, 22, {.rank = 4}));
  const std::vector<Scheme> schemes = {
      {.bits = 3, .group_size = 8},
      {.bits = 3, .group_size = 0, .symmetric = true, .granularity = Granularity::per_channel}};
  for (const Scheme& scheme : schemes) {
    SCOPED_TRACE(scheme.name());
    const ObsReference expected = obs_reference(w, h, 0.01, scheme);
    const auto result = slim::quant::gptq(w, h, {.scheme = scheme});
    for (Index r = 0; r < 8; ++r) {
      for (Index c = 0; c < 16; ++c) {
        EXPECT_EQ(static_cast<int>(result.quantized.code(r, c)), expected.codes[r][c])
            << "row " << r << " column " << c;
      }
    }
    for (Index c = 0; c < 16; ++c) {
      EXPECT_NEAR(result.column_loss(c), expected.column_loss[c],
                  1e-3 * expected.column_loss[c] + 1e-9);
    }
  }
}

TEST(Gptq, LazyBlocksGiveTheSameResultAsBlockSizeOne) {
  struct Case {
    Index cols;
    Scheme scheme;
    bool act_order;
  };
  // g96 with blocks of 128 makes groups straddle block ends (their tail lacks the block's error).
  const std::vector<Case> cases = {{512, slim::quant::int4_group(128), false},
                                   {384, {.bits = 3, .group_size = 96}, false},
                                   {256, slim::quant::int4_group(64), true}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.scheme.name());
    const Matrix w = slim::random::student_t(48, c.cols, 5, 31);
    const Matrix h = hessian_of(slim::random::correlated_activations(1024, c.cols, 32));
    GptqOptions options{.scheme = c.scheme,
                        .block_size = 1,
                        .act_order = c.act_order,
                        .static_groups = c.act_order};
    const auto single = slim::quant::gptq(w, h, options);
    options.block_size = 128;
    const auto lazy = slim::quant::gptq(w, h, options);
    const Index differ = differing_codes(single.quantized, lazy.quantized);
    EXPECT_LE(static_cast<double>(differ), 0.001 * static_cast<double>(w.size()));
    EXPECT_NEAR(lazy.loss, single.loss, 1e-4 * single.loss);
  }
}

TEST(Gptq, ColumnLossesSumToTheQuadraticErrorOfTheResult) {
  // OBS bookkeeping: each column's loss is the exact increase of
  // E(Q) = 1/2 sum_r (W - Q)_r (H + lambda I) (W - Q)_r^T, so the losses add up to E of the result.
  const Matrix w = slim::random::student_t(32, 128, 5, 41);
  const Matrix h = hessian_of(slim::random::correlated_activations(512, 128, 42));
  const auto result = slim::quant::gptq(
      w, h, {.scheme = {.bits = 3, .group_size = 32}, .return_dequantized = true});
  MatrixD damped = h.cast<double>();
  damped.diagonal().array() += 0.01 * damped.diagonal().mean();
  const MatrixD delta = w.cast<double>() - result.dequantized.cast<double>();
  const double quadratic = 0.5 * (delta * damped).cwiseProduct(delta).sum();
  EXPECT_NEAR(result.loss, quadratic, 1e-3 * quadratic);
  EXPECT_NEAR(result.column_loss.cast<double>().sum(), result.loss, 1e-5 * result.loss);
  EXPECT_EQ(result.dequantized, result.quantized.dequantize());
}

TEST(Gptq, ActOrderEqualsPlainGptqOnExplicitlyPermutedColumns) {
  const Matrix w = slim::random::student_t(16, 64, 4, 51);
  const Matrix h = hessian_of(slim::random::correlated_activations(256, 64, 52));
  const Scheme scheme{.bits = 4, .group_size = 0, .granularity = Granularity::per_channel};
  const auto ordered = slim::quant::gptq(w, h, {.scheme = scheme, .act_order = true});
  std::vector<Index> perm(64);
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(), [&](Index a, Index b) { return h(a, a) > h(b, b); });
  const Matrix w_perm = w(Eigen::all, perm);
  const Matrix h_perm = h(perm, perm);
  const auto plain = slim::quant::gptq(w_perm, h_perm, {.scheme = scheme});
  for (Index k = 0; k < 64; ++k) {
    EXPECT_EQ(ordered.order(k), perm[k]);
    EXPECT_EQ(ordered.column_loss(perm[k]), plain.column_loss(k));
    for (Index r = 0; r < 16; ++r) {
      EXPECT_EQ(ordered.quantized.code(r, perm[k]), plain.quantized.code(r, k));
    }
  }
}

TEST(Gptq, ReducesOutputErrorVersusRtnOnCorrelatedActivations) {
  // Calibrate on the first half of the tokens, judge on the held-out second half.
  const Matrix x = slim::random::correlated_activations(2048, 256, 61);
  const Matrix calibration = x.topRows(1024);
  const Matrix held_out = x.bottomRows(1024);
  const Matrix w = slim::random::student_t(64, 256, 5, 62);
  slim::calib::Hessian hessian(256);
  hessian.add(calibration);
  for (int bits : {3, 4}) {
    const Scheme scheme{.bits = bits, .group_size = 64};
    const double rtn =
        slim::metrics::output_error(held_out, w, slim::quant::fake_quantize(w, scheme));
    for (bool act_order : {false, true}) {
      SCOPED_TRACE(testing::Message() << bits << " bits, act_order " << act_order);
      const auto result = slim::quant::gptq(
          w, hessian, {.scheme = scheme, .act_order = act_order, .static_groups = act_order});
      const double error = slim::metrics::output_error(held_out, w, result.quantized.dequantize());
      EXPECT_LT(error, 0.75 * rtn) << "gptq " << error << " rtn " << rtn;
    }
  }
}

TEST(GptqOnReferenceModel, ReducesOutputErrorVersusRtnOnRealLayers) {
  // Real weights and real captured activations of the trained test model; calibrate on the first
  // half of the tokens, judge on the held-out second half.
  for (const char* name : {"layers.0.attention.wq", "layers.1.feed_forward.w2"}) {
    SCOPED_TRACE(name);
    const Matrix& w = slim::test::reference_model().linear_weight(name);
    const Matrix x = slim::test::reference_activations(name, 1024);
    const Index half = x.rows() / 2;
    const Matrix held_out = x.bottomRows(x.rows() - half);
    const Scheme scheme{.bits = 3, .group_size = 32};
    const double rtn =
        slim::metrics::output_error(held_out, w, slim::quant::fake_quantize(w, scheme));
    const auto result = slim::quant::gptq(w, hessian_of(x.topRows(half)), {.scheme = scheme});
    const double error = slim::metrics::output_error(held_out, w, result.quantized.dequantize());
    EXPECT_LT(error, 0.75 * rtn) << "gptq " << error << " rtn " << rtn;
  }
}

TEST(Gptq, DeadInputsAreQuantizedAsZero) {
  Matrix x = slim::random::correlated_activations(256, 32, 71);
  x.col(5).setZero();
  x.col(17).setZero();
  const Matrix w = slim::random::student_t(8, 32, 4, 72);
  const auto result = slim::quant::gptq(w, hessian_of(x),
                                        {.scheme = slim::quant::int4_group(16),
                                         .act_order = true,
                                         .static_groups = true,
                                         .return_dequantized = true});
  for (Index j = 0; j < 32; ++j) EXPECT_EQ(result.dead[j], j == 5 || j == 17);
  EXPECT_TRUE(result.dequantized.col(5).isZero(0.0f));
  EXPECT_TRUE(result.dequantized.col(17).isZero(0.0f));
  EXPECT_TRUE(result.dequantized.allFinite());
}

TEST(Gptq, GrowsDampeningWhenTheHessianIsIndefinite) {
  const Matrix w = slim::random::student_t(8, 16, 4, 81);
  Matrix h = Matrix::Identity(16, 16);
  h(3, 3) = -0.05f;  // mean diagonal ~0.94: percdamp 0.01 fails, 0.1 succeeds
  const auto result = slim::quant::gptq(w, h, {.scheme = slim::quant::int4_group(8)});
  EXPECT_DOUBLE_EQ(result.percdamp, 0.01 * 10.0);
}

TEST(Gptq, RejectsBadInputWithTypedErrors) {
  const Matrix w = slim::random::student_t(8, 16, 4, 91);
  const Matrix h = hessian_of(slim::random::correlated_activations(64, 16, 92));
  const Scheme g8 = slim::quant::int4_group(8);
  using slim::quant::gptq;
  EXPECT_THROW(gptq(w, Matrix(Matrix::Identity(12, 12)), {.scheme = g8}), slim::ShapeError);
  EXPECT_THROW(gptq(w, Matrix(Matrix::Zero(16, 12)), {.scheme = g8}), slim::ShapeError);
  EXPECT_THROW(gptq(Matrix(0, 16), h, {.scheme = g8}), slim::ShapeError);
  EXPECT_THROW(gptq(w, slim::calib::Hessian(16), {.scheme = g8}), slim::ArgumentError);
  EXPECT_THROW(gptq(w, h, {.scheme = {.bits = 1, .group_size = 8}}), slim::ArgumentError);
  EXPECT_THROW(gptq(w, h, {.scheme = {.bits = 9, .group_size = 8}}), slim::ArgumentError);
  EXPECT_THROW(gptq(w, h, {.scheme = {.bits = 4, .group_size = 5}}), slim::ArgumentError);
  EXPECT_THROW(gptq(w, h, {.scheme = g8, .block_size = 0}), slim::ArgumentError);
  EXPECT_THROW(gptq(w, h, {.scheme = g8, .damping = {.percdamp = -0.01}}), slim::ArgumentError);
  EXPECT_THROW(gptq(w, h, {.scheme = g8, .damping = {.percdamp = std::nan("")}}),
               slim::ArgumentError);
  EXPECT_THROW(gptq(w, h, {.scheme = g8, .act_order = true}), slim::ArgumentError);
  Matrix bad_w = w;
  bad_w(2, 3) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(gptq(bad_w, h, {.scheme = g8}), slim::NumericalError);
  Matrix bad_h = h;
  bad_h(4, 4) = std::numeric_limits<float>::infinity();
  EXPECT_THROW(gptq(w, bad_h, {.scheme = g8}), slim::NumericalError);
  try {
    gptq(w, Matrix(-Matrix::Identity(16, 16)), {.scheme = g8});
    ADD_FAILURE() << "a negative definite Hessian was accepted";
  } catch (const slim::NumericalError& e) {
    EXPECT_THAT(e.what(), testing::HasSubstr("16 x 16"));
    EXPECT_THAT(e.what(), testing::HasSubstr("percdamp 10000"));
  }
}

TEST(InverseHessianCholesky, UpperFactorSquaresToTheDampenedInverse) {
  const Matrix h = hessian_of(slim::random::correlated_activations(300, 40, 101));
  MatrixD damped = h.cast<double>();
  damped.diagonal().array() += 0.01 * damped.diagonal().mean();
  const MatrixD expected = damped.inverse();
  for (bool double_precision : {false, true}) {
    const auto factor =
        slim::calib::dampened_inverse_cholesky(h, {.double_precision = double_precision});
    const MatrixD u = factor.upper.cast<double>();
    EXPECT_TRUE(u.isUpperTriangular(0.0));
    EXPECT_GT(u.diagonal().minCoeff(), 0.0);
    EXPECT_LT((u.transpose() * u - expected).norm(),
              (double_precision ? 1e-6 : 1e-3) * expected.norm());
    EXPECT_EQ(factor.increases, 0);
    EXPECT_DOUBLE_EQ(factor.damp, 0.01 * h.cast<double>().diagonal().mean());
  }
}

TEST(InverseHessianCholesky, RetriedFactorEqualsAFreshFactorAtTheFinalDampening) {
  Matrix h = hessian_of(slim::random::correlated_activations(200, 24, 111));
  h(7, 7) = -0.2f * h.diagonal().mean();  // indefinite
  const auto retried = slim::calib::dampened_inverse_cholesky(h, {.percdamp = 0.01});
  ASSERT_GT(retried.increases, 0);
  const auto fresh = slim::calib::dampened_inverse_cholesky(h, {.percdamp = retried.percdamp});
  EXPECT_EQ(fresh.increases, 0);
  EXPECT_EQ(retried.upper, fresh.upper);
}

TEST(InverseHessianCholesky, RepairsDeadInputsAndRejectsBadInput) {
  Matrix h = Matrix::Identity(6, 6);
  h(2, 2) = 0.0f;
  const auto factor = slim::calib::dampened_inverse_cholesky(h);
  EXPECT_EQ(factor.dead, std::vector<bool>({false, false, true, false, false, false}));
  EXPECT_THROW(slim::calib::dampened_inverse_cholesky(Matrix(3, 4)), slim::ShapeError);
  EXPECT_THROW(slim::calib::dampened_inverse_cholesky(h, {.growth = 1.0}), slim::ArgumentError);
  EXPECT_THROW(slim::calib::dampened_inverse_cholesky(h, {.max_increases = -1}),
               slim::ArgumentError);
  EXPECT_THROW(slim::calib::dampened_inverse_cholesky(Matrix(-Matrix::Identity(4, 4))),
               slim::NumericalError);
}

}  // namespace

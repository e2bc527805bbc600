// Distillation losses: every analytic gradient against central finite differences in double,
// plus the properties the losses must have (zero iff per-row shift, non-negativity, the large-T
// limit, stability for extreme logits) and every bad-input path.
#include <slim/core/random.hpp>
#include <slim/distill.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <vector>

namespace {

using slim::Index;
using slim::IndexVector;
using slim::MatrixD;
using slim::VectorD;
namespace distill = slim::distill;

// Coefficient-wise exp and log through std:: (see ScalarExp in slim/distill/loss.hpp).
struct Exp {
  double operator()(double v) const { return std::exp(v); }
};
struct Log {
  double operator()(double v) const { return std::log(v); }
};

MatrixD gaussian_d(Index rows, Index cols, std::uint64_t seed, double stddev = 1.0) {
  return slim::random::gaussian(rows, cols, seed, stddev).cast<double>();
}

// Central differences of f at x, one coordinate at a time, step h scaled to the entry.
MatrixD numeric_gradient(const std::function<double(const MatrixD&)>& f, const MatrixD& x,
                         double h = 1e-5) {
  MatrixD g(x.rows(), x.cols());
  MatrixD probe = x;
  for (Index i = 0; i < x.size(); ++i) {
    const double step = h * std::max(1.0, std::abs(x.data()[i]));
    probe.data()[i] = x.data()[i] + step;
    const double up = f(probe);
    probe.data()[i] = x.data()[i] - step;
    const double down = f(probe);
    probe.data()[i] = x.data()[i];
    g.data()[i] = (up - down) / (2.0 * step);
  }
  return g;
}

double relative_error(const MatrixD& analytic, const MatrixD& numeric) {
  const double scale = std::max(analytic.norm(), numeric.norm());
  if (scale == 0.0) return 0.0;
  return (analytic - numeric).norm() / scale;
}

// Weights with some variety and two ignored rows (padding).
distill::RowWeights padded_rows(Index rows) {
  distill::RowWeights w;
  w.weight = VectorD::LinSpaced(rows, 0.5, 2.0);
  w.ignore.assign(static_cast<std::size_t>(rows), false);
  w.ignore[1] = true;
  w.ignore[static_cast<std::size_t>(rows - 1)] = true;
  return w;
}

constexpr double kGradientTolerance = 1e-6;

class KdGradient : public ::testing::TestWithParam<double> {};

TEST_P(KdGradient, MatchesFiniteDifferencesForEveryDivergenceWithMaskedRows) {
  const double temperature = GetParam();
  const MatrixD s = gaussian_d(6, 7, 1, 3.0);
  const MatrixD t = gaussian_d(6, 7, 2, 3.0);
  const auto rows = padded_rows(6);
  for (auto divergence : {distill::Divergence::forward_kl, distill::Divergence::reverse_kl,
                          distill::Divergence::jensen_shannon}) {
    const distill::KdOptions options{.temperature = temperature, .divergence = divergence};
    const auto loss = distill::kd_loss(s, t, options, rows);
    const MatrixD numeric = numeric_gradient(
        [&](const MatrixD& x) { return distill::kd_loss(x, t, options, rows).value; }, s);
    EXPECT_LT(relative_error(loss.gradient, numeric), kGradientTolerance)
        << "T " << temperature << " divergence " << static_cast<int>(divergence);
    EXPECT_GT(loss.value, 0.0);
    // Ignored rows contribute nothing to the gradient ...
    EXPECT_EQ(loss.gradient.row(1).norm(), 0.0);
    EXPECT_EQ(loss.gradient.row(5).norm(), 0.0);
    // ... nor to the value, whatever their logits hold.
    MatrixD s_changed = s;
    s_changed.row(1) *= 7.0;
    EXPECT_DOUBLE_EQ(distill::kd_loss(s_changed, t, options, rows).value, loss.value);
  }
}

INSTANTIATE_TEST_SUITE_P(Temperatures, KdGradient, ::testing::Values(0.5, 1.0, 2.0, 20.0));

TEST(KdLoss, IsTheRowWeightedMeanOfHandComputedKlTimesTSquared) {
  const MatrixD s = gaussian_d(3, 4, 3);
  const MatrixD t = gaussian_d(3, 4, 4);
  const double temperature = 1.5;
  distill::RowWeights rows;
  rows.weight = VectorD::Zero(3);
  rows.weight << 1.0, 3.0, 0.0;
  double expected = 0.0;
  for (Index i = 0; i < 3; ++i) {
    // Direct softmax (fine for these small logits) and KL by its definition.
    const Eigen::RowVectorXd ps =
        (s.row(i) / temperature).unaryExpr(Exp{}) / (s.row(i) / temperature).unaryExpr(Exp{}).sum();
    const Eigen::RowVectorXd pt =
        (t.row(i) / temperature).unaryExpr(Exp{}) / (t.row(i) / temperature).unaryExpr(Exp{}).sum();
    double kl = 0.0;
    for (Index j = 0; j < 4; ++j) kl += pt[j] * std::log(pt[j] / ps[j]);
    expected += rows.weight[i] * temperature * temperature * kl;
  }
  expected /= rows.weight.sum();
  EXPECT_NEAR(distill::kd_loss(s, t, {.temperature = temperature}, rows).value, expected, 1e-12);
}

TEST(KdLoss, IsZeroExactlyWhenLogitsDifferByAPerRowConstant) {
  const MatrixD t = gaussian_d(5, 9, 5, 2.0);
  MatrixD shifted = t;
  for (Index i = 0; i < 5; ++i) shifted.row(i).array() += 10.0 * static_cast<double>(i) - 17.0;
  for (double temperature : {0.5, 2.0, 20.0}) {
    for (auto divergence : {distill::Divergence::forward_kl, distill::Divergence::reverse_kl,
                            distill::Divergence::jensen_shannon}) {
      const distill::KdOptions options{.temperature = temperature, .divergence = divergence};
      const auto same = distill::kd_loss(shifted, t, options);
      EXPECT_NEAR(same.value, 0.0, 1e-12);
      EXPECT_LT(same.gradient.cwiseAbs().maxCoeff(), 1e-12);
      // Any change that is not a per-row constant gives a positive loss.
      MatrixD perturbed = shifted;
      perturbed(2, 4) += 1e-2;
      EXPECT_GT(distill::kd_loss(perturbed, t, options).value, 1e-9);
      MatrixD scaled = shifted;
      scaled.row(0) *= 1.5;  // a per-row scale is not a shift
      EXPECT_GT(distill::kd_loss(scaled, t, options).value, 1e-6);
    }
  }
}

TEST(KdLoss, DivergencesAreNonNegativeAndJensenShannonIsBoundedByLog2) {
  for (std::uint64_t seed = 10; seed < 40; ++seed) {
    const MatrixD s = gaussian_d(4, 11, seed, 4.0);
    const MatrixD t = gaussian_d(4, 11, seed + 1000, 4.0);
    for (double temperature : {0.5, 1.0, 20.0}) {
      const double tt = temperature * temperature;
      const double forward = distill::kd_loss(s, t, {.temperature = temperature}).value;
      const double reverse =
          distill::kd_loss(
              s, t, {.temperature = temperature, .divergence = distill::Divergence::reverse_kl})
              .value;
      const double js =
          distill::kd_loss(
              s, t, {.temperature = temperature, .divergence = distill::Divergence::jensen_shannon})
              .value;
      EXPECT_GE(forward, 0.0);
      EXPECT_GE(reverse, 0.0);
      EXPECT_GE(js, 0.0);
      EXPECT_LE(js / tt, std::log(2.0) + 1e-12);
    }
  }
}

// The large-T limit. With p = softmax(z / T) over V classes and z-bar the row mean,
//   p_j = exp(z_j/T) / sum_k exp(z_k/T) = (1 + (z_j - z-bar)/T + O(1/T^2)) / V.
// The KD gradient for row i (N kept rows, unit weights) is (T/N)(p_s - p_t), so
//   dL/ds_ij = (T/N) * ((s_ij - s-bar_i) - (t_ij - t-bar_i)) / (V T) + O(1/T)
//            = ((s_ij - t_ij) - mean_k (s_ik - t_ik)) / (N V) + O(1/T):
// matching the mean-centred logits, Hinton et al.'s section 2.1. The value follows from
// KL ~ (1/2) sum_j p_j (log p_t - log p_s)^2 ~ (1/(2 V T^2)) sum_j (d_j - d-bar)^2 with d = s - t:
//   L -> (1/N) sum_i (1/(2V)) ||d_i - d-bar_i||^2.
TEST(KdLoss, ApproachesMeanCentredLogitMatchingAsTemperatureGrows) {
  const Index n = 5, vocab = 8;
  const MatrixD s = gaussian_d(n, vocab, 20);
  const MatrixD t = gaussian_d(n, vocab, 21);
  MatrixD d = s - t;
  for (Index i = 0; i < n; ++i) d.row(i).array() -= d.row(i).mean();
  const MatrixD limit_gradient = d / static_cast<double>(n * vocab);
  const double limit_value = d.squaredNorm() / (2.0 * vocab * n);
  double previous_error = std::numeric_limits<double>::infinity();
  for (double temperature : {10.0, 100.0, 1000.0}) {
    const auto loss = distill::kd_loss(s, t, {.temperature = temperature});
    const double gradient_error = relative_error(loss.gradient, limit_gradient);
    const double value_error = std::abs(loss.value - limit_value) / limit_value;
    // Both deviations are O(|z| / T); logits here are O(1), so a few / T bounds them.
    EXPECT_LT(gradient_error, 3.0 / temperature) << "T " << temperature;
    EXPECT_LT(value_error, 3.0 / temperature) << "T " << temperature;
    // And the deviation shrinks about tenfold per tenfold T (first order in 1/T).
    EXPECT_LT(gradient_error, previous_error / 5.0);
    previous_error = gradient_error;
  }
}

TEST(KdLoss, IsStableForHugeAndVeryNegativeLogits) {
  MatrixD t(2, 3), s(2, 3);
  t << 1e4, -1e4, 0.0, -3e5, -3e5 + 1.0, -3e5 - 2.0;
  s << 1e4 - 1.0, -1e4, 5.0, 2e5, 2e5 + 2.0, 2e5;  // row 1 = row-shifted copy of nearby logits
  for (double temperature : {0.5, 1.0, 20.0}) {
    const auto loss = distill::kd_loss(s, t, {.temperature = temperature});
    EXPECT_TRUE(std::isfinite(loss.value));
    EXPECT_TRUE(loss.gradient.allFinite());
    // Shift invariance: subtracting each row's max changes nothing.
    MatrixD s0 = s, t0 = t;
    for (Index i = 0; i < 2; ++i) {
      s0.row(i).array() -= s.row(i).maxCoeff();
      t0.row(i).array() -= t.row(i).maxCoeff();
    }
    const auto reference = distill::kd_loss(s0, t0, {.temperature = temperature});
    EXPECT_NEAR(loss.value, reference.value, 1e-9 * std::max(1.0, reference.value));
    EXPECT_LT((loss.gradient - reference.gradient).cwiseAbs().maxCoeff(), 1e-9);
  }
  // log_softmax itself: exp of the result sums to one per row.
  const MatrixD logp = distill::log_softmax(t, 0.5);
  EXPECT_TRUE(logp.allFinite());
  for (Index i = 0; i < 2; ++i) EXPECT_NEAR(logp.row(i).unaryExpr(Exp{}).sum(), 1.0, 1e-12);
}

TEST(KdLoss, FloatInputsAgreeWithTheDoubleComputation) {
  const slim::Matrix s = slim::random::gaussian(4, 6, 30, 2.0);
  const slim::Matrix t = slim::random::gaussian(4, 6, 31, 2.0);
  const auto single = distill::kd_loss(s, t);
  const auto dbl = distill::kd_loss(s.cast<double>(), t.cast<double>());
  EXPECT_NEAR(single.value, dbl.value, 1e-12);
  EXPECT_LT((single.gradient.cast<double>() - dbl.gradient).cwiseAbs().maxCoeff(), 1e-6);
}

TEST(CrossEntropy, GradientsMatchFiniteDifferencesWithIgnoredLabelsAndWeights) {
  const MatrixD s = gaussian_d(6, 5, 40, 2.0);
  IndexVector labels(6);
  labels << 0, 4, -100, 2, 3, 1;
  const auto rows = padded_rows(6);
  const auto loss = distill::cross_entropy(s, labels, {}, rows);
  const MatrixD numeric = numeric_gradient(
      [&](const MatrixD& x) { return distill::cross_entropy(x, labels, {}, rows).value; }, s);
  EXPECT_LT(relative_error(loss.gradient, numeric), kGradientTolerance);
  EXPECT_EQ(loss.gradient.row(2).norm(), 0.0);  // ignore_index
  EXPECT_EQ(loss.gradient.row(1).norm(), 0.0);  // ignored by the mask
  // Oracle: weighted mean of -log p_y over rows 0, 3, 4 computed by direct exponentials.
  double expected = 0.0, total = 0.0;
  for (Index i : {0, 3, 4}) {
    const double p = std::exp(s(i, labels[i])) / s.row(i).unaryExpr(Exp{}).sum();
    expected -= rows.weight[i] * std::log(p);
    total += rows.weight[i];
  }
  EXPECT_NEAR(loss.value, expected / total, 1e-12);
}

TEST(SoftCrossEntropy, GradientMatchesAndEqualsKlPlusTeacherEntropy) {
  const MatrixD s = gaussian_d(5, 6, 50, 2.0);
  const MatrixD t = gaussian_d(5, 6, 51, 2.0);
  const MatrixD q = distill::log_softmax(t).unaryExpr(Exp{});
  const auto rows = padded_rows(5);
  const auto loss = distill::soft_cross_entropy(s, q, rows);
  const MatrixD numeric = numeric_gradient(
      [&](const MatrixD& x) { return distill::soft_cross_entropy(x, q, rows).value; }, s);
  EXPECT_LT(relative_error(loss.gradient, numeric), kGradientTolerance);
  // H(q, p_s) = KL(q || p_s) + H(q), and the gradients agree (the entropy does not depend on s).
  const auto kd = distill::kd_loss(s, t, {.temperature = 1.0}, rows);
  const VectorD f = rows.weight.cwiseProduct((VectorD(5) << 1, 0, 1, 1, 0).finished());
  double entropy = 0.0;
  for (Index i = 0; i < 5; ++i) {
    entropy -= f[i] * (q.row(i).array() * q.row(i).unaryExpr(Log{}).array()).sum();
  }
  entropy /= f.sum();
  EXPECT_NEAR(loss.value, kd.value + entropy, 1e-12);
  EXPECT_LT((loss.gradient - kd.gradient).cwiseAbs().maxCoeff(), 1e-12);
}

TEST(DistillationLoss, IsTheAlphaMixAndItsGradientMatches) {
  const MatrixD s = gaussian_d(6, 5, 60, 2.0);
  const MatrixD t = gaussian_d(6, 5, 61, 2.0);
  IndexVector labels(6);
  labels << 1, 1, 0, -100, 4, 2;
  const auto rows = padded_rows(6);
  for (double temperature : {0.5, 4.0, 20.0}) {
    const distill::DistillationOptions options{.temperature = temperature, .alpha = 0.3};
    const auto loss = distill::distillation_loss(s, t, labels, options, rows);
    const double ce = distill::cross_entropy(s, labels, {}, rows).value;
    const double kd = distill::kd_loss(s, t, {.temperature = temperature}, rows).value;
    EXPECT_NEAR(loss.value, 0.3 * ce + 0.7 * kd, 1e-12);
    const MatrixD numeric = numeric_gradient(
        [&](const MatrixD& x) {
          return distill::distillation_loss(x, t, labels, options, rows).value;
        },
        s);
    EXPECT_LT(relative_error(loss.gradient, numeric), kGradientTolerance) << "T " << temperature;
  }
}

TEST(HiddenLosses, MseAndCosineGradientsMatchFiniteDifferences) {
  const MatrixD s = gaussian_d(6, 8, 70);
  const MatrixD t = gaussian_d(6, 8, 71);
  const auto rows = padded_rows(6);
  const auto mse = distill::mse_loss(s, t, rows);
  EXPECT_LT(
      relative_error(mse.gradient,
                     numeric_gradient(
                         [&](const MatrixD& x) { return distill::mse_loss(x, t, rows).value; }, s)),
      kGradientTolerance);
  const auto cosine = distill::cosine_embedding_loss(s, t, rows);
  EXPECT_LT(
      relative_error(cosine.gradient, numeric_gradient(
                                          [&](const MatrixD& x) {
                                            return distill::cosine_embedding_loss(x, t, rows).value;
                                          },
                                          s)),
      kGradientTolerance);
  EXPECT_EQ(cosine.gradient.row(1).norm(), 0.0);
  // Unweighted MSE equals torch's mean over all elements.
  EXPECT_NEAR(distill::mse_loss(s, t).value, (s - t).squaredNorm() / static_cast<double>(s.size()),
              1e-12);
  // Cosine loss ignores scale and vanishes for parallel rows.
  EXPECT_NEAR(distill::cosine_embedding_loss(MatrixD(3.0 * t), t).value, 0.0, 1e-12);
  EXPECT_NEAR(distill::cosine_embedding_loss(MatrixD(-t), t).value, 2.0, 1e-12);
}

TEST(HiddenLosses, ProjectedMseGradientsForStudentAndProjectionMatchFiniteDifferences) {
  const MatrixD s = gaussian_d(6, 4, 80);
  const MatrixD w = gaussian_d(4, 7, 81);
  const MatrixD t = gaussian_d(6, 7, 82);
  const auto rows = padded_rows(6);
  const auto loss = distill::projected_mse_loss(s, w, t, rows);
  EXPECT_LT(
      relative_error(loss.gradient, numeric_gradient(
                                        [&](const MatrixD& x) {
                                          return distill::projected_mse_loss(x, w, t, rows).value;
                                        },
                                        s)),
      kGradientTolerance);
  EXPECT_LT(relative_error(loss.projection_gradient,
                           numeric_gradient(
                               [&](const MatrixD& x) {
                                 return distill::projected_mse_loss(s, x, t, rows).value;
                               },
                               w)),
            kGradientTolerance);
  EXPECT_NEAR(loss.value, distill::mse_loss(MatrixD(s * w), t, rows).value, 1e-12);
}

std::vector<MatrixD> heads(Index count, Index tokens, Index width, std::uint64_t seed) {
  std::vector<MatrixD> out;
  for (Index h = 0; h < count; ++h) {
    out.push_back(gaussian_d(tokens, width, seed + static_cast<std::uint64_t>(h)));
  }
  return out;
}

TEST(AttentionLosses, AttentionKlGradientsMatchFiniteDifferencesWithCausalAndPaddingMasks) {
  const Index tokens = 5;
  const auto sq = heads(2, tokens, 3, 90), sk = heads(2, tokens, 3, 95);
  const auto tq = heads(2, tokens, 6, 100), tk = heads(2, tokens, 6, 105);  // wider teacher heads
  distill::RowWeights rows;
  rows.ignore = {false, false, false, true, false};
  for (bool causal : {false, true}) {
    const distill::AttentionOptions options{.causal = causal};
    const auto loss = distill::attention_kl_loss(sq, sk, tq, tk, options, rows);
    EXPECT_GT(loss.value, 0.0);
    for (std::size_t h = 0; h < 2; ++h) {
      const MatrixD dq = numeric_gradient(
          [&](const MatrixD& x) {
            auto q = sq;
            q[h] = x;
            return distill::attention_kl_loss(q, sk, tq, tk, options, rows).value;
          },
          sq[h]);
      const MatrixD dk = numeric_gradient(
          [&](const MatrixD& x) {
            auto k = sk;
            k[h] = x;
            return distill::attention_kl_loss(sq, k, tq, tk, options, rows).value;
          },
          sk[h]);
      EXPECT_LT(relative_error(loss.query_gradient[h], dq), kGradientTolerance);
      EXPECT_LT(relative_error(loss.key_gradient[h], dk), kGradientTolerance);
      // The padding position is neither a query nor a key: its Q and K get no gradient.
      EXPECT_EQ(loss.query_gradient[h].row(3).norm(), 0.0);
      EXPECT_EQ(loss.key_gradient[h].row(3).norm(), 0.0);
    }
  }
  // Identical attention gives zero loss.
  EXPECT_NEAR(distill::attention_kl_loss(sq, sk, sq, sk).value, 0.0, 1e-14);
}

TEST(AttentionLosses, ValueRelationGradientMatchesFiniteDifferences) {
  const Index tokens = 6;
  const auto sv = heads(3, tokens, 4, 110);
  const auto tv = heads(3, tokens, 8, 120);
  const auto rows = padded_rows(tokens);
  for (bool causal : {false, true}) {
    const distill::AttentionOptions options{.causal = causal};
    const auto loss = distill::value_relation_loss(sv, tv, options, rows);
    EXPECT_GT(loss.value, 0.0);
    for (std::size_t h = 0; h < 3; ++h) {
      const MatrixD dv = numeric_gradient(
          [&](const MatrixD& x) {
            auto v = sv;
            v[h] = x;
            return distill::value_relation_loss(v, tv, options, rows).value;
          },
          sv[h]);
      EXPECT_LT(relative_error(loss.value_gradient[h], dv), kGradientTolerance);
    }
  }
}

// ---- bad input ----

TEST(LossBadInput, MismatchedStudentAndTeacherShapesAreShapeErrors) {
  const MatrixD a = gaussian_d(3, 4, 1), b = gaussian_d(3, 5, 2), c = gaussian_d(2, 4, 3);
  EXPECT_THROW(distill::kd_loss(a, b), slim::ShapeError);
  EXPECT_THROW(distill::kd_loss(a, c), slim::ShapeError);
  EXPECT_THROW(distill::soft_cross_entropy(a, b), slim::ShapeError);
  EXPECT_THROW(distill::mse_loss(a, b), slim::ShapeError);
  EXPECT_THROW(distill::cosine_embedding_loss(a, c), slim::ShapeError);
  EXPECT_THROW(distill::projected_mse_loss(a, gaussian_d(5, 4, 4), a), slim::ShapeError);
  EXPECT_THROW(distill::projected_mse_loss(a, gaussian_d(4, 3, 4), a), slim::ShapeError);
  EXPECT_THROW(distill::projected_mse_loss(a, gaussian_d(4, 4, 4), c), slim::ShapeError);
  IndexVector labels(2);
  labels << 0, 1;
  EXPECT_THROW(distill::cross_entropy(a, labels), slim::ShapeError);
  EXPECT_THROW(distill::distillation_loss(a, b, labels), slim::ShapeError);
  EXPECT_THROW(distill::distillation_loss(a, a, labels, {.alpha = 0.0}), slim::ShapeError);
  EXPECT_THROW(distill::attention_kl_loss(heads(2, 4, 3, 1), heads(2, 4, 3, 2), heads(1, 4, 3, 3),
                                          heads(1, 4, 3, 4)),
               slim::ShapeError);
  EXPECT_THROW(distill::attention_kl_loss(heads(1, 4, 3, 1), heads(1, 4, 2, 2), heads(1, 4, 3, 3),
                                          heads(1, 4, 3, 4)),
               slim::ShapeError);
  EXPECT_THROW(distill::value_relation_loss(heads(1, 4, 3, 1), heads(1, 5, 3, 2)),
               slim::ShapeError);
  EXPECT_THROW(distill::value_relation_loss(std::vector<MatrixD>{}, std::vector<MatrixD>{}),
               slim::ArgumentError);
  distill::RowWeights short_weights;
  short_weights.weight = VectorD::Ones(2);
  EXPECT_THROW(distill::kd_loss(a, a, {}, short_weights), slim::ShapeError);
  distill::RowWeights short_mask;
  short_mask.ignore = {false};
  EXPECT_THROW(distill::mse_loss(a, a, short_mask), slim::ShapeError);
  EXPECT_THROW(distill::kd_loss(MatrixD(0, 4), MatrixD(0, 4)), slim::ShapeError);
}

TEST(LossBadInput, NonPositiveTemperatureIsAnArgumentError) {
  const MatrixD a = gaussian_d(3, 4, 1);
  IndexVector labels = IndexVector::Zero(3);
  for (double temperature : {0.0, -1.0, std::numeric_limits<double>::quiet_NaN(),
                             std::numeric_limits<double>::infinity()}) {
    EXPECT_THROW(distill::kd_loss(a, a, {.temperature = temperature}), slim::ArgumentError);
    EXPECT_THROW(distill::distillation_loss(a, a, labels, {.temperature = temperature}),
                 slim::ArgumentError);
    EXPECT_THROW(distill::log_softmax(a, temperature), slim::ArgumentError);
  }
}

TEST(LossBadInput, AlphaOutsideTheUnitIntervalIsAnArgumentError) {
  const MatrixD a = gaussian_d(3, 4, 1);
  IndexVector labels = IndexVector::Zero(3);
  EXPECT_THROW(distill::distillation_loss(a, a, labels, {.alpha = -0.1}), slim::ArgumentError);
  EXPECT_THROW(distill::distillation_loss(a, a, labels, {.alpha = 1.5}), slim::ArgumentError);
  EXPECT_THROW(
      distill::distillation_loss(a, a, labels, {.alpha = std::numeric_limits<double>::quiet_NaN()}),
      slim::ArgumentError);
  EXPECT_NO_THROW(distill::distillation_loss(a, a, labels, {.alpha = 1.0}));
  EXPECT_NO_THROW(distill::distillation_loss(a, a, labels, {.alpha = 0.0}));
}

TEST(LossBadInput, LabelsOutOfRangeAreArgumentErrors) {
  const MatrixD a = gaussian_d(3, 4, 1);
  IndexVector labels(3);
  labels << 0, 4, 1;
  EXPECT_THROW(distill::cross_entropy(a, labels), slim::ArgumentError);
  labels << 0, -1, 1;
  EXPECT_THROW(distill::cross_entropy(a, labels), slim::ArgumentError);
  EXPECT_THROW(distill::distillation_loss(a, a, labels), slim::ArgumentError);
}

TEST(LossBadInput, AllRowsMaskedIsAnArgumentError) {
  const MatrixD a = gaussian_d(3, 4, 1);
  const MatrixD b = gaussian_d(3, 4, 2);
  distill::RowWeights masked;
  masked.ignore = {true, true, true};
  distill::RowWeights zero_weight;
  zero_weight.weight = VectorD::Zero(3);
  for (const auto& rows : {masked, zero_weight}) {
    EXPECT_THROW(distill::kd_loss(a, b, {}, rows), slim::ArgumentError);
    EXPECT_THROW(distill::mse_loss(a, b, rows), slim::ArgumentError);
    EXPECT_THROW(distill::cosine_embedding_loss(a, b, rows), slim::ArgumentError);
    EXPECT_THROW(distill::projected_mse_loss(a, MatrixD::Identity(4, 4), b, rows),
                 slim::ArgumentError);
    EXPECT_THROW(distill::attention_kl_loss(heads(1, 3, 2, 1), heads(1, 3, 2, 2), heads(1, 3, 2, 3),
                                            heads(1, 3, 2, 4), {}, rows),
                 slim::ArgumentError);
    EXPECT_THROW(distill::value_relation_loss(heads(1, 3, 2, 1), heads(1, 3, 2, 2), {}, rows),
                 slim::ArgumentError);
  }
  IndexVector all_ignored = IndexVector::Constant(3, -100);
  EXPECT_THROW(distill::cross_entropy(a, all_ignored), slim::ArgumentError);
}

TEST(LossBadInput, NegativeWeightsBadTargetsAndNonFiniteInputsAreTypedErrors) {
  const MatrixD a = gaussian_d(3, 4, 1);
  distill::RowWeights negative;
  negative.weight = VectorD::Ones(3);
  negative.weight[1] = -1.0;
  EXPECT_THROW(distill::kd_loss(a, a, {}, negative), slim::ArgumentError);
  EXPECT_THROW(distill::soft_cross_entropy(a, a), slim::ArgumentError);  // not probabilities
  MatrixD nan_logits = a;
  nan_logits(1, 2) = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(distill::kd_loss(nan_logits, a), slim::NumericalError);
  EXPECT_THROW(distill::kd_loss(a, nan_logits), slim::NumericalError);
  EXPECT_THROW(distill::mse_loss(a, nan_logits), slim::NumericalError);
  MatrixD zero_row = a;
  zero_row.row(0).setZero();
  EXPECT_THROW(distill::cosine_embedding_loss(zero_row, a), slim::NumericalError);
  distill::RowWeights skip_first;
  skip_first.ignore = {true, false, false};
  EXPECT_NO_THROW(distill::cosine_embedding_loss(zero_row, a, skip_first));
}

}  // namespace

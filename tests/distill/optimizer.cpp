#include <slim/distill/optimizer.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace {

using slim::Matrix;
using slim::distill::AdamW;
using slim::distill::AdamWOptions;
using slim::distill::Parameter;
using slim::distill::Sgd;
using slim::distill::SgdOptions;

Matrix row(std::vector<float> values) {
  Matrix m(1, static_cast<slim::Index>(values.size()));
  for (std::size_t i = 0; i < values.size(); ++i) m(0, static_cast<slim::Index>(i)) = values[i];
  return m;
}

TEST(AdamW, FirstTwoStepsMatchHandComputation) {
  // Defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01.
  Matrix w = row({1.0f, -2.0f});
  Matrix g = row({0.5f, 3.0f});
  AdamW adam;
  std::vector<Parameter> params{{&w, &g}};
  adam.step(params);
  // Step 1: m = 0.1 g, v = 0.001 g^2; m^ = g, v^ = g^2, so the step is lr * g / (|g| + eps).
  // w0 = 1:  1 * (1 - 1e-5) - 1e-3 * 0.5 / (0.5 + 1e-8) = 0.99999 - 0.00099999998 = 0.99899000002
  // w1 = -2: -2 * (1 - 1e-5) - 1e-3 * 3 / (3 + 1e-8)   = -1.99998 - 0.001 = -2.00098
  EXPECT_NEAR(w(0, 0), 0.99899000002, 1e-6);
  EXPECT_NEAR(w(0, 1), -2.00098, 1e-6);

  g = row({-1.0f, 1.0f});
  adam.step(params);
  // Step 2: m = 0.9 * 0.1 g1 + 0.1 g2, v = 0.999 * 0.001 g1^2 + 0.001 g2^2,
  // bias corrections 1 - 0.9^2 = 0.19 and 1 - 0.999^2 = 0.001999.
  // w0: m = 0.045 - 0.1 = -0.055, v = 0.00024975 + 0.001 = 0.00124975
  //     m^ = -0.289473684, sqrt(v^) = sqrt(0.625187594) = 0.790688683
  //     update = 1e-3 * -0.289473684 / 0.790688683 = -3.66101e-4
  //     w = 0.99899000002 * (1 - 1e-5) + 3.66101e-4 = 0.998980010 + 0.000366101 = 0.999346111
  // w1: m = 0.27 + 0.1 = 0.37, v = 0.008991 + 0.001 = 0.009991
  //     m^ = 1.947368421, sqrt(v^) = sqrt(4.997998999) = 2.235620495
  //     update = 1e-3 * 1.947368421 / 2.235620495 = 8.71064e-4
  //     w = -2.00098 * (1 - 1e-5) - 8.71064e-4 = -2.00096000 - 0.000871064 = -2.001831054
  EXPECT_NEAR(w(0, 0), 0.999346111, 2e-6);
  EXPECT_NEAR(w(0, 1), -2.001831054, 2e-6);
  EXPECT_EQ(adam.steps(), 2);
}

TEST(AdamW, WeightDecayIsDecoupledFromTheGradient) {
  // With a zero gradient the moments stay zero and only the decay p *= 1 - lr * wd acts (an L2
  // penalty folded into the gradient would instead be normalised by sqrt(v) into a step of ~lr).
  Matrix w = row({4.0f});
  Matrix g = row({0.0f});
  AdamW adam({.lr = 0.1, .weight_decay = 0.5});
  std::vector<Parameter> params{{&w, &g}};
  adam.step(params);
  EXPECT_NEAR(w(0, 0), 4.0 * (1.0 - 0.05), 1e-6);
}

TEST(AdamW, MinimisesAQuadratic) {
  Matrix w = row({3.0f, -1.0f, 0.5f});
  const Matrix target = row({-1.0f, 2.0f, 0.0f});
  Matrix g(1, 3);
  AdamW adam({.lr = 0.05, .weight_decay = 0.0});
  std::vector<Parameter> params{{&w, &g}};
  for (int t = 0; t < 2000; ++t) {
    g = 2.0f * (w - target);
    adam.step(params);
  }
  EXPECT_LT((w - target).norm(), 1e-2);
}

TEST(Sgd, MomentumFollowsItsRecurrence) {
  const double lr = 0.1;
  const double mu = 0.9;
  Matrix w = row({1.0f, 2.0f});
  Matrix g(1, 2);
  Sgd sgd({.lr = lr, .momentum = mu});
  std::vector<Parameter> params{{&w, &g}};
  double p[2] = {1.0, 2.0};
  double b[2] = {0.0, 0.0};
  const double grads[4][2] = {{1.0, -1.0}, {0.5, 2.0}, {-3.0, 0.25}, {2.0, 2.0}};
  for (int t = 0; t < 4; ++t) {
    g = row({static_cast<float>(grads[t][0]), static_cast<float>(grads[t][1])});
    sgd.step(params);
    for (int i = 0; i < 2; ++i) {
      b[i] = t == 0 ? grads[t][i] : mu * b[i] + grads[t][i];
      p[i] -= lr * b[i];
      EXPECT_NEAR(w(0, i), p[i], 1e-5) << "step " << t << " coordinate " << i;
    }
  }
}

TEST(Sgd, NesterovAndWeightDecayFollowPyTorchsRecurrence) {
  const double lr = 0.05, mu = 0.8, wd = 0.1;
  Matrix w = row({1.5f});
  Matrix g(1, 1);
  Sgd sgd({.lr = lr, .momentum = mu, .weight_decay = wd, .nesterov = true});
  std::vector<Parameter> params{{&w, &g}};
  double p = 1.5, b = 0.0;
  const double grads[3] = {1.0, -2.0, 0.5};
  for (int t = 0; t < 3; ++t) {
    g(0, 0) = static_cast<float>(grads[t]);
    sgd.step(params);
    const double d = grads[t] + wd * p;
    b = t == 0 ? d : mu * b + d;
    p -= lr * (d + mu * b);
    EXPECT_NEAR(w(0, 0), p, 1e-5) << "step " << t;
  }
}

TEST(ClipGradientNorm, ReturnsTheGlobalNormAndScalesOnlyWhenAbove) {
  Matrix a = row({3.0f, 0.0f});
  Matrix b = row({4.0f});
  Matrix va(1, 2), vb(1, 1);
  std::vector<Parameter> params{{&va, &a}, {&vb, &b}};
  EXPECT_NEAR(slim::distill::clip_gradient_norm(params, 10.0), 5.0, 1e-6);
  EXPECT_FLOAT_EQ(a(0, 0), 3.0f);  // below the limit: unchanged
  EXPECT_NEAR(slim::distill::clip_gradient_norm(params, 1.0), 5.0, 1e-6);
  const double clipped = std::sqrt(a.squaredNorm() + b.squaredNorm());
  EXPECT_NEAR(clipped, 1.0, 1e-5);
  EXPECT_NEAR(a(0, 0) / b(0, 0), 0.75, 1e-6);  // direction kept
}

TEST(Schedules, CosineWarmsUpLinearlyThenDecaysAlongAHalfCosine) {
  const slim::distill::CosineSchedule s{
      .base_lr = 1.0, .total_steps = 110, .warmup_steps = 10, .min_lr = 0.1};
  EXPECT_DOUBLE_EQ(s(0), 0.0);
  EXPECT_DOUBLE_EQ(s(5), 0.5);
  EXPECT_DOUBLE_EQ(s(10), 1.0);
  EXPECT_NEAR(s(60), 0.1 + 0.9 * 0.5, 1e-12);  // halfway: cos(pi/2) = 0
  EXPECT_NEAR(s(35), 0.1 + 0.9 * 0.5 * (1.0 + std::cos(3.14159265358979 / 4)), 1e-12);
  EXPECT_DOUBLE_EQ(s(110), 0.1);
  EXPECT_DOUBLE_EQ(s(500), 0.1);
  for (int t = 10; t < 110; ++t) EXPECT_LE(s(t + 1), s(t));
}

TEST(Schedules, LinearWarmupRisesThenDecaysToZeroOrHolds) {
  const slim::distill::LinearWarmupSchedule decay{
      .base_lr = 2.0, .warmup_steps = 4, .total_steps = 12};
  EXPECT_DOUBLE_EQ(decay(0), 0.0);
  EXPECT_DOUBLE_EQ(decay(2), 1.0);
  EXPECT_DOUBLE_EQ(decay(4), 2.0);
  EXPECT_DOUBLE_EQ(decay(8), 1.0);
  EXPECT_DOUBLE_EQ(decay(12), 0.0);
  const slim::distill::LinearWarmupSchedule hold{.base_lr = 2.0, .warmup_steps = 4};
  EXPECT_DOUBLE_EQ(hold(1000), 2.0);
}

TEST(OptimizerBadInput, GradientOfAnotherShapeIsAShapeError) {
  Matrix w(2, 2), g(2, 3);
  w.setZero();
  g.setZero();
  AdamW adam;
  Sgd sgd;
  std::vector<Parameter> params{{&w, &g}};
  EXPECT_THROW(adam.step(params), slim::ShapeError);
  EXPECT_THROW(sgd.step(params), slim::ShapeError);
}

TEST(OptimizerBadInput, ChangingTheParameterListBetweenStepsIsAShapeError) {
  Matrix w = row({1.0f}), g = row({1.0f});
  Matrix w2 = row({1.0f}), g2 = row({1.0f});
  AdamW adam;
  adam.step({{&w, &g}});
  EXPECT_THROW(adam.step({{&w, &g}, {&w2, &g2}}), slim::ShapeError);
  adam.reset();
  EXPECT_NO_THROW(adam.step({{&w, &g}, {&w2, &g2}}));
}

TEST(OptimizerBadInput, InvalidHyperparametersAreArgumentErrors) {
  EXPECT_THROW(AdamW({.lr = -1.0}), slim::ArgumentError);
  EXPECT_THROW(AdamW({.beta1 = 1.0}), slim::ArgumentError);
  EXPECT_THROW(AdamW({.beta2 = -0.1}), slim::ArgumentError);
  EXPECT_THROW(AdamW({.eps = 0.0}), slim::ArgumentError);
  EXPECT_THROW(Sgd({.momentum = -0.5}), slim::ArgumentError);
  EXPECT_THROW(Sgd({.momentum = 0.0, .nesterov = true}), slim::ArgumentError);
  Matrix w = row({1.0f}), g = row({1.0f});
  EXPECT_THROW(AdamW().step({{&w, &g}}, -1e-3), slim::ArgumentError);
  EXPECT_THROW(AdamW().step({{&w, nullptr}}), slim::ArgumentError);
  EXPECT_THROW(slim::distill::clip_gradient_norm({{&w, &g}}, 0.0), slim::ArgumentError);
  g(0, 0) = std::nanf("");
  EXPECT_THROW(slim::distill::clip_gradient_norm({{&w, &g}}, 1.0), slim::NumericalError);
  EXPECT_THROW((slim::distill::CosineSchedule{.total_steps = 0})(0), slim::ArgumentError);
  EXPECT_THROW((slim::distill::CosineSchedule{.total_steps = 5, .warmup_steps = 6})(0),
               slim::ArgumentError);
  EXPECT_THROW((slim::distill::LinearWarmupSchedule{.warmup_steps = -1})(0), slim::ArgumentError);
}

}  // namespace

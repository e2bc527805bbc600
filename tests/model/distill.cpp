// Whole-model knowledge distillation: the KD gradient through the decoder's backward pass against
// central finite differences, recovery of a structurally pruned student towards its teacher on the
// trained test model, fixed zeros, and bad input.
#include <slim/model.hpp>
#include <slim/pipeline/model_methods.hpp>

#include "../support/reference_model.hpp"
#include "../support/tiny_model.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>

namespace {

using slim::Index;
using slim::IndexVector;
using slim::Matrix;
using slim::model::Config;
using slim::model::DistillOptions;
using slim::model::TokenBatch;
using slim::model::Transformer;
using slim::model::Weights;

Config tiny_config() { return slim::test::tiny_config(false); }

using slim::test::lively_weights;
using slim::test::random_tokens;

// The loss distillation_loss_and_gradient differentiates, written out from the forward logits:
// the mean over sequences of DistilBERT's alpha * CE + (1 - alpha) * T^2 KL.
double distillation_loss(const Transformer& student, const Transformer& teacher,
                         const TokenBatch& in, const TokenBatch& tg, const DistillOptions& o) {
  const Matrix s = student.forward(in);
  const Matrix t = teacher.forward(in);
  double total = 0.0;
  for (Index b = 0; b < in.rows(); ++b) {
    IndexVector labels(in.cols());
    for (Index i = 0; i < in.cols(); ++i) labels(i) = tg(b, i);
    total += slim::distill::distillation_loss(s.middleRows(b * in.cols(), in.cols()),
                                              t.middleRows(b * in.cols(), in.cols()), labels,
                                              {.temperature = o.temperature, .alpha = o.alpha})
                 .value;
  }
  return total / static_cast<double>(in.rows());
}

TEST(ModelDistillation, GradientMatchesFiniteDifferences) {
  const Config c = tiny_config();
  Transformer student(lively_weights(c, 3));
  const Transformer teacher(lively_weights(c, 40));
  const TokenBatch in = random_tokens(3, 6, c.vocab_size, 5);
  const TokenBatch tg = random_tokens(3, 6, c.vocab_size, 6);
  DistillOptions o;
  o.temperature = 1.5;
  o.alpha = 0.3;
  Weights grad = Weights::zeros(c);
  const double value =
      slim::model::distillation_loss_and_gradient(student, teacher, in, tg, grad, o, 2);
  EXPECT_NEAR(value, distillation_loss(student, teacher, in, tg, o), 1e-5 * std::abs(value));

  std::map<std::string, const float*> analytic;
  grad.for_each_parameter(
      [&](const std::string& name, const auto& p) { analytic[name] = p.data(); });
  // The discrepancy scales as eps^2 (truncation: 3.6e-4, 3.6e-3, 2.5e-2 for the embedding at eps
  // 3e-3, 1e-2, 3e-2), so the step is small enough that float round-off is not yet in the way.
  const float eps = 3e-3f;
  int checked = 0;
  student.weights().for_each_parameter([&](const std::string& name, auto p) {
    double diff2 = 0.0, norm2 = 0.0;
    const Index stride = std::max<Index>(1, p.size() / 19);
    for (Index i = 0; i < p.size(); i += stride) {
      const float saved = p.data()[i];
      p.data()[i] = saved + eps;
      const double up = distillation_loss(student, teacher, in, tg, o);
      p.data()[i] = saved - eps;
      const double down = distillation_loss(student, teacher, in, tg, o);
      p.data()[i] = saved;
      const double fd = (up - down) / (2.0 * eps);
      const double an = analytic[name][i];
      diff2 += (fd - an) * (fd - an);
      norm2 += an * an;
    }
    ASSERT_GT(norm2, 0.0) << name;
    EXPECT_LT(std::sqrt(diff2 / norm2), 3e-3) << name;
    ++checked;
  });
  EXPECT_EQ(checked, 1 + 2 * 9 + 1 + 1);
}

TEST(ModelDistillation, PureKdOfAStudentEqualToItsTeacherHasZeroLossAndGradient) {
  const Config c = tiny_config();
  const Transformer teacher(lively_weights(c, 9));
  const Transformer student = teacher;
  const TokenBatch in = random_tokens(2, 8, c.vocab_size, 1);
  DistillOptions o;
  o.alpha = 0.0;
  Weights grad = Weights::zeros(c);
  const double value =
      slim::model::distillation_loss_and_gradient(student, teacher, in, in, grad, o, 1);
  EXPECT_NEAR(value, 0.0, 1e-6);
  double largest = 0.0;
  grad.for_each_parameter([&](const std::string&, const auto& p) {
    largest = std::max(largest, static_cast<double>(p.cwiseAbs().maxCoeff()));
  });
  EXPECT_LT(largest, 1e-5);
}

// Minitron's recipe on the trained test model: prune half the MLP neurons, then distill from the
// original; the student's KL divergence from the teacher on validation text must fall.
TEST(ModelDistillation, RecoversPartOfTheStructuredPruningLossOnTheTestModel) {
  const Transformer& teacher = slim::test::reference_model();
  const auto& corpus = slim::test::reference_corpus();
  const auto calibration = slim::test::reference_calibration(8);
  Transformer student = slim::pipeline::prune_mlp_width(teacher, calibration.inputs, 0.5).model;
  slim::model::EvalOptions eval;
  eval.max_windows = 16;
  const auto before = slim::model::compare(teacher, student, corpus.validation_tokens, eval);
  DistillOptions o;
  o.train.steps = 40;
  o.train.batch_size = 8;
  o.train.warmup_steps = 4;
  o.train.threads = 1;
  slim::model::distill(student, teacher, corpus.train_tokens, o);
  const auto after = slim::model::compare(teacher, student, corpus.validation_tokens, eval);
  EXPECT_LT(after.mean_kl, 0.8 * before.mean_kl)
      << "KL before " << before.mean_kl << ", after " << after.mean_kl;
  EXPECT_GT(after.top1_agreement, before.top1_agreement);
}

TEST(ModelDistillation, KeepsZeroWeightsZeroAndMovesTheOthers) {
  const Config c = tiny_config();
  const Transformer teacher(lively_weights(c, 21));
  Weights w = lively_weights(c, 22);
  for (Index i = 0; i < w.layers[0].w1.size(); i += 2) w.layers[0].w1.data()[i] = 0.0f;
  const Matrix start = w.layers[0].w1;
  Transformer student(std::move(w));
  std::vector<std::int32_t> stream(400);
  slim::random::Generator gen(4);
  for (auto& t : stream) t = static_cast<std::int32_t>(gen.below(11));
  DistillOptions o;
  o.train.steps = 5;
  o.train.batch_size = 2;
  o.train.warmup_steps = 1;
  slim::model::distill(student, teacher, stream, o);
  const Matrix& end = student.weights().layers[0].w1;
  for (Index i = 0; i < end.size(); ++i) {
    if (i % 2 == 0) {
      EXPECT_EQ(end.data()[i], 0.0f) << i;
    } else {
      EXPECT_NE(end.data()[i], start.data()[i]) << i;
    }
  }
}

TEST(ModelDistillation, BadInputThrowsTypedErrors) {
  const Config c = tiny_config();
  const Transformer teacher(lively_weights(c, 1));
  Transformer student(lively_weights(c, 2));
  std::vector<std::int32_t> stream(200, 3);
  DistillOptions o;
  o.train.steps = 1;
  o.train.batch_size = 1;
  o.train.warmup_steps = 0;
  DistillOptions bad = o;
  bad.alpha = 1.5;
  EXPECT_THROW(slim::model::distill(student, teacher, stream, bad), slim::ArgumentError);
  bad = o;
  bad.temperature = 0.0;
  EXPECT_THROW(slim::model::distill(student, teacher, stream, bad), slim::ArgumentError);
  bad = o;
  bad.train.steps = 0;
  EXPECT_THROW(slim::model::distill(student, teacher, stream, bad), slim::ArgumentError);
  Config other = c;
  other.vocab_size = 12;
  const Transformer wrong_vocab(lively_weights(other, 3));
  EXPECT_THROW(slim::model::distill(student, wrong_vocab, stream, o), slim::ShapeError);
  student.replace("layers.0.attention.wq", std::make_shared<slim::DenseLinear>(
                                               student.linear_weight("layers.0.attention.wq")));
  EXPECT_THROW(slim::model::distill(student, teacher, stream, o), slim::ArgumentError);
}

}  // namespace

// The reference decoder on tiny random configs: gradients against central finite differences,
// the KV-cache decode against the full forward, hooks, layer replacement and bad input.
#include <slim/model.hpp>

#include "../support/tiny_model.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

using slim::Index;
using slim::Matrix;
using slim::model::Config;
using slim::model::TokenBatch;
using slim::model::Transformer;
using slim::model::Weights;

using slim::test::lively_weights;
using slim::test::random_tokens;
using slim::test::tiny_config;

// Central differences of the mean loss for a spread of entries of every parameter.
void expect_gradients_match_finite_differences(bool shared) {
  const Config c = tiny_config(shared);
  Transformer model(lively_weights(c, 7));
  const TokenBatch in = random_tokens(2, 6, c.vocab_size, 11);
  const TokenBatch tg = random_tokens(2, 6, c.vocab_size, 12);
  Weights grad = Weights::zeros(c);
  model.loss_and_gradient(in, tg, grad);

  std::map<std::string, const float*> analytic;
  grad.for_each_parameter(
      [&](const std::string& name, const auto& p) { analytic[name] = p.data(); });
  const float eps = 1e-2f;
  int checked_kinds = 0;
  model.weights().for_each_parameter([&](const std::string& name, auto p) {
    double diff2 = 0.0, norm2 = 0.0;
    const Index stride = std::max<Index>(1, p.size() / 23);
    for (Index i = 0; i < p.size(); i += stride) {
      const float saved = p.data()[i];
      p.data()[i] = saved + eps;
      const double up = model.loss(in, tg);
      p.data()[i] = saved - eps;
      const double down = model.loss(in, tg);
      p.data()[i] = saved;
      const double fd = (up - down) / (2.0 * eps);
      const double an = analytic[name][i];
      diff2 += (fd - an) * (fd - an);
      norm2 += an * an;
    }
    ASSERT_GT(norm2, 0.0) << name;
    EXPECT_LT(std::sqrt(diff2 / norm2), 3e-3) << name;
    ++checked_kinds;
  });
  EXPECT_EQ(checked_kinds, 1 + 2 * 9 + 1 + (shared ? 0 : 1));
}

TEST(Transformer, GradientsMatchFiniteDifferencesWithTiedClassifier) {
  expect_gradients_match_finite_differences(true);
}

TEST(Transformer, GradientsMatchFiniteDifferencesWithUntiedClassifier) {
  expect_gradients_match_finite_differences(false);
}

TEST(Transformer, LossIsMeanCrossEntropyOfForwardLogits) {
  const Config c = tiny_config(false);
  Transformer model(lively_weights(c, 3));
  const TokenBatch in = random_tokens(3, 5, c.vocab_size, 4);
  const TokenBatch tg = random_tokens(3, 5, c.vocab_size, 5);
  const Matrix logits = model.forward(in);
  double sum = 0.0;
  for (Index n = 0; n < logits.rows(); ++n) {
    double z = 0.0;
    for (Index v = 0; v < logits.cols(); ++v) z += std::exp(static_cast<double>(logits(n, v)));
    sum += std::log(z) - logits(n, tg.data()[n]);
  }
  EXPECT_NEAR(model.loss(in, tg), sum / static_cast<double>(in.size()), 1e-5);
}

TEST(Transformer, GradientIsDeterministicAndIndependentOfBatchSplit) {
  const Config c = tiny_config(true);
  Transformer model(lively_weights(c, 5));
  const TokenBatch in = random_tokens(4, 8, c.vocab_size, 6);
  const TokenBatch tg = random_tokens(4, 8, c.vocab_size, 7);
  Weights a = Weights::zeros(c), b = Weights::zeros(c);
  const double la = model.loss_and_gradient(in, tg, a);
  const double lb = model.loss_and_gradient(in, tg, b);
  EXPECT_EQ(la, lb);
  EXPECT_EQ(a.layers[1].wq, b.layers[1].wq);
  EXPECT_EQ(a.token_embedding, b.token_embedding);
  EXPECT_NEAR(la, model.loss(in, tg), 1e-5);
}

TEST(Transformer, GradientIsBitwiseTheSameForEveryThreadCount) {
  // 11 sequences: 8 shards of 1 or 2 sequences, which 1, 2 or 3 threads share unevenly. The wide
  // model's products are large enough that Eigen would split them over threads itself, with a
  // depth blocking that depends on how many threads it uses (w2 has 512 inputs).
  Config wide{.dim = 32,
              .hidden_dim = 512,
              .n_layers = 1,
              .n_heads = 2,
              .n_kv_heads = 2,
              .vocab_size = 258,
              .seq_len = 64,
              .shared_classifier = true};
  for (const Config& c : {tiny_config(false), wide}) {
    Transformer model(lively_weights(c, 11));
    const TokenBatch in = random_tokens(11, c.seq_len, c.vocab_size, 12);
    const TokenBatch tg = random_tokens(11, c.seq_len, c.vocab_size, 13);
    Weights one = Weights::zeros(c);
    const double loss_one = model.loss_and_gradient(in, tg, one, 1);
    std::vector<Matrix> expected;
    one.for_each_parameter([&](const std::string&, const auto& p) { expected.push_back(p); });
    for (int threads : {2, 3}) {
      Weights g = Weights::zeros(c);
      EXPECT_EQ(model.loss_and_gradient(in, tg, g, threads), loss_one) << threads << " threads";
      std::size_t i = 0;
      g.for_each_parameter([&](const std::string& name, const auto& p) {
        EXPECT_EQ(Matrix(p), expected[i++]) << name << ", " << threads << " threads, dim " << c.dim;
      });
    }
  }
}

TEST(Transformer, PerSampleGradientsAverageToTheBatchGradient) {
  const Config c = tiny_config(false);
  Transformer model(lively_weights(c, 8));
  const TokenBatch in = random_tokens(3, 6, c.vocab_size, 9);
  const TokenBatch tg = random_tokens(3, 6, c.vocab_size, 10);
  const Matrix per = model.per_sample_gradients(in, tg, "layers.1.feed_forward.w1");
  ASSERT_EQ(per.rows(), 3);
  ASSERT_EQ(per.cols(), c.hidden_dim * c.dim);
  Weights g = Weights::zeros(c);
  model.loss_and_gradient(in, tg, g);
  const Matrix mean = per.colwise().mean();
  const Matrix expected = Eigen::Map<const Matrix>(g.layers[1].w1.data(), 1, per.cols());
  EXPECT_LT((mean - expected).norm(), 1e-5 * (1.0 + expected.norm()));
  // Each row is the gradient of that one sequence alone.
  Weights g0 = Weights::zeros(c);
  model.loss_and_gradient(in.topRows(1), tg.topRows(1), g0);
  const Matrix first = Eigen::Map<const Matrix>(g0.layers[1].w1.data(), 1, per.cols());
  EXPECT_LT((per.row(0) - first).norm(), 1e-5 * (1.0 + first.norm()));
}

TEST(Transformer, DecodeWithKvCacheGivesTheFullForwardLogits) {
  for (bool shared : {true, false}) {
    const Config c = tiny_config(shared);
    Transformer model(lively_weights(c, 13));
    const TokenBatch seq = random_tokens(1, c.seq_len, c.vocab_size, 14);
    const Matrix full = model.forward(seq);
    auto state = model.start();
    for (Index t = 0; t < c.seq_len; ++t) {
      const slim::Vector step = model.decode(state, seq(0, t));
      EXPECT_LT((step.transpose() - full.row(t)).norm(), 1e-4 * (1.0 + full.row(t).norm()))
          << "position " << t;
    }
    EXPECT_EQ(state.position, c.seq_len);
  }
}

TEST(Transformer, RowsOfABatchAreIndependentSequences) {
  const Config c = tiny_config(true);
  Transformer model(lively_weights(c, 15));
  const TokenBatch batch = random_tokens(3, 7, c.vocab_size, 16);
  const Matrix all = model.forward(batch);
  for (Index b = 0; b < 3; ++b) {
    const Matrix one = model.forward(TokenBatch(batch.row(b)));
    EXPECT_LT((all.middleRows(b * 7, 7) - one).norm(), 1e-5 * (1.0 + one.norm()));
  }
}

TEST(Transformer, LaterTokensDoNotChangeEarlierLogits) {
  const Config c = tiny_config(true);
  Transformer model(lively_weights(c, 17));
  TokenBatch a = random_tokens(1, 6, c.vocab_size, 18);
  TokenBatch b = a;
  b(0, 5) = (a(0, 5) + 1) % static_cast<std::int32_t>(c.vocab_size);
  const Matrix la = model.forward(a), lb = model.forward(b);
  EXPECT_LT((la.topRows(5) - lb.topRows(5)).norm(), 1e-6);
  EXPECT_GT((la.row(5) - lb.row(5)).norm(), 1e-3);
}

TEST(Transformer, HooksSeeEveryLinearLayerInputWithItsShape) {
  const Config c = tiny_config(false);
  Transformer model(lively_weights(c, 19));
  std::vector<std::string> seen;
  std::map<std::string, std::pair<Index, Index>> shapes;
  model.set_hook([&](const std::string& name, const Eigen::Ref<const Matrix>& x) {
    seen.push_back(name);
    shapes[name] = {x.rows(), x.cols()};
  });
  model.forward(random_tokens(2, 5, c.vocab_size, 20));
  EXPECT_EQ(seen, model.linear_names());
  ASSERT_EQ(seen.size(), static_cast<std::size_t>(7 * c.n_layers + 1));
  for (const auto& name : seen) {
    EXPECT_EQ(shapes[name].first, 10) << name;
    EXPECT_EQ(shapes[name].second, model.linear_weight(name).cols()) << name;
  }
  EXPECT_EQ(shapes["layers.1.feed_forward.w2"].second, c.hidden_dim);
  EXPECT_EQ(shapes["layers.0.attention.wq"].second, c.dim);
  seen.clear();
  auto state = model.start();
  model.decode(state, 3);
  EXPECT_EQ(seen.size(), model.linear_names().size());
  EXPECT_EQ(shapes["output"].first, 1);
  model.clear_hook();
  seen.clear();
  model.forward(random_tokens(1, 3, c.vocab_size, 21));
  EXPECT_TRUE(seen.empty());
}

TEST(Transformer, HookInputTimesWeightIsTheLayerOutput) {
  // The hook's X for wq, times wq^T, must be the query the model uses: check via wv of layer 0,
  // whose input is the normed embedding (x / rms(x) * gain), computed here independently.
  const Config c = tiny_config(true);
  Transformer model(lively_weights(c, 22));
  const TokenBatch t = random_tokens(1, 4, c.vocab_size, 23);
  Matrix captured;
  model.set_hook([&](const std::string& name, const Eigen::Ref<const Matrix>& x) {
    if (name == "layers.0.attention.wv") captured = x;
  });
  model.forward(t);
  const auto& w = model.weights();
  for (Index r = 0; r < 4; ++r) {
    const slim::RowVector e = w.token_embedding.row(t(0, r));
    const float rms = std::sqrt(e.squaredNorm() / static_cast<float>(c.dim) + 1e-5f);
    const slim::RowVector expected = (e / rms).cwiseProduct(w.layers[0].rms_att.transpose());
    EXPECT_LT((captured.row(r) - expected).norm(), 1e-5);
  }
}

TEST(Transformer, ReplacingALayerWithTheSameDenseWeightsChangesNothing) {
  const Config c = tiny_config(false);
  Transformer model(lively_weights(c, 24));
  const TokenBatch t = random_tokens(2, 6, c.vocab_size, 25);
  const Matrix before = model.forward(t);
  for (const auto& name : model.linear_names()) {
    model.replace(name, std::make_shared<slim::DenseLinear>(model.linear_weight(name)));
  }
  EXPECT_TRUE(model.any_replaced());
  EXPECT_EQ(model.forward(t), before);
}

TEST(Transformer, ReplacingALayerChangesTheOutputThroughTheReplacement) {
  const Config c = tiny_config(true);
  Transformer model(lively_weights(c, 26));
  const TokenBatch t = random_tokens(1, 6, c.vocab_size, 27);
  const Matrix before = model.forward(t);
  model.replace("layers.1.feed_forward.w2",
                std::make_shared<slim::DenseLinear>(Matrix::Zero(c.dim, c.hidden_dim)));
  const Matrix zeroed = model.forward(t);
  EXPECT_GT((zeroed - before).norm(), 1e-3);
  // Zeroing w2 in the weights themselves gives the same logits.
  Weights w = model.weights();
  w.layers[1].w2.setZero();
  EXPECT_LT((Transformer(w).forward(t) - zeroed).norm(), 1e-6);
  model.restore("layers.1.feed_forward.w2");
  EXPECT_EQ(model.forward(t), before);
}

TEST(Transformer, BadInputThrowsTypedErrors) {
  Config bad = tiny_config(true);
  bad.n_kv_heads = 3;
  EXPECT_THROW(Weights::zeros(bad), slim::ArgumentError);
  bad = tiny_config(true);
  bad.n_heads = 5;
  EXPECT_THROW(bad.validate(), slim::ArgumentError);

  const Config c = tiny_config(true);
  Weights wrong = Weights::zeros(c);
  wrong.layers[0].wk.resize(3, 3);
  EXPECT_THROW(Transformer{wrong}, slim::ShapeError);

  Transformer model(lively_weights(c, 28));
  TokenBatch t = random_tokens(1, 4, c.vocab_size, 29);
  t(0, 2) = static_cast<std::int32_t>(c.vocab_size);
  EXPECT_THROW(model.forward(t), slim::ArgumentError);
  t(0, 2) = -1;
  EXPECT_THROW(model.forward(t), slim::ArgumentError);
  EXPECT_THROW(model.forward(random_tokens(1, c.seq_len + 1, c.vocab_size, 30)), slim::ShapeError);
  EXPECT_THROW(model.forward(TokenBatch(0, 4)), slim::ShapeError);
  const TokenBatch ok = random_tokens(2, 4, c.vocab_size, 31);
  EXPECT_THROW(model.loss(ok, random_tokens(2, 3, c.vocab_size, 32)), slim::ShapeError);
  Weights g = Weights::zeros(tiny_config(false));
  EXPECT_THROW(model.loss_and_gradient(ok, ok, g), slim::ShapeError);
  EXPECT_THROW(model.per_sample_gradients(ok, ok, "layers.9.attention.wq"), slim::ArgumentError);

  auto state = model.start();
  EXPECT_THROW(model.decode(state, static_cast<std::int32_t>(c.vocab_size)), slim::ArgumentError);
  for (Index p = 0; p < c.seq_len; ++p) model.decode(state, 1);
  EXPECT_THROW(model.decode(state, 1), slim::ArgumentError);

  EXPECT_THROW(model.replace("layers.0.attention.wz",
                             std::make_shared<slim::DenseLinear>(Matrix::Zero(c.dim, c.dim))),
               slim::ArgumentError);
  EXPECT_THROW(model.replace("layers.0.attention.wk",
                             std::make_shared<slim::DenseLinear>(Matrix::Zero(c.dim, c.dim))),
               slim::ShapeError);
  EXPECT_THROW(model.replace("layers.0.attention.wq", nullptr), slim::ArgumentError);
  model.replace("layers.0.attention.wq",
                std::make_shared<slim::DenseLinear>(model.linear_weight("layers.0.attention.wq")));
  Weights g2 = Weights::zeros(c);
  EXPECT_THROW(model.loss_and_gradient(ok, ok, g2), slim::ArgumentError);
}

}  // namespace

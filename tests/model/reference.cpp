// The trained reference model (the cached test model), evaluation (perplexity, KL, top-1),
// sampling, training and the model cache.
#include <slim/calib/hessian.hpp>
#include <slim/model.hpp>

#include "support/reference_model.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace {

using slim::Index;
using slim::Matrix;
using slim::model::Config;
using slim::model::Transformer;
using slim::model::Weights;

TEST(ReferenceModel, LearnedFarBelowTheUnigramEntropy) {
  const auto& corpus = slim::test::reference_corpus();
  const auto& model = slim::test::reference_model();
  const auto val = slim::model::evaluate(model, corpus.validation_tokens);
  const double unigram = slim::model::unigram_bits(corpus.train_tokens, corpus.validation_tokens);
  EXPECT_GT(unigram, 4.0);  // English bytes carry roughly 4.5-5 bits each without context
  EXPECT_LT(val.bits_per_token, unigram - 1.0);
  EXPECT_NEAR(val.perplexity, std::exp(val.nats_per_token), 1e-9 * val.perplexity);
  EXPECT_NEAR(val.bits_per_token * std::log(2.0), val.nats_per_token, 1e-12);
}

TEST(ReferenceModel, EvaluateMatchesTheLossOfItsWindows) {
  const auto& model = slim::test::reference_model();
  const auto& stream = slim::test::reference_corpus().validation_tokens;
  const auto windows = slim::model::consecutive_windows(stream, model.config().seq_len, 5);
  const auto p = slim::model::evaluate(model, stream, {.max_windows = 5, .windows_per_batch = 2});
  EXPECT_NEAR(p.nats_per_token, model.loss(windows.inputs, windows.targets), 1e-5);
  EXPECT_EQ(p.tokens, 5 * model.config().seq_len);
}

TEST(ReferenceModel, ActivationsHaveTheLayerInputShapeAndFeedTheHessian) {
  const auto& model = slim::test::reference_model();
  const Matrix x = slim::test::reference_activations("layers.1.feed_forward.w2", 256);
  EXPECT_EQ(x.rows(), 256);
  EXPECT_EQ(x.cols(), model.config().hidden_dim);
  EXPECT_TRUE(x.allFinite());
  slim::calib::Hessian h(x.cols());
  h.add(x);
  EXPECT_EQ(h.samples(), 256);
  const Matrix q = slim::test::reference_activations("layers.0.attention.wq", 128);
  EXPECT_EQ(q.cols(), model.config().dim);
  // The input of wq is RMS-normalised: each row's RMS, divided by the gain, is 1.
  const auto& gain = model.weights().layers[0].rms_att;
  for (Index r = 0; r < q.rows(); ++r) {
    const slim::RowVector normed = q.row(r).cwiseQuotient(gain.transpose());
    EXPECT_NEAR(std::sqrt(normed.squaredNorm() / static_cast<float>(q.cols())), 1.0, 1e-3);
  }
  EXPECT_THROW(slim::test::reference_activations("layers.7.attention.wq"), slim::ArgumentError);
}

TEST(Compare, IdenticalModelsHaveZeroKlAndFullAgreement) {
  const auto& model = slim::test::reference_model();
  const auto& stream = slim::test::reference_corpus().validation_tokens;
  const auto a = slim::model::compare(model, model, stream, {.max_windows = 4});
  EXPECT_NEAR(a.mean_kl, 0.0, 1e-9);
  EXPECT_EQ(a.top1_agreement, 1.0);
  EXPECT_EQ(a.tokens, 4 * model.config().seq_len);
}

TEST(Compare, DamagingALayerRaisesKlAndLowersAgreement) {
  const auto& model = slim::test::reference_model();
  const auto& stream = slim::test::reference_corpus().validation_tokens;
  Transformer damaged = model;
  const Matrix& w = model.linear_weight("layers.0.feed_forward.w2");
  damaged.replace("layers.0.feed_forward.w2", std::make_shared<slim::DenseLinear>(0.2f * w));
  Transformer slightly = model;
  slightly.replace("layers.0.feed_forward.w2", std::make_shared<slim::DenseLinear>(0.95f * w));
  const auto big = slim::model::compare(model, damaged, stream, {.max_windows = 4});
  const auto small = slim::model::compare(model, slightly, stream, {.max_windows = 4});
  EXPECT_GT(big.mean_kl, small.mean_kl);
  EXPECT_GT(small.mean_kl, 0.0);
  EXPECT_LT(big.top1_agreement, 1.0);
  EXPECT_GE(small.top1_agreement, big.top1_agreement);
  // The damaged model is also worse at the task.
  const auto p0 = slim::model::evaluate(model, stream, {.max_windows = 4});
  const auto p1 = slim::model::evaluate(damaged, stream, {.max_windows = 4});
  EXPECT_GT(p1.nats_per_token, p0.nats_per_token);
}

TEST(Compare, KlAndAgreementMatchAHandComputedCase) {
  Matrix ref(2, 2), cand(2, 2);
  ref << 0.0f, 0.0f, std::log(3.0f), 0.0f;             // p = (1/2, 1/2), (3/4, 1/4)
  cand << std::log(3.0f), 0.0f, 0.0f, std::log(3.0f);  // q = (3/4, 1/4), (1/4, 3/4)
  const double kl0 = 0.5 * std::log(0.5 / 0.75) + 0.5 * std::log(0.5 / 0.25);
  const double kl1 = 0.75 * std::log(3.0) + 0.25 * std::log(1.0 / 3.0);
  const auto a = slim::model::compare_logits(ref, cand);
  EXPECT_NEAR(a.mean_kl, (kl0 + kl1) / 2, 1e-6);
  EXPECT_NEAR(a.max_kl, std::max(kl0, kl1), 1e-6);
  EXPECT_EQ(a.top1_agreement, 0.5);  // row 0 ties: argmax picks the first index in both
  EXPECT_THROW(slim::model::compare_logits(ref, Matrix(2, 3)), slim::ShapeError);
}

TEST(Sample, GreedyGenerationFollowsTheArgmaxOfTheFullForward) {
  const auto& model = slim::test::reference_model();
  const std::vector<std::int32_t> prompt = slim::model::ByteTokenizer::encode("The ", true);
  const auto out = slim::model::generate(
      model, prompt, {.max_new_tokens = 20, .temperature = 0.0, .stop_token = -1});
  ASSERT_EQ(out.size(), 20u);
  std::vector<std::int32_t> seq = prompt;
  for (const auto t : out) {
    const Matrix logits = model.forward(seq);
    Index best = 0;
    logits.row(logits.rows() - 1).maxCoeff(&best);
    EXPECT_EQ(t, best);
    seq.push_back(t);
  }
}

TEST(Sample, TemperatureSamplingIsReproducibleAndStopsAtSeqLen) {
  const auto& model = slim::test::reference_model();
  const std::vector<std::int32_t> prompt = {slim::model::ByteTokenizer::bos};
  const slim::model::SampleOptions o{
      .max_new_tokens = 1000, .temperature = 1.0, .seed = 3, .stop_token = -1};
  const auto a = slim::model::generate(model, prompt, o);
  EXPECT_EQ(a, slim::model::generate(model, prompt, o));
  EXPECT_EQ(static_cast<Index>(a.size()), model.config().seq_len);
  EXPECT_THROW(slim::model::generate(model, {}, o), slim::ArgumentError);
}

TEST(Sample, SampleTokenDrawsFromTheSoftmax) {
  slim::Vector logits(2);
  logits << 0.0f, std::log(3.0f);  // p = (1/4, 3/4) at temperature 1
  slim::random::Generator gen(9);
  int ones = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ones += slim::model::sample_token(logits, 1.0, gen);
  EXPECT_NEAR(static_cast<double>(ones) / n, 0.75, 0.015);
  EXPECT_EQ(slim::model::sample_token(logits, 0.0, gen), 1);
  EXPECT_THROW(slim::model::sample_token(logits, -1.0, gen), slim::ArgumentError);
}

Config micro_config() {
  return Config{.dim = 16,
                .hidden_dim = 32,
                .n_layers = 1,
                .n_heads = 2,
                .n_kv_heads = 1,
                .vocab_size = 258,
                .seq_len = 16,
                .shared_classifier = true};
}

TEST(Train, IsDeterministicForASeedAndLowersTheLoss) {
  const auto& corpus = slim::test::reference_corpus();
  const std::vector<std::int32_t> stream(corpus.train_tokens.begin(),
                                         corpus.train_tokens.begin() + 20000);
  slim::model::TrainOptions o;
  o.steps = 60;
  o.batch_size = 4;
  o.warmup_steps = 5;
  o.learning_rate = 1e-2;
  o.min_learning_rate = 1e-3;
  o.seed = 4;
  Transformer a(Weights::random(micro_config(), 1));
  Transformer b(Weights::random(micro_config(), 1));
  const auto before = slim::model::evaluate(a, stream, {.max_windows = 16});
  slim::model::train(a, stream, o);
  slim::model::train(b, stream, o);
  EXPECT_EQ(a.weights().layers[0].w1, b.weights().layers[0].w1);
  EXPECT_EQ(a.weights().token_embedding, b.weights().token_embedding);
  const auto after = slim::model::evaluate(a, stream, {.max_windows = 16});
  EXPECT_LT(after.nats_per_token, before.nats_per_token - 1.0);
}

TEST(Train, RejectsBadOptions) {
  Transformer m(Weights::random(micro_config(), 1));
  const std::vector<std::int32_t> stream(100, 65);
  slim::model::TrainOptions o;
  o.steps = 0;
  EXPECT_THROW(slim::model::train(m, stream, o), slim::ArgumentError);
  o.steps = 10;
  o.warmup_steps = 20;
  EXPECT_THROW(slim::model::train(m, stream, o), slim::ArgumentError);
  o.warmup_steps = 0;
  o.tokens = 17;
  EXPECT_THROW(slim::model::train(m, stream, o), slim::ArgumentError);
}

class ModelCache : public ::testing::Test {
 protected:
  void SetUp() override {
    // One folder per test: ctest runs the tests of this suite in parallel processes.
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::path(SLIM_TEST_BINARY_DIR) / "model_test_cache" / info->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "m.slimref").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(ModelCache, RoundTripsBitExactlyAndRejectsOtherTags) {
  Config c = micro_config();
  c.shared_classifier = false;
  const Weights w = Weights::random(c, 21);
  slim::model::save_cached_model(path_, w, "tag one");
  const auto back = slim::model::load_cached_model(path_, "tag one");
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->config, c);
  EXPECT_EQ(back->wcls, w.wcls);
  EXPECT_EQ(back->layers[0].rms_ffn, w.layers[0].rms_ffn);
  EXPECT_EQ(back->layers[0].wk, w.layers[0].wk);
  EXPECT_FALSE(slim::model::load_cached_model(path_, "tag two").has_value());
  EXPECT_FALSE(slim::model::load_cached_model((dir_ / "absent").string(), "tag one").has_value());
}

TEST_F(ModelCache, CorruptOrTruncatedFilesThrowFormatError) {
  slim::model::save_cached_model(path_, Weights::random(micro_config(), 22), "t");
  std::vector<char> bytes;
  {
    std::ifstream in(path_, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  auto write = [&](const std::vector<char>& b) {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out.write(b.data(), static_cast<std::streamsize>(b.size()));
  };
  std::vector<char> flipped = bytes;
  flipped[flipped.size() / 2] ^= 0x10;
  write(flipped);
  EXPECT_THROW(slim::model::load_cached_model(path_, "t"), slim::FormatError);
  write(std::vector<char>(bytes.begin(), bytes.begin() + static_cast<long>(bytes.size()) - 9));
  EXPECT_THROW(slim::model::load_cached_model(path_, "t"), slim::FormatError);
  std::vector<char> magic = bytes;
  magic[0] = 'X';
  write(magic);
  EXPECT_THROW(slim::model::load_cached_model(path_, "t"), slim::FormatError);
}

}  // namespace

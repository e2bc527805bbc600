// The byte tokenizer, the fortunes corpus reader and its fixed split, token windows and the
// unigram baseline, checked on crafted inputs with known answers and on the real corpus.
#include <slim/model.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace {

using slim::Index;
using slim::model::ByteTokenizer;

TEST(ByteTokenizer, RoundTripsEveryByte) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  const auto tokens = ByteTokenizer::encode(all, true, true);
  ASSERT_EQ(tokens.size(), 258u);
  EXPECT_EQ(tokens.front(), ByteTokenizer::bos);
  EXPECT_EQ(tokens.back(), ByteTokenizer::eos);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(tokens[static_cast<std::size_t>(b + 1)], b);
  EXPECT_EQ(ByteTokenizer::decode(tokens), all);
  const std::string text = "Caf\xc3\xa9 \"%\"\n\ttab";
  EXPECT_EQ(ByteTokenizer::decode(ByteTokenizer::encode(text, false)), text);
}

TEST(ByteTokenizer, DecodeRejectsTokensOutsideTheVocabulary) {
  EXPECT_THROW(ByteTokenizer::decode({65, 258}), slim::ArgumentError);
  EXPECT_THROW(ByteTokenizer::decode({-1}), slim::ArgumentError);
}

TEST(Corpus, SplitFortunesSeparatesOnPercentLines) {
  const auto f = slim::model::split_fortunes("one\nline\n%\ntwo 50%\n%\n%\nthree\n");
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[0], "one\nline");
  EXPECT_EQ(f[1], "two 50%");
  EXPECT_EQ(f[2], "three");
}

class CraftedCorpus : public ::testing::Test {
 protected:
  void SetUp() override {
    // One folder per test: ctest runs the tests of this suite in parallel processes.
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::path(SLIM_TEST_BINARY_DIR) / "model_test_corpus" / info->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    write("b", "b", 20);
    write("a", "a", 25);
    std::ofstream(dir_ / "a.dat") << "%\nnot a fortune\n%\n";
    std::filesystem::create_symlink("a", dir_ / "a.u8");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void write(const std::string& name, const std::string& prefix, int count) {
    std::ofstream out(dir_ / name);
    for (int i = 0; i < count; ++i) out << prefix << i << "\n%\n";
  }

  std::filesystem::path dir_;
};

TEST_F(CraftedCorpus, EveryTwentiethFortuneInFileOrderGoesToValidation) {
  const auto c = slim::model::load_fortunes(dir_.string());
  // Files in name order (a then b); global indices 19 and 39 are a19 and b14.
  ASSERT_EQ(c.validation.size(), 2u);
  EXPECT_EQ(c.validation[0], "a19");
  EXPECT_EQ(c.validation[1], "b14");
  ASSERT_EQ(c.train.size(), 43u);
  EXPECT_EQ(c.train.front(), "a0");
  EXPECT_EQ(c.train.back(), "b19");
  // Token streams frame each fortune as BOS bytes EOS.
  const std::vector<std::int32_t> expected = {256, 'a', '1', '9', 257, 256, 'b', '1', '4', 257};
  EXPECT_EQ(c.validation_tokens, expected);
}

TEST_F(CraftedCorpus, SplitIsDeterministic) {
  const auto a = slim::model::load_fortunes(dir_.string());
  const auto b = slim::model::load_fortunes(dir_.string());
  EXPECT_EQ(a.train, b.train);
  EXPECT_EQ(a.validation, b.validation);
}

TEST(Corpus, MissingFolderThrowsIoErrorNamingThePathAndThePackage) {
  const std::string path = std::string(SLIM_TEST_BINARY_DIR) + "/no-such-fortunes";
  try {
    slim::model::load_fortunes(path);
    FAIL() << "expected IoError";
  } catch (const slim::IoError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path), std::string::npos) << what;
    EXPECT_NE(what.find("apt-get install fortunes"), std::string::npos) << what;
  }
}

TEST(Corpus, RealFortunesSplitOneInTwenty) {
  const auto c = slim::model::load_fortunes();
  const std::size_t total = c.train.size() + c.validation.size();
  EXPECT_GT(total, 10000u);
  EXPECT_EQ(c.validation.size(), total / 20);
  std::size_t bytes = 0;
  for (const auto& f : c.train) bytes += f.size();
  EXPECT_EQ(c.train_tokens.size(), bytes + 2 * c.train.size());
}

TEST(TokenWindows, RandomWindowsAreNextTokenPairsAndReproducible) {
  std::vector<std::int32_t> stream(100);
  for (std::size_t i = 0; i < stream.size(); ++i) stream[i] = static_cast<std::int32_t>(i);
  slim::random::Generator g1(5), g2(5);
  const auto a = slim::model::random_windows(stream, 4, 10, g1);
  const auto b = slim::model::random_windows(stream, 4, 10, g2);
  EXPECT_EQ(a.inputs, b.inputs);
  for (Index r = 0; r < 4; ++r) {
    for (Index t = 0; t < 10; ++t) {
      EXPECT_EQ(a.targets(r, t), a.inputs(r, t) + 1);
      if (t > 0) {
        EXPECT_EQ(a.inputs(r, t), a.inputs(r, t - 1) + 1);
      }
    }
  }
  const auto c = slim::model::consecutive_windows(stream, 10);
  EXPECT_EQ(c.inputs.rows(), 9);  // 99 next-token pairs hold 9 whole windows of 10
  EXPECT_EQ(c.inputs(3, 0), 30);
  EXPECT_EQ(c.targets(8, 9), 90);
  EXPECT_THROW(slim::model::random_windows(stream, 1, 100, g1), slim::ShapeError);
  EXPECT_THROW(slim::model::consecutive_windows(stream, 0), slim::ArgumentError);
}

TEST(Unigram, BitsMatchTheClosedFormForAUniformStream) {
  // Train counts 3 of each of 4 tokens, add-one over vocab 4: p = 4/16 each -> exactly 2 bits.
  const std::vector<std::int32_t> train = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};
  EXPECT_NEAR(slim::model::unigram_bits(train, {0, 3, 2}, 4), 2.0, 1e-12);
  EXPECT_THROW(slim::model::unigram_bits(train, {4}, 4), slim::ArgumentError);
}

}  // namespace

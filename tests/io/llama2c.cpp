#include <slim/io.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/test_files.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

namespace {

using slim::test::format_error_of;
using slim::test::temp_path;

using slim::Index;
using slim::Matrix;
using slim::model::Config;
using slim::model::Weights;
using testing::HasSubstr;

std::vector<std::uint8_t> header_bytes(const std::vector<std::int32_t>& ints) {
  std::vector<std::uint8_t> b;
  for (std::int32_t v : ints) {
    const auto u = static_cast<std::uint32_t>(v);
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::uint8_t>(u >> (8 * i)));
  }
  return b;
}

void append_floats(std::vector<std::uint8_t>& b, const std::vector<float>& values) {
  for (float v : values) {
    std::uint32_t u;
    std::memcpy(&u, &v, 4);
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::uint8_t>(u >> (8 * i)));
  }
}

// The tiny hand-made model: dim 2, hidden 2, 1 layer, 1 head, 1 kv head, vocab 3, seq_len 2.
// Float k of the weight stream holds value(k); the offsets below are counted by hand from
// run.c's memory_map_weights.
float value(int k) { return 0.25f * static_cast<float>(k) - 3.0f; }
constexpr int kTokenEmbedding = 0;                    // 3 x 2
constexpr int kRmsAtt = 6;                            // 2
constexpr int kWq = 8, kWk = 12, kWv = 16, kWo = 20;  // 2 x 2 each
constexpr int kRmsFfn = 24;                           // 2
constexpr int kW1 = 26, kW2 = 30, kW3 = 34;           // 2 x 2 each
constexpr int kRmsFinal = 38;                         // 2
constexpr int kFreqCis = 40;                          // 2 x (seq_len * head_size / 2) = 4
constexpr int kWcls = 44;                             // 3 x 2, untied files only

std::vector<std::uint8_t> tiny_file(bool shared) {
  std::vector<std::uint8_t> file = header_bytes({2, 2, 1, 1, 1, shared ? 3 : -3, 2});
  std::vector<float> floats;
  for (int k = 0; k < (shared ? kWcls : kWcls + 6); ++k) floats.push_back(value(k));
  append_floats(file, floats);
  return file;
}

void expect_matrix_at(const Matrix& m, int offset) {
  for (Index r = 0; r < m.rows(); ++r) {
    for (Index c = 0; c < m.cols(); ++c) {
      EXPECT_EQ(m(r, c), value(offset + static_cast<int>(r * m.cols() + c)))
          << "offset " << offset << " (" << r << ", " << c << ")";
    }
  }
}

void expect_bitwise_equal(const Weights& a, const Weights& b) {
  ASSERT_EQ(a.config, b.config);
  std::vector<Matrix> pa, pb;
  a.for_each_parameter([&](const std::string&, const auto& p) { pa.emplace_back(p); });
  b.for_each_parameter([&](const std::string&, const auto& p) { pb.emplace_back(p); });
  ASSERT_EQ(pa.size(), pb.size());
  for (std::size_t i = 0; i < pa.size(); ++i) {
    ASSERT_EQ(pa[i].rows(), pb[i].rows());
    ASSERT_EQ(pa[i].cols(), pb[i].cols());
    EXPECT_EQ(std::memcmp(pa[i].data(), pb[i].data(), sizeof(float) * pa[i].size()), 0)
        << "parameter " << i;
  }
}

Config small_config(bool shared) {
  Config c;
  c.dim = 16;
  c.hidden_dim = 40;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 11;
  c.seq_len = 8;
  c.shared_classifier = shared;
  return c;
}

TEST(Llama2c, HandCraftedFileLoadsToKnownValues) {
  for (const bool shared : {true, false}) {
    const Weights w = slim::io::parse_llama2c(tiny_file(shared));
    EXPECT_EQ(w.config.dim, 2);
    EXPECT_EQ(w.config.hidden_dim, 2);
    EXPECT_EQ(w.config.n_layers, 1);
    EXPECT_EQ(w.config.vocab_size, 3);
    EXPECT_EQ(w.config.seq_len, 2);
    EXPECT_EQ(w.config.shared_classifier, shared);
    expect_matrix_at(w.token_embedding, kTokenEmbedding);
    const auto& l = w.layers.at(0);
    expect_matrix_at(l.rms_att.transpose(), kRmsAtt);
    expect_matrix_at(l.wq, kWq);
    expect_matrix_at(l.wk, kWk);
    expect_matrix_at(l.wv, kWv);
    expect_matrix_at(l.wo, kWo);
    expect_matrix_at(l.rms_ffn.transpose(), kRmsFfn);
    expect_matrix_at(l.w1, kW1);
    expect_matrix_at(l.w2, kW2);
    expect_matrix_at(l.w3, kW3);
    expect_matrix_at(w.rms_final.transpose(), kRmsFinal);
    if (shared) {
      EXPECT_EQ(w.wcls.size(), 0);
    } else {
      expect_matrix_at(w.wcls, kWcls);
    }
  }
}

TEST(Llama2c, RoundTripIsBitExactForTiedAndUntiedGroupedQueryModels) {
  for (const bool shared : {true, false}) {
    const Weights w = Weights::random(small_config(shared), shared ? 1 : 2);
    const auto bytes = slim::io::serialize_llama2c(w);
    const Weights back = slim::io::parse_llama2c(bytes);
    expect_bitwise_equal(w, back);
    EXPECT_EQ(slim::io::serialize_llama2c(back), bytes);

    const std::string path = temp_path(shared ? ".tied.bin" : ".untied.bin");
    slim::io::write_llama2c(path, w);
    expect_bitwise_equal(w, slim::io::read_llama2c(path));
  }
}

TEST(Llama2c, WrittenFileFollowsTheLegacyLayout) {
  const Config c = small_config(false);
  const Weights w = Weights::random(c, 3);
  const auto bytes = slim::io::serialize_llama2c(w);
  const Index params = w.parameter_count();
  const Index head_size = c.dim / c.n_heads;
  ASSERT_EQ(bytes.size(), static_cast<std::size_t>(28 + 4 * (params + c.seq_len * head_size)));
  std::int32_t header[7];
  std::memcpy(header, bytes.data(), sizeof header);
  EXPECT_EQ(header[0], c.dim);
  EXPECT_EQ(header[1], c.hidden_dim);
  EXPECT_EQ(header[2], c.n_layers);
  EXPECT_EQ(header[3], c.n_heads);
  EXPECT_EQ(header[4], c.n_kv_heads);
  EXPECT_EQ(header[5], -c.vocab_size);  // untied
  EXPECT_EQ(header[6], c.seq_len);
  // wq of layer 1 follows the embedding, both layers' rms_att and layer 0's wq.
  const std::size_t wq1 =
      28 + 4 * static_cast<std::size_t>(c.vocab_size * c.dim + 2 * c.dim + c.dim * c.dim);
  float first;
  std::memcpy(&first, bytes.data() + wq1, 4);
  EXPECT_EQ(first, w.layers[1].wq(0, 0));
  // freq_cis_real[t][i] = cos(t * 10000^(-2i/head_size)), right after rms_final.
  const std::size_t freq =
      bytes.size() - 4 * static_cast<std::size_t>(c.vocab_size * c.dim + c.seq_len * head_size);
  const Index half = head_size / 2;
  for (Index t : {Index{1}, Index{5}}) {
    for (Index i : {Index{0}, Index{1}}) {
      float re, im;
      std::memcpy(&re, bytes.data() + freq + 4 * static_cast<std::size_t>(t * half + i), 4);
      std::memcpy(
          &im, bytes.data() + freq + 4 * static_cast<std::size_t>(c.seq_len * half + t * half + i),
          4);
      const double angle = static_cast<double>(t) * std::pow(10000.0, -2.0 * i / head_size);
      EXPECT_NEAR(re, std::cos(angle), 1e-6);
      EXPECT_NEAR(im, std::sin(angle), 1e-6);
    }
  }
  float wcls00;
  std::memcpy(&wcls00, bytes.data() + bytes.size() - 4 * c.vocab_size * c.dim, 4);
  EXPECT_EQ(wcls00, w.wcls(0, 0));
}

TEST(Llama2c, FileShorterThanItsHeaderIsFormatError) {
  const auto file = tiny_file(true);
  EXPECT_THAT(format_error_of([&] {
                slim::io::parse_llama2c(std::vector<std::uint8_t>(file.begin(), file.begin() + 10));
              }),
              HasSubstr("header"));
  EXPECT_THAT(format_error_of([&] {
                slim::io::parse_llama2c(std::vector<std::uint8_t>(file.begin(), file.end() - 4));
              }),
              HasSubstr("but the file has 172"));
  auto longer = file;
  longer.resize(longer.size() + 4);
  EXPECT_THAT(format_error_of([&] { slim::io::parse_llama2c(longer); }),
              HasSubstr("but the file has 180"));
  // An untied header on a file that stops before wcls.
  auto untied_short = tiny_file(true);
  untied_short[20] = 0xfd;  // vocab_size = -3
  untied_short[21] = untied_short[22] = untied_short[23] = 0xff;
  EXPECT_THAT(format_error_of([&] { slim::io::parse_llama2c(untied_short); }),
              HasSubstr("implies 200 bytes"));
}

TEST(Llama2c, InvalidHeaderFieldsAreFormatErrorsNamingTheField) {
  const auto with_header = [](const std::vector<std::int32_t>& ints) {
    auto file = tiny_file(true);
    const auto h = header_bytes(ints);
    std::copy(h.begin(), h.end(), file.begin());
    return file;
  };
  EXPECT_THAT(format_error_of([&] {
                slim::io::parse_llama2c(with_header({0, 2, 1, 1, 1, 3, 2}));
              }),
              HasSubstr("dim is 0"));
  EXPECT_THAT(format_error_of([&] {
                slim::io::parse_llama2c(with_header({2, 2, 1, 1, 1, 3, -2}));
              }),
              HasSubstr("seq_len is -2"));
  EXPECT_THAT(format_error_of([&] {
                slim::io::parse_llama2c(
                    with_header({2, 2, 1, 1, 1, std::numeric_limits<std::int32_t>::min(), 2}));
              }),
              HasSubstr("vocab_size"));
  EXPECT_THAT(format_error_of([&] {
                slim::io::parse_llama2c(with_header({2, 2, 1, 2, 1, 3, 2}));
              }),
              HasSubstr("even"));  // head_size 1
  EXPECT_THAT(format_error_of([&] {
                slim::io::parse_llama2c(with_header({4, 2, 1, 2, 3, 3, 2}));
              }),
              HasSubstr("n_kv_heads"));
  // Sizes whose product overflows must fail on the size check, not allocate.
  EXPECT_THAT(format_error_of([&] {
                slim::io::parse_llama2c(with_header({1 << 30, 1 << 30, 1 << 30, 2, 2, 1 << 30, 2}));
              }),
              HasSubstr("more than 2^64"));
  EXPECT_THAT(format_error_of([&] {
                slim::io::parse_llama2c(with_header({1 << 20, 1 << 20, 64, 2, 2, 32000, 2}));
              }),
              HasSubstr("bytes of weights but the file has"));
}

TEST(Llama2c, ReadingAMissingFileIsIoError) {
  EXPECT_THROW(slim::io::read_llama2c(temp_path(".missing.bin")), slim::IoError);
}

TEST(Llama2c, WritingWeightsThatDoNotMatchTheirConfigIsShapeError) {
  Weights w = Weights::random(small_config(true), 4);
  w.layers[1].w2 = Matrix::Zero(3, 3);
  EXPECT_THROW(slim::io::serialize_llama2c(w), slim::ShapeError);
}

TEST(ModelSafetensors, RoundTripIsBitExactAndMatchesTheLlama2cCopy) {
  for (const bool shared : {true, false}) {
    const Weights w = Weights::random(small_config(shared), 5);
    const std::string path = temp_path(shared ? ".tied.safetensors" : ".untied.safetensors");
    slim::io::write_model_safetensors(path, w);
    const Weights back = slim::io::read_model_safetensors(path);
    expect_bitwise_equal(w, back);
    expect_bitwise_equal(back, slim::io::parse_llama2c(slim::io::serialize_llama2c(w)));
  }
}

TEST(ModelSafetensors, UsesTheDocumentedTensorNamesAndMetadata) {
  const Weights w = Weights::random(small_config(false), 6);
  slim::io::TensorMap map;
  slim::io::put_model(map, w);
  EXPECT_EQ(map.metadata.at("dim"), "16");
  EXPECT_EQ(map.metadata.at("n_kv_heads"), "2");
  EXPECT_EQ(map.metadata.at("shared_classifier"), "false");
  EXPECT_EQ(map.at("tok_embeddings.weight").shape, (std::vector<std::int64_t>{11, 16}));
  EXPECT_EQ(map.at("layers.1.attention.wk.weight").shape, (std::vector<std::int64_t>{8, 16}));
  EXPECT_EQ(map.at("layers.0.feed_forward.w2.weight").shape, (std::vector<std::int64_t>{16, 40}));
  EXPECT_EQ(map.at("layers.0.attention_norm.weight").shape, (std::vector<std::int64_t>{16}));
  EXPECT_EQ(map.at("norm.weight").shape, (std::vector<std::int64_t>{16}));
  EXPECT_EQ(map.matrix("output.weight", 11, 16), w.wcls);
  EXPECT_EQ(map.tensors.size(), 1u + 9u * 2u + 1u + 1u);
}

TEST(ModelSafetensors, Bf16CheckpointLoadsTheRoundedWeights) {
  const Weights w = Weights::random(small_config(true), 7);
  slim::io::TensorMap map;
  slim::io::put_model(map, w, slim::io::DType::BF16);
  const Weights back =
      slim::io::get_model(slim::io::parse_safetensors(slim::io::serialize_safetensors(map)));
  const Matrix& wq = w.layers[0].wq;
  for (Index i = 0; i < wq.size(); ++i) {
    EXPECT_EQ(back.layers[0].wq.data()[i], slim::bf16_to_fp32(slim::fp32_to_bf16(wq.data()[i])));
  }
}

TEST(ModelSafetensors, MissingOrInconsistentEntriesAreFormatErrors) {
  const Weights w = Weights::random(small_config(true), 8);
  slim::io::TensorMap good;
  slim::io::put_model(good, w);

  auto m = good;
  m.metadata.erase("dim");
  EXPECT_THAT(format_error_of([&] { slim::io::get_model(m); }), HasSubstr("'dim'"));
  m = good;
  m.metadata["n_heads"] = "3";
  EXPECT_THAT(format_error_of([&] { slim::io::get_model(m); }), HasSubstr("n_heads"));
  m = good;
  m.tensors.erase("layers.1.feed_forward.w3.weight");
  EXPECT_THAT(format_error_of([&] { slim::io::get_model(m); }),
              HasSubstr("layers.1.feed_forward.w3.weight"));
  m = good;
  m.put_matrix("layers.0.attention.wv.weight", Matrix::Zero(16, 8));
  EXPECT_THAT(format_error_of([&] { slim::io::get_model(m); }),
              HasSubstr("layers.0.attention.wv.weight"));
  m = good;
  m.metadata["vocab_size"] = "1000000000";
  EXPECT_THAT(format_error_of([&] { slim::io::get_model(m); }), HasSubstr("parameters"));
}

}  // namespace

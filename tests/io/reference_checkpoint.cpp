// Checkpoints of the trained reference model (the ctest fixture's cached test model): real weights
// with the outliers and scales of a trained network, not random ones.
#include <slim/io.hpp>
#include <slim/quant/rtn.hpp>

#include "support/reference_model.hpp"

#include <gtest/gtest.h>

#include "support/test_files.hpp"

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace {

using slim::test::temp_path;

using slim::Matrix;

std::vector<Matrix> parameters(const slim::model::Weights& w) {
  std::vector<Matrix> out;
  w.for_each_parameter([&](const std::string&, const auto& p) { out.emplace_back(p); });
  return out;
}

bool bitwise_equal(const Matrix& a, const Matrix& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<std::size_t>(a.size())) == 0;
}

TEST(ReferenceCheckpoint, TrainedModelSurvivesBothFormatsBitExactlyAndPredictsTheSame) {
  const auto& model = slim::test::reference_model();
  const slim::model::Weights& w = model.weights();
  const std::string bin = temp_path(".bin");
  const std::string st = temp_path(".safetensors");
  slim::io::write_llama2c(bin, w);
  slim::io::write_model_safetensors(st, w);
  const slim::model::Weights from_bin = slim::io::read_llama2c(bin);
  const slim::model::Weights from_st = slim::io::read_model_safetensors(st);
  EXPECT_EQ(from_bin.config, w.config);
  EXPECT_EQ(from_st.config, w.config);
  const auto original = parameters(w);
  const auto a = parameters(from_bin);
  const auto b = parameters(from_st);
  ASSERT_EQ(a.size(), original.size());
  ASSERT_EQ(b.size(), original.size());
  for (std::size_t i = 0; i < original.size(); ++i) {
    EXPECT_TRUE(bitwise_equal(a[i], original[i])) << "llama2.c parameter " << i;
    EXPECT_TRUE(bitwise_equal(b[i], original[i])) << "safetensors parameter " << i;
  }
  const auto data = slim::test::reference_validation(2);
  EXPECT_TRUE(bitwise_equal(slim::model::Transformer(from_bin).forward(data.inputs),
                            model.forward(data.inputs)));
}

TEST(ReferenceCheckpoint, QuantizedTrainedLayersReloadBitIdentically) {
  const auto& w = slim::test::reference_model().weights();
  slim::io::TensorMap map;
  const std::vector<std::pair<std::string, const Matrix*>> layers = {
      {"layers.0.attention.wq", &w.layers.at(0).wq},
      {"layers.1.feed_forward.w2", &w.layers.at(1).w2},
  };
  std::vector<slim::quant::QuantizedMatrix> quantized;
  for (const auto& [name, matrix] : layers) {
    quantized.push_back(slim::quant::quantize(*matrix, slim::quant::int4_group(32)));
    slim::io::put_quantized(map, name, quantized.back());
  }
  const std::string path = temp_path(".safetensors");
  slim::io::write_safetensors(path, map);
  const slim::io::TensorMap back = slim::io::read_safetensors(path);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const auto r = slim::io::get_quantized(back, layers[i].first);
    EXPECT_EQ(r.codes(), quantized[i].codes()) << layers[i].first;
    EXPECT_EQ(r.scales_fp16(), quantized[i].scales_fp16()) << layers[i].first;
    EXPECT_EQ(r.zeros_packed(), quantized[i].zeros_packed()) << layers[i].first;
    EXPECT_TRUE(bitwise_equal(r.dequantize(), quantized[i].dequantize())) << layers[i].first;
  }
}

}  // namespace

// Compressed model files on the real reference model: a model whose layers were compressed by
// the pipeline's methods (quantized, CSR, N:M, low-rank, AWQ-scaled, dense fallback) is saved
// and loaded back with the same layer kinds, bytes and bit-identical logits; an uncompressed
// model round-trips and stays a plain checkpoint; a 4-bit file is much smaller than fp32; and
// truncated, bit-flipped, mis-versioned or inconsistent files throw FormatError naming the key,
// tensor or layer at fault.
#include <slim/io/model.hpp>
#include <slim/pipeline/methods.hpp>
#include <slim/pipeline/model_file.hpp>
#include <slim/pipeline/sequential.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <typeinfo>
#include <vector>

#include "support/reference_model.hpp"

namespace {

using slim::Index;
using slim::Matrix;
namespace io = slim::io;
namespace pipeline = slim::pipeline;
using slim::model::Transformer;

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "slim_model_file_" + name + ".safetensors";
}

std::uintmax_t file_size(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  return static_cast<std::uintmax_t>(in.tellg());
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Every linear layer kind the pipeline produces, one per projection, on both blocks:
// wq 4-bit RTN (quant::Linear), wk magnitude 50% (windowed CSR), wv magnitude 2:4 (N:M), wo SVD
// 50% (low-rank), w1 4-bit AWQ (input-scaled quant::Linear), w3 3-bit RTN (dense fallback), w2
// 8-bit per-channel RTN, and the classifier magnitude 90% (CSR).
const Transformer& mixed_model() {
  static const Transformer m = [] {
    Transformer model = slim::test::reference_model();
    const auto calibration = slim::test::reference_calibration(2).inputs;
    const std::vector<std::pair<std::string, pipeline::Method>> plan = {
        {".wq", pipeline::rtn_method(4)},
        {".wk", pipeline::magnitude_method(slim::prune::Pattern::unstructured(0.5))},
        {".wv", pipeline::magnitude_method(slim::prune::Pattern::n_m(2, 4))},
        {".wo", pipeline::svd_method(0.5)},
        {".w1", pipeline::awq_method(4)},
        {".w3", pipeline::rtn_method(3)},
        {".w2", pipeline::rtn_method(8)},
        {"output", pipeline::magnitude_method(slim::prune::Pattern::unstructured(0.9))},
    };
    for (const auto& [suffix, method] : plan) {
      pipeline::compress_sequential(model, calibration, method.compress,
                                    [s = suffix](const std::string& n) { return ends_with(n, s); });
    }
    return model;
  }();
  return m;
}

slim::model::TokenBatch validation_tokens() { return slim::test::reference_validation(2).inputs; }

// Same replacement types, descriptions and bytes; same dense parameters where nothing replaced.
void expect_same_layers(const Transformer& a, const Transformer& b) {
  ASSERT_EQ(a.config(), b.config());
  for (const std::string& name : a.linear_names()) {
    const auto la = a.replacement(name);
    const auto lb = b.replacement(name);
    ASSERT_EQ(la == nullptr, lb == nullptr) << name;
    if (la == nullptr) {
      EXPECT_TRUE(a.linear_weight(name) == b.linear_weight(name)) << name;
      continue;
    }
    EXPECT_EQ(typeid(*la), typeid(*lb)) << name;
    EXPECT_EQ(la->describe(), lb->describe()) << name;
    EXPECT_EQ(la->bytes(), lb->bytes()) << name;
    if (const auto* s = dynamic_cast<const pipeline::InputScaledLinear*>(la.get())) {
      const auto* t = dynamic_cast<const pipeline::InputScaledLinear*>(lb.get());
      ASSERT_NE(t, nullptr);
      EXPECT_EQ(typeid(*s->inner()), typeid(*t->inner())) << name;
      EXPECT_TRUE(s->inverse_scales() == t->inverse_scales()) << name;
    }
  }
}

// Bit-identical logits for a batch, and for a few single-token decode steps (the GEMV paths).
void expect_identical_outputs(const Transformer& a, const Transformer& b) {
  const auto tokens = validation_tokens();
  const Matrix ya = a.forward(tokens);
  const Matrix yb = b.forward(tokens);
  ASSERT_EQ(ya.rows(), yb.rows());
  EXPECT_EQ((ya - yb).cwiseAbs().maxCoeff(), 0.0f);
  auto sa = a.start();
  auto sb = b.start();
  for (Index t = 0; t < 4; ++t) {
    const auto va = a.decode(sa, tokens(0, t));
    const auto vb = b.decode(sb, tokens(0, t));
    EXPECT_EQ((va - vb).cwiseAbs().maxCoeff(), 0.0f) << "decode step " << t;
  }
}

TEST(ModelFile, EveryPipelineLayerKindRoundTripsWithIdenticalLogits) {
  const Transformer& original = mixed_model();
  const std::string path = temp_path("mixed");
  const pipeline::ModelMetadata metadata = {{"recipe", "wq: rtn4\nwk: magnitude 50%"},
                                            {"report", "layer,bytes\nlayers.0.attention.wq,576"}};
  pipeline::save_compressed_model(path, original, metadata);
  const pipeline::LoadedModel loaded = pipeline::read_compressed_model(path);
  EXPECT_EQ(loaded.metadata, metadata);
  expect_same_layers(original, loaded.model);
  expect_identical_outputs(original, loaded.model);

  // The kinds stored, and each replaced layer's dense weight is the weight it effectively
  // applies: the layer's own output on the identity matrix (an independent oracle).
  const io::TensorMap map = io::read_safetensors(path);
  EXPECT_EQ(map.metadata.at("layers.0.attention.wq.kind"), "quantized");
  EXPECT_EQ(map.metadata.at("layers.0.attention.wk.kind"), "windowed_csr");
  EXPECT_EQ(map.metadata.at("layers.0.attention.wv.kind"), "nm");
  EXPECT_EQ(map.metadata.at("layers.0.attention.wo.kind"), "lowrank");
  EXPECT_EQ(map.metadata.at("layers.0.feed_forward.w1.kind"), "input_scaled");
  EXPECT_EQ(map.metadata.at("layers.0.feed_forward.w1.inner.kind"), "quantized");
  EXPECT_EQ(map.metadata.at("layers.0.feed_forward.w3.kind"), "dense");
  EXPECT_EQ(map.metadata.at("output.kind"), "csr");
  EXPECT_FALSE(map.contains("layers.0.attention.wk.weight"));  // no fp32 copy beside the storage
  for (const std::string& name : original.linear_names()) {
    const auto layer = loaded.model.replacement(name);
    const Matrix identity = Matrix::Identity(layer->in_features(), layer->in_features());
    const Matrix applied = (*layer)(identity).transpose();
    EXPECT_LT(slim::metrics::relative_frobenius(applied, loaded.model.linear_weight(name)), 1e-5)
        << name;
  }
  std::remove(path.c_str());
}

TEST(ModelFile, FourBitFileIsMuchSmallerThanFp32) {
  Transformer model = slim::test::reference_model();
  pipeline::compress_sequential(model, slim::test::reference_calibration(2).inputs,
                                pipeline::rtn_method(4).compress,
                                [](const std::string&) { return true; });
  const std::string dense_path = temp_path("fp32");
  const std::string packed_path = temp_path("int4");
  pipeline::save_compressed_model(dense_path, slim::test::reference_model());
  pipeline::save_compressed_model(packed_path, model);
  const auto dense = file_size(dense_path);
  const auto packed = file_size(packed_path);
  std::printf("test model: fp32 file %ju bytes, 4-bit g32 file %ju bytes (%.2fx smaller)\n", dense,
              packed, double(dense) / double(packed));
  // The embedding stays fp32 (a quarter of the parameters): the linears shrink ~6.4x.
  EXPECT_LT(double(packed), 0.45 * double(dense));
  expect_identical_outputs(model, pipeline::load_compressed_model(packed_path));
  std::remove(dense_path.c_str());
  std::remove(packed_path.c_str());
}

TEST(ModelFile, UncompressedModelRoundTripsAndStaysAPlainCheckpoint) {
  const Transformer& original = slim::test::reference_model();
  const std::string path = temp_path("plain");
  pipeline::save_compressed_model(path, original);
  const Transformer loaded = pipeline::load_compressed_model(path);
  EXPECT_FALSE(loaded.any_replaced());
  expect_same_layers(original, loaded);
  expect_identical_outputs(original, loaded);
  // Dense parameters use io/model.hpp's names and config keys: a plain reader takes the file.
  const slim::model::Weights plain = io::read_model_safetensors(path);
  EXPECT_TRUE(plain.token_embedding == original.weights().token_embedding);
  EXPECT_TRUE(plain.layers[1].w2 == original.weights().layers[1].w2);
  std::remove(path.c_str());
}

TEST(ModelFile, QuantizedLayerKeepsItsActivationPath) {
  Transformer model = slim::test::reference_model();
  const auto q = slim::quant::quantize(model.linear_weight("layers.1.attention.wq"),
                                       slim::quant::int4_group(32, true));
  model.replace(
      "layers.1.attention.wq",
      std::make_shared<slim::quant::Linear>(
          q, slim::quant::LinearOptions{.activations = slim::quant::ActivationPath::fp32}));
  io::TensorMap map;
  pipeline::put_compressed_model(map, model);
  const Transformer loaded = pipeline::get_compressed_model(map);
  const auto* layer =
      dynamic_cast<const slim::quant::Linear*>(loaded.replacement("layers.1.attention.wq").get());
  ASSERT_NE(layer, nullptr);
  EXPECT_EQ(layer->options().activations, slim::quant::ActivationPath::fp32);
  EXPECT_EQ(layer->quantized().codes(), q.codes());
  EXPECT_EQ(layer->quantized().scales_fp16(), q.scales_fp16());
  expect_identical_outputs(model, loaded);
}

TEST(ModelFile, LowRankSparseResidualLoadsOntoTheSameLayer) {
  // The reader's residual path, fed by the writer's residual encoder on a real dense + sparse
  // split of a real layer; the reference is the layer built directly from that split.
  Transformer model = slim::test::reference_model();
  const std::string name = "layers.0.feed_forward.w2";
  const auto split = slim::lowrank::dense_sparse(model.linear_weight(name), 8, 300);
  ASSERT_GT(split.sparse.nonZeros(), 0);
  const auto reference = std::make_shared<slim::lowrank::Linear>(split);
  model.replace(name, reference);
  io::TensorMap map;
  if constexpr (pipeline::detail::exposes_sparse_residual<slim::lowrank::Linear>::value) {
    pipeline::put_compressed_model(map, model);
  } else {
    // lowrank::Linear does not expose its residual: saving it must refuse, naming the layer...
    try {
      pipeline::put_compressed_model(map, model);
      FAIL() << "a hidden sparse residual was not refused";
    } catch (const slim::ArgumentError& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
    // ...and a file that holds one loads it.
    map = io::TensorMap{};
    Transformer factors_only = slim::test::reference_model();
    factors_only.replace(name, std::make_shared<slim::lowrank::Linear>(split.factors));
    pipeline::put_compressed_model(map, factors_only);
    pipeline::detail::put_sparse_residual(map, name, split.sparse);
  }
  const Transformer loaded = pipeline::get_compressed_model(map);
  expect_same_layers(model, loaded);
  expect_identical_outputs(model, loaded);
  EXPECT_LT(slim::metrics::relative_frobenius(loaded.linear_weight(name), split.reconstruct()),
            1e-6);
}

class UnknownLayer final : public slim::LinearLayer {
 public:
  explicit UnknownLayer(Matrix w) : w_(std::move(w)) {}
  Index in_features() const override { return w_.cols(); }
  Index out_features() const override { return w_.rows(); }
  void forward(const Eigen::Ref<const Matrix>& x, Matrix& y) const override {
    y = x * w_.transpose();
  }
  std::size_t bytes() const override { return 0; }
  std::string describe() const override { return "mystery"; }

 private:
  Matrix w_;
};

TEST(ModelFile, LayerOfUnknownTypeIsRefusedAndNothingIsWritten) {
  Transformer model = slim::test::reference_model();
  const std::string name = "layers.1.feed_forward.w3";
  model.replace(name, std::make_shared<UnknownLayer>(model.linear_weight(name)));
  const std::string path = temp_path("unknown");
  std::remove(path.c_str());
  try {
    pipeline::save_compressed_model(path, model);
    FAIL() << "an unknown layer type was saved";
  } catch (const slim::ArgumentError& e) {
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("mystery"), std::string::npos) << e.what();
  }
  EXPECT_EQ(std::fopen(path.c_str(), "rb"), nullptr);
  // Wrapped inside an AWQ layer, the inner layer's name is given.
  model.replace(name, std::make_shared<pipeline::InputScaledLinear>(
                          slim::Vector::Ones(model.linear_weight(name).cols()),
                          std::make_shared<UnknownLayer>(model.linear_weight(name))));
  io::TensorMap map;
  try {
    pipeline::put_compressed_model(map, model);
    FAIL() << "an unknown inner layer type was saved";
  } catch (const slim::ArgumentError& e) {
    EXPECT_NE(std::string(e.what()).find(name + ".inner"), std::string::npos) << e.what();
  }
}

// ---- corrupt and inconsistent files ----------------------------------------------------------

const io::TensorMap& mixed_map() {
  static const io::TensorMap map = [] {
    io::TensorMap m;
    pipeline::put_compressed_model(m, mixed_model(), {{"recipe", "mixed"}});
    return m;
  }();
  return map;
}

// Loads `bytes` as a file would be; returns the FormatError message, or "" if it loaded.
std::string load_error(const std::uint8_t* data, std::size_t size) {
  try {
    (void)pipeline::get_compressed_model(io::parse_safetensors(data, size));
    return "";
  } catch (const slim::FormatError& e) {
    return std::string("FormatError: ") + e.what();
  }
}

void expect_format_error(const io::TensorMap& map, const std::string& mentions) {
  try {
    (void)pipeline::get_compressed_model(map);
    ADD_FAILURE() << "loaded; expected a FormatError mentioning '" << mentions << "'";
  } catch (const slim::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(mentions), std::string::npos) << e.what();
  }
}

TEST(ModelFile, TruncatedFilesThrowFormatError) {
  const std::vector<std::uint8_t> bytes = io::serialize_safetensors(mixed_map());
  std::uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  const std::size_t n = bytes.size();
  for (std::size_t cut : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{8},
                          std::size_t{9}, std::size_t(header / 2), std::size_t(8 + header - 1),
                          std::size_t(8 + header), std::size_t(8 + header + 1),
                          std::size_t(8 + header + 4), (8 + header + n) / 2, n - 4, n - 1}) {
    ASSERT_LT(cut, n);
    EXPECT_NE(load_error(bytes.data(), cut), "") << "cut at " << cut << " of " << n;
  }
  // Through the file API too: the path is named.
  const std::string path = temp_path("truncated");
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(n / 2));
  }
  try {
    (void)pipeline::load_compressed_model(path);
    FAIL() << "a truncated file loaded";
  } catch (const slim::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
  EXPECT_THROW((void)pipeline::load_compressed_model(path), slim::IoError);
}

TEST(ModelFile, FlippedHeaderBytesThrowFormatErrorOrLoadNeverCrash) {
  // A flip inside free text (the recipe, a JSON space) may leave a valid file; every other flip
  // must be refused with FormatError, never a crash or another exception type.
  const std::vector<std::uint8_t> bytes = io::serialize_safetensors(mixed_map());
  std::uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  std::size_t refused = 0, tried = 0;
  for (std::size_t at = 0; at < 8 + header; at += 5) {
    for (std::uint8_t mask : {std::uint8_t{0x01}, std::uint8_t{0x80}}) {
      std::vector<std::uint8_t> corrupt = bytes;
      corrupt[at] ^= mask;
      ++tried;
      if (!load_error(corrupt.data(), corrupt.size()).empty()) ++refused;
    }
  }
  std::printf("header flips refused: %zu of %zu\n", refused, tried);
  EXPECT_GT(double(refused), 0.9 * double(tried));
}

TEST(ModelFile, WrongFormatOrVersionThrowsFormatError) {
  io::TensorMap map = mixed_map();
  map.metadata["slim.format_version"] = "2";
  expect_format_error(map, "slim.format_version");
  map.metadata.erase("slim.format_version");
  expect_format_error(map, "slim.format_version");
  map = mixed_map();
  map.metadata.erase("slim.format");
  expect_format_error(map, "slim.format");
  // A plain dense checkpoint is not a compressed-model file.
  io::TensorMap plain;
  io::put_model(plain, slim::test::reference_model().weights());
  expect_format_error(plain, "slim.format");
}

TEST(ModelFile, MissingOrMisshapenTensorsThrowFormatErrorNamingThem) {
  const std::string wk = "layers.0.attention.wk";
  for (const std::string& tensor : std::vector<std::string>{
           wk + ".values", wk + ".col_indices", wk + ".row_offsets", "layers.1.attention.wv.codes",
           "layers.0.attention.wo.U", "layers.0.feed_forward.w1.inverse_scales",
           "layers.0.feed_forward.w1.inner.qweight", "layers.1.attention.wq.scales",
           "output.values", "tok_embeddings.weight", "layers.1.ffn_norm.weight",
           "layers.0.feed_forward.w3.weight"}) {
    io::TensorMap map = mixed_map();
    ASSERT_EQ(map.tensors.erase(tensor), 1u) << tensor;
    expect_format_error(map, tensor);
  }
  {  // U of the wrong rank for V
    io::TensorMap map = mixed_map();
    const Matrix u = map.matrix("layers.0.attention.wo.U");
    map.put_matrix("layers.0.attention.wo.U", Matrix(u.leftCols(u.cols() - 1)));
    expect_format_error(map, "layers.0.attention.wo.V");
  }
  {  // a dense parameter of the wrong shape
    io::TensorMap map = mixed_map();
    map.put_matrix("layers.1.attention.wq.weight", Matrix::Zero(3, 3));
    map.metadata.erase("layers.1.attention.wq.kind");
    expect_format_error(map, "layers.1.attention.wq.weight");
  }
  {  // a config that disagrees with the stored layers
    io::TensorMap map = mixed_map();
    map.metadata["hidden_dim"] = "128";
    expect_format_error(map, "layers.0.feed_forward.w1");
  }
  {  // an unknown kind names the layer
    io::TensorMap map = mixed_map();
    map.metadata["layers.1.attention.wo.kind"] = "hologram";
    expect_format_error(map, "layers.1.attention.wo.kind");
  }
  {  // a lying seq_len is refused before anything is allocated from it
    io::TensorMap map = mixed_map();
    map.metadata["seq_len"] = "1000000000000";
    expect_format_error(map, "seq_len");
  }
}

TEST(ModelFile, InconsistentSparseStorageThrowsFormatErrorNamingTheLayer) {
  const std::string wk = "layers.1.attention.wk";
  {  // a column index out of range
    io::TensorMap map = mixed_map();
    io::Tensor& t = map.tensors.at(wk + ".col_indices");
    t.bytes[0] = 0xff;
    t.bytes[1] = 0x7f;
    expect_format_error(map, wk + ".col_indices");
  }
  {  // row offsets past nnz
    io::TensorMap map = mixed_map();
    io::Tensor& t = map.tensors.at(wk + ".row_offsets");
    t.bytes[t.bytes.size() - 1] = 0x10;
    expect_format_error(map, wk + ".row_offsets");
  }
  {  // a non-finite value: the factory's refusal becomes a FormatError naming the layer
    io::TensorMap map = mixed_map();
    io::Tensor& t = map.tensors.at(wk + ".values");
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(t.bytes.data(), &nan, sizeof nan);
    expect_format_error(map, wk);
  }
  {  // N:M positions out of order are not the canonical storage
    const std::string wv = "layers.1.attention.wv";
    io::TensorMap map = mixed_map();
    io::Tensor& t = map.tensors.at(wv + ".codes");
    const std::uint8_t b = t.bytes[0];  // the first group's two increasing 2-bit positions
    ASSERT_LT(b & 0x3, (b >> 2) & 0x3);
    t.bytes[0] = static_cast<std::uint8_t>((b & 0xf0) | ((b & 0x3) << 2) | ((b >> 2) & 0x3));
    expect_format_error(map, wv + ".codes");
  }
  {  // N:M with n > m
    io::TensorMap map = mixed_map();
    map.metadata["layers.0.attention.wv.n"] = "5";
    expect_format_error(map, "layers.0.attention.wv.n");
  }
}

}  // namespace

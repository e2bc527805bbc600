#include <slim/io.hpp>
#include <slim/quant/rtn.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/test_files.hpp"

#include <algorithm>
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

using slim::Matrix;
using slim::io::DType;
using slim::io::TensorMap;
using testing::HasSubstr;

std::vector<std::uint8_t> le64(std::uint64_t v) {
  std::vector<std::uint8_t> b(8);
  for (int i = 0; i < 8; ++i) b[i] = static_cast<std::uint8_t>(v >> (8 * i));
  return b;
}

// A safetensors file from a header string and raw data bytes, with a correct length prefix.
std::vector<std::uint8_t> make_file(const std::string& header,
                                    const std::vector<std::uint8_t>& data) {
  std::vector<std::uint8_t> file(8 + header.size() + data.size());
  const std::uint64_t length = header.size();
  std::memcpy(file.data(), &length, 8);
  std::copy(header.begin(), header.end(), file.begin() + 8);
  std::copy(data.begin(), data.end(),
            file.begin() + 8 + static_cast<std::ptrdiff_t>(header.size()));
  return file;
}

std::string parse_error(const std::vector<std::uint8_t>& file) {
  return format_error_of([&] { slim::io::parse_safetensors(file); });
}

// Nearest value of a 16-bit format by brute force over all finite codes, ties to the even code.
template <typename Decode>
float nearest_by_search(float x, Decode decode) {
  double best_distance = std::numeric_limits<double>::infinity();
  std::uint32_t best = 0;
  for (std::uint32_t code = 0; code < 65536; ++code) {
    const float v = decode(static_cast<std::uint16_t>(code));
    if (!std::isfinite(v)) continue;
    const double d = std::abs(static_cast<double>(v) - static_cast<double>(x));
    if (d < best_distance || (d == best_distance && (code & 1u) == 0 && (best & 1u) == 1)) {
      best_distance = d;
      best = code;
    }
  }
  return decode(static_cast<std::uint16_t>(best));
}

TEST(Safetensors, HandCraftedFileLoadsToKnownValues) {
  const std::string header = R"({"__metadata__":{"format":"pt"},)"
                             R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
                             R"("h":{"dtype":"F16","shape":[3],"data_offsets":[16,22]},)"
                             R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[22,26]},)"
                             R"("i":{"dtype":"I8","shape":[1,2],"data_offsets":[26,28]},)"
                             R"("u":{"dtype":"U8","shape":[],"data_offsets":[28,29]}})";
  const std::vector<std::uint8_t> data = {
      0x00, 0x00, 0x80, 0x3f,  // 1.0f
      0x00, 0x00, 0x00, 0xc0,  // -2.0f
      0x00, 0x00, 0x00, 0x3f,  // 0.5f
      0x00, 0x00, 0x40, 0x40,  // 3.0f
      0x00, 0x3c,              // fp16 1.0
      0x00, 0xc0,              // fp16 -2.0
      0x01, 0x00,              // fp16 smallest subnormal 2^-24
      0xc0, 0x3f,              // bf16 1.5
      0x80, 0xbf,              // bf16 -1.0
      0xff, 0x7f,              // int8 -1, 127
      0xc8,                    // uint8 200
  };
  const TensorMap map = slim::io::parse_safetensors(make_file(header, data));
  EXPECT_EQ(map.metadata.at("format"), "pt");
  ASSERT_EQ(map.tensors.size(), 5u);

  const Matrix a = map.matrix("a", 2, 2);
  EXPECT_EQ(a(0, 0), 1.0f);
  EXPECT_EQ(a(0, 1), -2.0f);
  EXPECT_EQ(a(1, 0), 0.5f);
  EXPECT_EQ(a(1, 1), 3.0f);
  const slim::Vector h = map.vector("h", 3);
  EXPECT_EQ(h(0), 1.0f);
  EXPECT_EQ(h(1), -2.0f);
  EXPECT_EQ(h(2), std::ldexp(1.0f, -24));
  const slim::Vector b = map.vector("b", 2);
  EXPECT_EQ(b(0), 1.5f);
  EXPECT_EQ(b(1), -1.0f);
  const Matrix i = map.matrix("i", 1, 2);
  EXPECT_EQ(i(0, 0), -1.0f);
  EXPECT_EQ(i(0, 1), 127.0f);
  EXPECT_EQ(map.at("u").shape.size(), 0u);
  EXPECT_EQ(map.matrix("u")(0, 0), 200.0f);
}

TEST(Safetensors, F32RoundTripIsBitExact) {
  Matrix m = slim::random::gaussian(7, 5, 11);
  m(0, 0) = std::numeric_limits<float>::denorm_min();
  m(0, 1) = -0.0f;
  m(0, 2) = std::numeric_limits<float>::max();
  TensorMap map;
  map.put_matrix("m", m);
  const TensorMap back = slim::io::parse_safetensors(slim::io::serialize_safetensors(map));
  const Matrix r = back.matrix("m", 7, 5);
  EXPECT_EQ(std::memcmp(r.data(), m.data(), sizeof(float) * 35), 0);
}

TEST(Safetensors, EveryFiniteF16AndBf16ValueRoundTripsExactly) {
  // Every finite 16-bit value, decoded to float, is representable: it must come back bit-exact.
  for (const DType dtype : {DType::F16, DType::BF16}) {
    std::vector<float> values;
    for (std::uint32_t code = 0; code < 65536; ++code) {
      const auto c = static_cast<std::uint16_t>(code);
      const float v = dtype == DType::F16 ? slim::fp16_to_fp32(c) : slim::bf16_to_fp32(c);
      if (std::isfinite(v)) values.push_back(v);
    }
    const Matrix m =
        Eigen::Map<const Matrix>(values.data(), 1, static_cast<slim::Index>(values.size()));
    TensorMap map;
    map.put_matrix("m", m, dtype);
    const TensorMap back = slim::io::parse_safetensors(slim::io::serialize_safetensors(map));
    EXPECT_EQ(back.at("m").dtype, dtype);
    const Matrix r = back.matrix("m");
    ASSERT_EQ(r.size(), m.size());
    EXPECT_EQ(std::memcmp(r.data(), m.data(), sizeof(float) * values.size()), 0)
        << slim::io::dtype_name(dtype);
  }
}

TEST(Safetensors, F16AndBf16RoundUnrepresentableValuesToNearest) {
  Matrix m = slim::random::gaussian(1, 64, 5);
  m.array() *= 3.0f;
  m(0, 0) = 1.0f + std::ldexp(1.0f, -11);  // exactly halfway between fp16 1 and 1+2^-10: even (1)
  m(0, 1) = 1.0f + 3.0f * std::ldexp(1.0f, -11);  // halfway, rounds up to the even code
  m(0, 2) = 1.0f + std::ldexp(1.0f, -8);          // halfway for bf16
  m(0, 3) = 3.0e-6f;                              // fp16 subnormal range
  m(0, 4) = 60000.0f;
  m(0, 5) = -1.0e-30f;
  for (const DType dtype : {DType::F16, DType::BF16}) {
    TensorMap map;
    map.put_matrix("m", m, dtype);
    const Matrix r = slim::io::parse_safetensors(slim::io::serialize_safetensors(map)).matrix("m");
    for (slim::Index c = 0; c < m.cols(); ++c) {
      const float expected = dtype == DType::F16 ? nearest_by_search(m(0, c), slim::fp16_to_fp32)
                                                 : nearest_by_search(m(0, c), slim::bf16_to_fp32);
      EXPECT_EQ(r(0, c), expected) << slim::io::dtype_name(dtype) << " value " << m(0, c);
    }
  }
}

TEST(Safetensors, RawByteTensorsAndMetadataRoundTripExactly) {
  std::vector<std::uint8_t> all(256);
  for (int i = 0; i < 256; ++i) all[i] = static_cast<std::uint8_t>(i);
  TensorMap map;
  map.put_bytes("u", DType::U8, {16, 16}, all);
  map.put_bytes("i", DType::I8, {256}, all);
  map.put_vector("v", slim::Vector::LinSpaced(3, 0.0f, 1.0f), DType::F16);
  map.metadata["note"] = "bits=4; \"quoted\"";
  const auto bytes = slim::io::serialize_safetensors(map);
  const TensorMap back = slim::io::parse_safetensors(bytes);
  EXPECT_EQ(back.tensors, map.tensors);
  EXPECT_EQ(back.metadata, map.metadata);
  EXPECT_EQ(back.matrix("i")(0, 255), -1.0f);
  EXPECT_EQ(slim::io::serialize_safetensors(back), bytes);
}

TEST(Safetensors, WriterAlignsHeaderAndEveryTensorToItsElementSize) {
  TensorMap map;
  map.put_bytes("a_odd", DType::U8, {3}, {1, 2, 3});
  map.put_vector("b_half", slim::Vector::Ones(3), DType::F16);
  map.put_vector("c_float", slim::Vector::Ones(5), DType::F32);
  const auto bytes = slim::io::serialize_safetensors(map);
  std::uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ((8 + header_len) % 8, 0u);
  const auto header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + header_len);
  for (const auto& [name, dtype_size] : std::vector<std::pair<std::string, std::uint64_t>>{
           {"a_odd", 1}, {"b_half", 2}, {"c_float", 4}}) {
    const auto begin = header.at(name).at("data_offsets")[0].get<std::uint64_t>();
    EXPECT_EQ(begin % dtype_size, 0u) << name;
  }
}

TEST(Safetensors, FileRoundTripThroughDisk) {
  const std::string path = temp_path(".safetensors");
  TensorMap map;
  map.put_matrix("w", slim::random::gaussian(4, 6, 2), DType::BF16);
  slim::io::write_safetensors(path, map);
  EXPECT_EQ(slim::io::read_safetensors(path).tensors, map.tensors);
}

TEST(Safetensors, FileShorterThanTheLengthPrefixIsFormatError) {
  EXPECT_THAT(parse_error({1, 0, 0}), HasSubstr("header length"));
  EXPECT_THAT(parse_error({}), HasSubstr("header length"));
}

TEST(Safetensors, HeaderLengthLargerThanFileIsFormatError) {
  auto file = make_file("{}", {});
  file[0] = 200;
  EXPECT_THAT(parse_error(file), HasSubstr("exceeds"));
  auto huge = le64(std::numeric_limits<std::uint64_t>::max());
  EXPECT_THAT(parse_error(huge), HasSubstr("exceeds"));
}

TEST(Safetensors, TruncatedOrNonJsonHeaderIsFormatError) {
  EXPECT_THAT(parse_error(make_file(R"({"a":{"dtype":"F32")", {})), HasSubstr("JSON"));
  EXPECT_THAT(parse_error(make_file("[1,2]", {})), HasSubstr("'{'"));
  EXPECT_THAT(parse_error(make_file("", {})), HasSubstr("'{'"));
  EXPECT_THAT(parse_error(make_file(R"({"a":[1]})", {})), HasSubstr("'a'"));
  EXPECT_THAT(parse_error(make_file(R"({"__metadata__":{"k":1}})", {})), HasSubstr("'k'"));
}

TEST(Safetensors, LyingOffsetsAreFormatError) {
  const std::vector<std::uint8_t> data(8, 0);
  EXPECT_THAT(
      parse_error(make_file(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data)),
      HasSubstr("'w'"));
  EXPECT_THAT(
      parse_error(make_file(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", data)),
      HasSubstr("begin after end"));
  EXPECT_THAT(
      parse_error(make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", data)),
      HasSubstr("cover only 4"));
  EXPECT_THAT(
      parse_error(make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data)),
      HasSubstr("belong to no tensor"));
  EXPECT_THAT(
      parse_error(make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-1,8]}})", data)),
      HasSubstr("'w'"));
  EXPECT_THAT(
      parse_error(make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", data)),
      HasSubstr("data_offsets"));
}

TEST(Safetensors, OverlappingTensorsAreFormatError) {
  const std::vector<std::uint8_t> data(8, 0);
  const std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  const std::string message = parse_error(make_file(header, data));
  EXPECT_THAT(message, HasSubstr("overlaps"));
  EXPECT_THAT(message, HasSubstr("'y'"));
}

TEST(Safetensors, WrongDtypeSizeForShapeIsFormatError) {
  const std::vector<std::uint8_t> data(8, 0);
  EXPECT_THAT(
      parse_error(make_file(R"({"w":{"dtype":"F16","shape":[2,3],"data_offsets":[0,8]}})", data)),
      HasSubstr("needs 12"));
  EXPECT_THAT(
      parse_error(make_file(
          R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})", data)),
      HasSubstr("2^64"));
  EXPECT_THAT(
      parse_error(make_file(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data)),
      HasSubstr("non-negative"));
  EXPECT_THAT(
      parse_error(make_file(R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", data)),
      HasSubstr("non-negative"));
}

TEST(Safetensors, UnknownDtypeOrFieldIsFormatError) {
  const std::vector<std::uint8_t> data(8, 0);
  EXPECT_THAT(
      parse_error(make_file(R"({"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", data)),
      HasSubstr("unsupported dtype 'F64'"));
  EXPECT_THAT(parse_error(make_file(R"({"w":{"shape":[1],"data_offsets":[0,8]}})", data)),
              HasSubstr("'dtype'"));
  EXPECT_THAT(parse_error(make_file(
                  R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}})", data)),
              HasSubstr("unknown field 'extra'"));
}

TEST(Safetensors, ReadingAMissingFileIsIoErrorAndAMalformedOneNamesThePath) {
  EXPECT_THROW(slim::io::read_safetensors(temp_path(".does-not-exist")), slim::IoError);
  const std::string path = temp_path(".safetensors");
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fputs("short", f);
    std::fclose(f);
  }
  EXPECT_THAT(format_error_of([&] { slim::io::read_safetensors(path); }), HasSubstr(path));
}

TEST(TensorMap, MissingOrMisshapenTensorIsFormatError) {
  TensorMap map;
  map.put_matrix("w", Matrix::Ones(2, 3));
  EXPECT_THAT(format_error_of([&] { map.at("nope"); }), HasSubstr("'nope' is missing"));
  EXPECT_THAT(format_error_of([&] { map.matrix("w", 3, 2); }), HasSubstr("[3, 2]"));
  EXPECT_THAT(format_error_of([&] { map.vector("w", 6); }), HasSubstr("'w'"));
  map.tensors["w"].bytes.pop_back();  // a hand-edited tensor that lies about its size
  EXPECT_THAT(format_error_of([&] { map.matrix("w"); }), HasSubstr("holds 23 bytes"));
}

TEST(TensorMap, InconsistentPutsAreArgumentErrors) {
  TensorMap map;
  EXPECT_THROW(map.put("t", slim::io::Tensor{DType::F32, {2}, std::vector<std::uint8_t>(7)}),
               slim::ArgumentError);
  EXPECT_THROW(map.put("t", slim::io::Tensor{DType::U8, {-1}, {}}), slim::ArgumentError);
  EXPECT_THROW(map.put_matrix("t", Matrix::Ones(2, 2), DType::I8), slim::ArgumentError);
  EXPECT_THROW(map.put_bytes("t", DType::F16, {1}, {0, 0}), slim::ArgumentError);
  map.put_vector("__metadata__", slim::Vector::Ones(2));
  EXPECT_THROW(slim::io::serialize_safetensors(map), slim::ArgumentError);
  TensorMap bad_utf8;
  bad_utf8.put_vector(std::string("\xff\xfe"), slim::Vector::Ones(1));
  EXPECT_THROW(slim::io::serialize_safetensors(bad_utf8), slim::ArgumentError);
}

// Quantized matrices: every scheme shape (bits 2..8, group / channel / tensor, sym / asym).
TEST(QuantizedCheckpoint, SaveAndLoadIsBitIdenticalForEveryScheme) {
  const Matrix w = slim::random::student_t(6, 64, 4, 17);
  const std::vector<slim::quant::Scheme> schemes = {
      slim::quant::int4_group(32),
      slim::quant::int4_group(16, /*symmetric=*/true),
      slim::quant::int8_per_channel(),
      {.bits = 3,
       .group_size = 0,
       .symmetric = false,
       .granularity = slim::quant::Granularity::per_channel},
      {.bits = 2, .group_size = 8, .symmetric = false},
      {.bits = 5,
       .group_size = 0,
       .symmetric = false,
       .granularity = slim::quant::Granularity::per_tensor},
  };
  const std::string path = temp_path(".safetensors");
  for (const auto& scheme : schemes) {
    const slim::quant::QuantizedMatrix q = slim::quant::quantize(w, scheme);
    slim::io::save_quantized(path, q);
    const slim::quant::QuantizedMatrix r = slim::io::load_quantized(path);
    EXPECT_EQ(r.rows(), q.rows());
    EXPECT_EQ(r.cols(), q.cols());
    EXPECT_EQ(r.scheme().bits, scheme.bits);
    EXPECT_EQ(r.scheme().group_size, scheme.group_size);
    EXPECT_EQ(r.scheme().symmetric, scheme.symmetric);
    EXPECT_EQ(r.scheme().granularity, scheme.granularity);
    EXPECT_EQ(r.codes(), q.codes()) << scheme.name();
    EXPECT_EQ(r.scales_fp16(), q.scales_fp16()) << scheme.name();
    EXPECT_EQ(r.zeros_packed(), q.zeros_packed()) << scheme.name();
    const Matrix dq = q.dequantize();
    const Matrix dr = r.dequantize();
    EXPECT_EQ(std::memcmp(dq.data(), dr.data(), sizeof(float) * dq.size()), 0) << scheme.name();
  }
}

TEST(QuantizedCheckpoint, SeveralMatricesShareOneFileUnderTheirNames) {
  TensorMap map;
  const auto a =
      slim::quant::quantize(slim::random::gaussian(4, 32, 1), slim::quant::int4_group(16));
  const auto b =
      slim::quant::quantize(slim::random::gaussian(3, 8, 2), slim::quant::int8_per_channel());
  slim::io::put_quantized(map, "layers.0.wq", a);
  slim::io::put_quantized(map, "layers.0.wk", b);
  const TensorMap back = slim::io::parse_safetensors(slim::io::serialize_safetensors(map));
  EXPECT_EQ(slim::io::get_quantized(back, "layers.0.wq").codes(), a.codes());
  EXPECT_EQ(slim::io::get_quantized(back, "layers.0.wk").scales_fp16(), b.scales_fp16());
}

TEST(QuantizedCheckpoint, MalformedStorageIsFormatError) {
  const auto q =
      slim::quant::quantize(slim::random::gaussian(4, 32, 3), slim::quant::int4_group(16));
  TensorMap good;
  slim::io::put_quantized(good, "w", q);

  TensorMap m = good;
  m.metadata["w.bits"] = "four";
  EXPECT_THAT(format_error_of([&] { slim::io::get_quantized(m, "w"); }), HasSubstr("w.bits"));
  m = good;
  m.metadata["w.bits"] = "9";
  EXPECT_THAT(format_error_of([&] { slim::io::get_quantized(m, "w"); }), HasSubstr("2..8"));
  m = good;
  m.metadata["w.group_size"] = "5";
  EXPECT_THAT(format_error_of([&] { slim::io::get_quantized(m, "w"); }), HasSubstr("divide"));
  m = good;
  m.metadata["w.granularity"] = "per_row";
  EXPECT_THAT(format_error_of([&] { slim::io::get_quantized(m, "w"); }), HasSubstr("per_row"));
  m = good;
  m.metadata.erase("w.symmetric");
  EXPECT_THAT(format_error_of([&] { slim::io::get_quantized(m, "w"); }), HasSubstr("w.symmetric"));
  m = good;
  m.tensors.erase("w.qzeros");
  EXPECT_THAT(format_error_of([&] { slim::io::get_quantized(m, "w"); }), HasSubstr("w.qzeros"));
  m = good;
  m.put_vector("w.scales", slim::Vector::Ones(8), DType::F16);
  EXPECT_THAT(format_error_of([&] { slim::io::get_quantized(m, "w"); }), HasSubstr("w.scales"));
  m = good;
  m.put_bytes("w.qweight", DType::U8, {4, 15}, std::vector<std::uint8_t>(60));
  EXPECT_THAT(format_error_of([&] { slim::io::get_quantized(m, "w"); }), HasSubstr("w.qweight"));
  m = good;
  m.tensors["w.scales"].bytes[0] = 0x00;
  m.tensors["w.scales"].bytes[1] = 0x7e;  // fp16 NaN
  EXPECT_THAT(format_error_of([&] { slim::io::get_quantized(m, "w"); }), HasSubstr("non-finite"));
}

}  // namespace

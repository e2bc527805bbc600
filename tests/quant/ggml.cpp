#include <slim/core.hpp>
#include <slim/quant/ggml.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <vector>

namespace {

using slim::Index;
using slim::Matrix;
namespace ggml = slim::quant::ggml;
using ggml::Format;

std::vector<std::uint8_t> bytes_of(std::initializer_list<int> list) {
  std::vector<std::uint8_t> out;
  for (const int v : list) out.push_back(static_cast<std::uint8_t>(v));
  return out;
}

// A 1 x n matrix whose first values are `head` and the rest zero.
Matrix row_with(Index n, std::initializer_list<std::pair<Index, float>> values) {
  Matrix w = Matrix::Zero(1, n);
  for (const auto& [i, v] : values) w(0, i) = v;
  return w;
}

// Every format's block geometry is ggml's (ggml-common.h): QK8_0 = QK4_0 = QK4_1 = 32,
// QK_K = 256, and the packed structs have no padding.
TEST(Ggml, FormatTableMatchesGgmlBlockGeometry) {
  struct Expected {
    Format format;
    Index block_size;
    std::size_t block_bytes;
    double bits;
  };
  const Expected expected[] = {{Format::q8_0, 32, 34, 8.5},
                               {Format::q4_0, 32, 18, 4.5},
                               {Format::q4_1, 32, 20, 5.0},
                               {Format::q4_K, 256, 144, 4.5}};
  for (const auto& e : expected) {
    const auto& info = ggml::format_info(e.format);
    EXPECT_EQ(info.format, e.format);
    EXPECT_EQ(info.block_size, e.block_size) << info.name;
    EXPECT_EQ(info.block_bytes, e.block_bytes) << info.name;
    EXPECT_DOUBLE_EQ(info.bits_per_weight(), e.bits) << info.name;
  }
}

// Q8_0 with amax 127: d = 127/127 = 1 (fp16 0x3C00 -> bytes 00 3C), id = 1, q = roundf(x),
// which rounds halves AWAY from zero: 0.5 -> 1, -0.5 -> -1 (0xFF), 1.5 -> 2, 2.5 -> 3,
// -2.5 -> -3 (0xFD), 3.49 -> 3, 126.5 -> 127 (0x7F), -0.49 -> 0; -127 -> 0x81.
TEST(Ggml, Q8_0PinnedBytesRoundHalvesAwayFromZero) {
  const Matrix w = row_with(32, {{0, 127.0f},
                                 {1, -127.0f},
                                 {2, 0.5f},
                                 {3, -0.5f},
                                 {4, 1.5f},
                                 {5, 2.5f},
                                 {6, -2.5f},
                                 {7, 3.49f},
                                 {8, 126.5f},
                                 {9, -0.49f}});
  const auto q = ggml::quantize(w, Format::q8_0);
  std::vector<std::uint8_t> expected =
      bytes_of({0x00, 0x3C, 0x7F, 0x81, 0x01, 0xFF, 0x02, 0x03, 0xFD, 0x03, 0x7F, 0x00});
  expected.resize(34, 0x00);
  EXPECT_EQ(q.data, expected);
}

// Q8_0 with amax 1: d = 1/127 = 0.0078740157 in fp32; fp16 keeps 10 mantissa bits:
// d / 2^-7 = 1.00787 -> mantissa round(0.00787 * 1024) = round(8.06) = 8, exponent -7 + 15 = 8,
// so d16 = 0x2000 | 8 = 0x2008 (bytes 08 20), value 1.0078125 * 2^-7 = 0.00787353515625.
// Codes use the fp32 scale: id = 1 / (1/127) = 127 exactly in fp32, so 1 -> 127 (0x7F),
// -0.5 -> -63.5 -> -64 (0xC0), 0.25 -> 31.75 -> 32 (0x20); dequantized 1 -> 127 * d16.
TEST(Ggml, Q8_0CodesUseTheFp32ScaleAndStoreItInFp16) {
  const Matrix w = row_with(32, {{0, 1.0f}, {1, -0.5f}, {2, 0.25f}});
  const auto q = ggml::quantize(w, Format::q8_0);
  std::vector<std::uint8_t> expected = bytes_of({0x08, 0x20, 0x7F, 0xC0, 0x20});
  expected.resize(34, 0x00);
  EXPECT_EQ(q.data, expected);
  const Matrix back = q.dequantize();
  EXPECT_EQ(back(0, 0), 127.0f * 0.00787353515625f);
  EXPECT_EQ(back(0, 1), -64.0f * 0.00787353515625f);
}

// Q4_0 block whose largest |x| is the NEGATIVE value -8 at index 0: d = max / -8 = 1
// (00 3C), id = 1, q = min(15, trunc(x + 8.5)), i.e. halves round UP in the code domain.
// x:  -8 -> 0.5 -> 0      7 -> 15.5 -> 15     0.5 -> 9.0 -> 9     -0.5 -> 8.0 -> 8
//    1.5 -> 10          -1.5 -> 7           8 (same |x|, later, so not the max) -> 16.5 -> 16
//    -> clamped 15 (dequantizes to 7: the positive side only reaches +7 d)      0 -> 8
//    2.5 (index 16) -> 11   -2.5 -> 6   3.25 -> 11.75 -> 11   -3.75 -> 4.75 -> 4
// Byte j = code(x[j]) | code(x[j + 16]) << 4:
//   0 | 11<<4 = B0, 15 | 6<<4 = 6F, 9 | 11<<4 = B9, 8 | 4<<4 = 48, 10 | 8<<4 = 8A,
//   7 | 8<<4 = 87, 15 | 8<<4 = 8F, then 8 | 8<<4 = 88 for bytes 7..15.
const std::vector<std::pair<Index, float>> kQ4_0Block = {
    {0, -8.0f}, {1, 7.0f},  {2, 0.5f},   {3, -0.5f},  {4, 1.5f},   {5, -1.5f},
    {6, 8.0f},  {16, 2.5f}, {17, -2.5f}, {18, 3.25f}, {19, -3.75f}};

Matrix q4_0_block(float sign) {
  Matrix w = Matrix::Zero(1, 32);
  for (const auto& [i, v] : kQ4_0Block) w(0, i) = sign * v;
  return w;
}

TEST(Ggml, Q4_0PinnedBytesWhenTheMaxMagnitudeValueIsNegative) {
  const auto q = ggml::quantize(q4_0_block(1.0f), Format::q4_0);
  const auto expected = bytes_of({0x00, 0x3C, 0xB0, 0x6F, 0xB9, 0x48, 0x8A, 0x87, 0x8F, 0x88, 0x88,
                                  0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88});
  EXPECT_EQ(q.data, expected);
  const Matrix back = q.dequantize();
  EXPECT_EQ(back(0, 0), -8.0f);  // the max-magnitude value is exact
  EXPECT_EQ(back(0, 6), 7.0f);   // +8 clips to +7 d
  EXPECT_EQ(back(0, 2), 1.0f);   // 0.5 rounds up
  EXPECT_EQ(back(0, 3), 0.0f);   // -0.5 rounds up too
}

// Negating the block makes the max-magnitude value +8, so d = 8 / -8 = -1 (fp16 0xBC00,
// bytes 00 BC) and id = -1: every x * id is the same as before, so the codes are identical and
// only d's sign changes; now -8 (index 6) is the value that clips, to -7.
TEST(Ggml, Q4_0SignOfTheMaxValueFlipsTheScale) {
  const auto q = ggml::quantize(q4_0_block(-1.0f), Format::q4_0);
  const auto expected = bytes_of({0x00, 0xBC, 0xB0, 0x6F, 0xB9, 0x48, 0x8A, 0x87, 0x8F, 0x88, 0x88,
                                  0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88});
  EXPECT_EQ(q.data, expected);
  const Matrix back = q.dequantize();
  const Matrix back_positive = ggml::quantize(q4_0_block(1.0f), Format::q4_0).dequantize();
  EXPECT_TRUE(back.isApprox(-back_positive, 0.0f));
  EXPECT_EQ(back(0, 6), -7.0f);
}

// Q4_1 with min -1 and max 14: d = 15/15 = 1 (00 3C), m = -1 (00 BC), id = 1,
// q = min(15, trunc((x + 1) + 0.5)): -1 -> 0, 14 -> 15.5 -> 15, 0.5 -> 2.0 -> 2 (half up),
// -0.5 -> 1.0 -> 1 (half up), 6.5 -> 8, 2.25 -> 3.75 -> 3, 0 -> 1.5 -> 1,
// 13.5 (index 16) -> 15, 7 (index 17) -> 8.5 -> 8.
// Bytes: 0 | 15<<4 = F0, 15 | 8<<4 = 8F, 2 | 1<<4 = 12, 1 | 1<<4 = 11, 8 | 1<<4 = 18,
// 3 | 1<<4 = 13, then 11 for bytes 6..15.
TEST(Ggml, Q4_1PinnedBytesRoundHalvesUp) {
  const Matrix w = row_with(32, {{0, -1.0f},
                                 {1, 14.0f},
                                 {2, 0.5f},
                                 {3, -0.5f},
                                 {4, 6.5f},
                                 {5, 2.25f},
                                 {16, 13.5f},
                                 {17, 7.0f}});
  const auto q = ggml::quantize(w, Format::q4_1);
  std::vector<std::uint8_t> expected =
      bytes_of({0x00, 0x3C, 0x00, 0xBC, 0xF0, 0x8F, 0x12, 0x11, 0x18, 0x13});
  expected.resize(20, 0x11);
  EXPECT_EQ(q.data, expected);
  const Matrix back = q.dequantize();
  EXPECT_EQ(back(0, 2), 1.0f);
  EXPECT_EQ(back(0, 3), 0.0f);
}

// All-zero blocks. Q8_0: d = 0 -> all zero bytes. Q4_0: max = 0 so d = 0 / -8 = -0.0, whose
// fp16 is 0x8000 (bytes 00 80); id = 0, codes trunc(0 + 8.5) = 8 -> bytes 88. Q4_1: d = m = 0,
// codes trunc(0.5) = 0. Q4_K: make_qkx2_quants returns scale 0 and min 0 for every sub-block,
// so d = dmin = 0, the 6-bit scales are 0 and the levels stay 0: 144 zero bytes. All dequantize
// to zeros.
TEST(Ggml, AllZeroBlocksHavePinnedBytesAndDequantizeToZero) {
  const Matrix zeros = Matrix::Zero(2, 256);
  std::vector<std::uint8_t> q4_0_block = bytes_of({0x00, 0x80});
  q4_0_block.resize(18, 0x88);
  for (const Format f : {Format::q8_0, Format::q4_0, Format::q4_1, Format::q4_K}) {
    const auto q = ggml::quantize(zeros, f);
    const auto& info = ggml::format_info(f);
    ASSERT_EQ(q.data.size(), 2 * 256 / info.block_size * info.block_bytes) << info.name;
    for (std::size_t i = 0; i < q.data.size(); ++i) {
      const std::uint8_t want =
          f == Format::q4_0 ? q4_0_block[i % info.block_bytes] : std::uint8_t{0};
      ASSERT_EQ(q.data[i], want) << info.name << " byte " << i;
    }
    EXPECT_TRUE((q.dequantize().array() == 0.0f).all()) << info.name;
  }
}

// Q4_K of a constant 1.0 super-block, step by step through quantize_row_q4_K_ref:
// each sub-block: weights = sqrt(32/32) + |1| = 2, min = 0 (clamped), max = 1, iscale = 15,
// L = 15, scale = 1/15 (fp32 0.0666666701), error 0; every trial iscale gives equal levels l,
// so D = sum_w * sum_l2 - sum_l^2 = 64 * 64 l^2 / 2... = 0 exactly and no trial is taken.
// max_scale = 1/15, max_min = 0: inv_scale = 63 / (1/15) = 944.99994 -> nearest_int 945 ->
// uint8 945 mod 256 = 177 -> MIN(63, 177) = 63; lm = 0.
// Scale bytes: j < 4: scales[j] = 63, scales[j+4] = 0; j >= 4: scales[j+4] = 63 & 15 = 0x0F and
// scales[j-4] |= (63 >> 4) << 6 = 0xC0 -> bytes 0..3 = 0xFF, 4..7 = 0x00, 8..11 = 0x0F.
// d = fp16(0.0666666701 / 63 = 0.00105820) = 2^-10 * (1 + 86/1024) -> (5 << 10) | 86 = 0x1456
// (bytes 56 14), dmin = 0. Requantize: nearest_int(1 / (d16 * 63)) = nearest_int(14.995) = 15,
// so every nibble is 15: 128 bytes of 0xFF.
TEST(Ggml, Q4_KPinnedBytesForAConstantBlock) {
  const Matrix w = Matrix::Constant(1, 256, 1.0f);
  const auto q = ggml::quantize(w, Format::q4_K);
  std::vector<std::uint8_t> expected = bytes_of({0x56, 0x14, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF,
                                                 0x00, 0x00, 0x00, 0x00, 0x0F, 0x0F, 0x0F, 0x0F});
  expected.resize(144, 0xFF);
  EXPECT_EQ(q.data, expected);
}

// Known outputs of ggml itself: quantize_row_{q8_0,q4_0,q4_1,q4_K}_ref of libggml-base.so
// (llama.cpp as packaged by node-llama-cpp 3.22.1, ggml-base built without FMA) on
// x_i = ((73 i + 19) mod 211 - 105) / 16 * (i mod 5 + 1), i = 0..255 (exact in fp32).
const std::uint8_t kQ80Pinned[272] = {
    0x3e, 0x33, 0xe8, 0xf9, 0x32, 0xaa, 0xf9, 0x13, 0xd9, 0x02, 0x54, 0xaa, 0x03, 0x2e, 0xd3, 0x15,
    0x7f, 0xf3, 0x0f, 0x53, 0xd6, 0x30, 0xe4, 0xef, 0x24, 0x97, 0xe2, 0x0e, 0xd0, 0xf4, 0x41, 0x93,
    0xfe, 0x25, 0x8f, 0x33, 0xc8, 0x02, 0x63, 0xef, 0x05, 0x42, 0xc6, 0x18, 0x18, 0xe7, 0x15, 0x69,
    0xcc, 0x09, 0xc9, 0xe7, 0x2c, 0x81, 0xfa, 0x1a, 0xba, 0xf0, 0x4d, 0xeb, 0xfc, 0x34, 0xb4, 0x01,
    0x14, 0xde, 0x07, 0x57, 0xb7, 0x33, 0xb7, 0x04, 0x2f, 0xdb, 0x1a, 0x7f, 0xf6, 0x11, 0xae, 0xdf,
    0x35, 0xe7, 0xf4, 0x26, 0xa4, 0xeb, 0x0f, 0xd6, 0xfa, 0x43, 0xa1, 0x00, 0x26, 0xcd, 0x08, 0x69,
    0xf1, 0x08, 0x45, 0xcd, 0x1f, 0x19, 0x18, 0x34, 0xec, 0x17, 0x67, 0xd8, 0x0a, 0xd0, 0xee, 0x2f,
    0x92, 0xfc, 0x1b, 0xc4, 0xf7, 0x4e, 0xee, 0x00, 0x35, 0xc0, 0x09, 0x14, 0xe4, 0x0b, 0x56, 0xc3,
    0x06, 0x2f, 0xe1, 0x1e, 0x7f, 0xf8, 0x13, 0xb7, 0xda, 0x32, 0xe2, 0x45, 0xe5, 0xf5, 0x30, 0x9f,
    0xf1, 0x12, 0xd4, 0xfe, 0x53, 0x9e, 0x02, 0x2e, 0xcc, 0x10, 0x7f, 0xf1, 0x0d, 0x53, 0xce, 0x2c,
    0x1e, 0xec, 0x21, 0x8b, 0xd9, 0x0d, 0xca, 0xef, 0x3f, 0x85, 0xf4, 0x33, 0xfd, 0x1f, 0xc7, 0xfd,
    0x58, 0xef, 0x03, 0x3b, 0xc4, 0x10, 0x16, 0xe6, 0x10, 0x5f, 0xc9, 0x07, 0x33, 0xe5, 0x25, 0x81,
    0xf9, 0x17, 0xba, 0xec, 0x43, 0xeb, 0xfa, 0x2e, 0xb3, 0xfb, 0x11, 0xdd, 0x53, 0x33, 0x03, 0x54,
    0xad, 0x03, 0x2e, 0xd5, 0x16, 0x7f, 0xf4, 0x0f, 0x53, 0xd8, 0x31, 0xe4, 0xf0, 0x24, 0x99, 0xe3,
    0x0e, 0xd1, 0xf5, 0x42, 0x95, 0xff, 0x25, 0xc7, 0x03, 0x68, 0xef, 0x06, 0x45, 0xc5, 0xcc, 0x33,
    0x18, 0x18, 0xe8, 0x15, 0x67, 0xcf, 0x09, 0xcb, 0xe9, 0x2c, 0x86, 0xfa, 0x1a, 0xbd, 0xf2, 0x4c,
    0xec, 0xfd, 0x34, 0xb7, 0x03, 0x13, 0xe0, 0x08, 0x55, 0xb9, 0x05, 0x2f, 0xdc, 0x1b, 0x7f, 0xf6,
};
const std::uint8_t kQ40Pinned[144] = {
    0x30, 0xc3, 0x79, 0x38, 0xb5, 0x5d, 0xa8, 0x97, 0x6a, 0xf8, 0xa3, 0x7d, 0xb8, 0x95, 0x4b, 0xf7,
    0x80, 0x69, 0x80, 0x43, 0xb4, 0x08, 0x8e, 0xa7, 0x48, 0x7c, 0xd4, 0x7a, 0x8a, 0xb6, 0x39, 0x8f,
    0x95, 0x69, 0x85, 0xd6, 0xa8, 0xc3, 0x7d, 0xb8, 0x85, 0x4a, 0xe6, 0x80, 0x69, 0xb7, 0x7d, 0x1a,
    0x95, 0x7a, 0x49, 0xb6, 0x6e, 0x69, 0x10, 0xc4, 0x59, 0xc7, 0x72, 0x7b, 0xa7, 0x7b, 0x39, 0xc5,
    0x8f, 0x58, 0xa6, 0x6c, 0x09, 0x93, 0x79, 0xd8, 0xcc, 0xc2, 0x0a, 0x94, 0x7a, 0x39, 0xb5, 0x5e,
    0x69, 0x97, 0x6b, 0xf8, 0xa3, 0x7e, 0xb8, 0x95, 0x4b, 0xf7, 0xe4, 0x43, 0xb8, 0x6a, 0xa4, 0x08,
    0x8e, 0x97, 0x48, 0x7c, 0xc4, 0x79, 0x89, 0xb6, 0x39, 0x8e, 0x95, 0x68, 0x44, 0xc3, 0xe8, 0xa3,
    0x7d, 0xb8, 0x95, 0x4b, 0xf7, 0x80, 0x69, 0xc7, 0x83, 0x1b, 0x95, 0x8a, 0x49, 0xc6, 0xbc, 0xc3,
    0x96, 0x87, 0x59, 0xd7, 0x82, 0x7b, 0xa7, 0x8b, 0x39, 0xc5, 0x8f, 0x58, 0xa6, 0x6c, 0x09, 0x93,
};
const std::uint8_t kQ41Pinned[160] = {
    0x20, 0x43, 0x2c, 0xce, 0x85, 0xc6, 0x4a, 0xa1, 0x56, 0x68, 0x94, 0x07, 0x5c, 0x81, 0x47, 0x6a,
    0xb4, 0x08, 0x7f, 0x96, 0x4d, 0x43, 0x80, 0xcf, 0xb5, 0x08, 0x8f, 0xa7, 0x49, 0x7c, 0xd4, 0x7a,
    0x8a, 0xc7, 0x3a, 0x8f, 0x95, 0x69, 0x95, 0xe7, 0x20, 0x43, 0xb4, 0xcd, 0x71, 0x47, 0x6a, 0xb4,
    0x08, 0x6f, 0x96, 0x38, 0x71, 0xe4, 0x5a, 0x75, 0xb6, 0x39, 0x90, 0x85, 0x0b, 0x44, 0x08, 0xcf,
    0xa6, 0x38, 0x8d, 0x84, 0x58, 0x84, 0xc6, 0x3a, 0x70, 0xa7, 0x59, 0x93, 0xf6, 0x6c, 0x86, 0x27,
    0x20, 0x43, 0x90, 0xce, 0xf6, 0x6b, 0x86, 0xc7, 0x4a, 0xa2, 0x96, 0x68, 0x95, 0x07, 0x5c, 0x81,
    0x47, 0x6a, 0xb4, 0x08, 0x57, 0x43, 0xe4, 0xcf, 0xc8, 0x7b, 0xb5, 0x08, 0x8f, 0xa7, 0x49, 0x7d,
    0xd5, 0x7a, 0x8a, 0xc7, 0x3a, 0x8f, 0xa5, 0x69, 0x20, 0x43, 0x18, 0xce, 0x07, 0x5c, 0x81, 0x47,
    0x6a, 0xb4, 0x08, 0x7f, 0x96, 0x38, 0x7c, 0xe4, 0x6a, 0x75, 0xb6, 0x39, 0x0b, 0x44, 0x6c, 0xcf,
    0x69, 0x79, 0xa6, 0x39, 0x8e, 0x94, 0x58, 0x84, 0xc6, 0x3a, 0x80, 0xa7, 0x59, 0x93, 0xf6, 0x7c,
};
const std::uint8_t kQ4kPinned[144] = {
    0x1f, 0x2c, 0xd6, 0x37, 0xf6, 0xfb, 0xf6, 0xff, 0xf1, 0xfb, 0xee, 0xf9, 0x37, 0xf8, 0x17, 0xbd,
    0x45, 0x86, 0xea, 0x71, 0x86, 0xc8, 0x44, 0x97, 0x9c, 0x61, 0x97, 0xea, 0x44, 0x88, 0x4f, 0x66,
    0xa8, 0x0c, 0x74, 0x9a, 0x35, 0x76, 0xc9, 0x60, 0x75, 0xb8, 0x34, 0x86, 0x9b, 0x50, 0x87, 0xd9,
    0x61, 0x87, 0xda, 0x44, 0x78, 0x4f, 0x66, 0xa8, 0x01, 0x74, 0x9a, 0x35, 0x66, 0xc9, 0x60, 0x75,
    0xa8, 0x34, 0x76, 0x8b, 0x50, 0x86, 0xc9, 0x33, 0x77, 0xae, 0x55, 0x97, 0xfb, 0x63, 0x89, 0x28,
    0x85, 0xbb, 0x55, 0x86, 0xfa, 0x71, 0x96, 0xd8, 0x44, 0xa7, 0xac, 0x71, 0xa7, 0xfa, 0x54, 0x98,
    0xcf, 0x76, 0xb8, 0x0c, 0x84, 0xaa, 0x49, 0x76, 0xd9, 0x70, 0x85, 0xc8, 0x34, 0x86, 0xab, 0x60,
    0x97, 0x9c, 0x61, 0x97, 0xea, 0x44, 0x88, 0x4f, 0x66, 0xa8, 0x0c, 0x74, 0x9a, 0x35, 0x66, 0xc9,
    0x60, 0x75, 0xb8, 0x34, 0x86, 0x9b, 0x50, 0x87, 0xd9, 0x33, 0x87, 0xad, 0x56, 0x97, 0xfb, 0x73,
};

TEST(Ggml, MatchesBytesProducedByGgmlItself) {
  Matrix w(1, 256);
  for (int i = 0; i < 256; ++i) {
    w(0, i) = static_cast<float>((i * 73 + 19) % 211 - 105) / 16.0f * static_cast<float>(i % 5 + 1);
  }
  const struct {
    Format format;
    const std::uint8_t* bytes;
    std::size_t size;
  } cases[] = {{Format::q8_0, kQ80Pinned, sizeof kQ80Pinned},
               {Format::q4_0, kQ40Pinned, sizeof kQ40Pinned},
               {Format::q4_1, kQ41Pinned, sizeof kQ41Pinned},
               {Format::q4_K, kQ4kPinned, sizeof kQ4kPinned}};
  for (const auto& c : cases) {
    const auto q = ggml::quantize(w, c.format);
    EXPECT_EQ(q.data, std::vector<std::uint8_t>(c.bytes, c.bytes + c.size))
        << ggml::format_info(c.format).name;
  }
}

// Q4_K's 6-bit scale/min packing: get_scale_min_k4 inverts the layout the quantizer writes
// (sub-blocks 0..3 in the low 6 bits of bytes 0..3 / 4..7; sub-blocks 4..7 split into nibbles of
// bytes 8..11 plus the top two bits of bytes j-4 and j), for random 6-bit values.
TEST(Ggml, Q4_KScaleMinPackingRoundTrips) {
  std::uint64_t state = 12345;
  for (int trial = 0; trial < 200; ++trial) {
    std::uint8_t ls[8];
    std::uint8_t lm[8];
    for (int j = 0; j < 8; ++j) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      ls[j] = static_cast<std::uint8_t>((state >> 33) & 63);
      lm[j] = static_cast<std::uint8_t>((state >> 45) & 63);
    }
    std::uint8_t packed[12] = {};
    for (int j = 0; j < 4; ++j) {
      packed[j] = static_cast<std::uint8_t>(ls[j] | ((ls[j + 4] >> 4) << 6));
      packed[j + 4] = static_cast<std::uint8_t>(lm[j] | ((lm[j + 4] >> 4) << 6));
      packed[j + 8] = static_cast<std::uint8_t>((ls[j + 4] & 15) | ((lm[j + 4] & 15) << 4));
    }
    for (int j = 0; j < 8; ++j) {
      std::uint8_t sc = 0;
      std::uint8_t m = 0;
      ggml::detail::get_scale_min_k4(j, packed, &sc, &m);
      ASSERT_EQ(sc, ls[j]);
      ASSERT_EQ(m, lm[j]);
    }
  }
}

// nearest_int is round-half-to-even, like nearbyint in the default rounding mode.
TEST(Ggml, NearestIntRoundsHalfToEven) {
  for (const float f : {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 14.5f, 3.49f, -7.51f, 0.0f, 100.25f}) {
    EXPECT_EQ(ggml::detail::nearest_int(f), static_cast<int>(std::nearbyint(f))) << f;
  }
}

// Per-element error bounds, from the formats' definitions with the fp32 scale d32 the quantizer
// uses and the fp16 scale d16 dequantization uses:
//   Q8_0: |x - q d16| <= d32/2 + |q| |d16 - d32|
//   Q4_0: |x - (q-8) d16| <= d32/2 + 8 |d16 - d32|, except the clipped side (|x| > 7.5 |d32|
//         opposite the max), where the bound is |d32| + 8 |d16 - d32|
//   Q4_1: |x - (q d16 + m16)| <= d32/2 + 15 |d16 - d32| + |m16 - min|
TEST(Ggml, RoundTripErrorStaysWithinHalfAStepPerElement) {
  const Matrix w = slim::random::gaussian(8, 512, 7);
  const auto q8 = ggml::quantize(w, Format::q8_0);
  const auto q40 = ggml::quantize(w, Format::q4_0);
  const auto q41 = ggml::quantize(w, Format::q4_1);
  const Matrix b8 = q8.dequantize();
  const Matrix b40 = q40.dequantize();
  const Matrix b41 = q41.dequantize();
  const float slack = 1e-6f;
  for (Index r = 0; r < w.rows(); ++r) {
    for (Index b = 0; b < w.cols() / 32; ++b) {
      const auto x = w.row(r).segment(b * 32, 32);
      const float amax = x.cwiseAbs().maxCoeff();
      Index arg = 0;
      x.cwiseAbs().maxCoeff(&arg);
      const float lo = x.minCoeff();
      const float hi = x.maxCoeff();
      // Q8_0
      const float d8 = amax / 127.0f;
      const float d8h = slim::round_to_fp16(d8);
      // Q4_0
      const float d40 = x(arg) / -8.0f;
      const float d40h = slim::round_to_fp16(d40);
      // Q4_1
      const float d41 = (hi - lo) / 15.0f;
      const float d41h = slim::round_to_fp16(d41);
      const float m41h = slim::round_to_fp16(lo);
      for (Index i = 0; i < 32; ++i) {
        const Index c = b * 32 + i;
        const float q = std::round(x(i) / d8);
        EXPECT_LE(std::abs(x(i) - b8(r, c)), d8 / 2 + std::abs(q) * std::abs(d8h - d8) + slack);
        const bool clipped = x(i) * x(arg) < 0.0f && std::abs(x(i)) > 7.5f * std::abs(d40);
        const float step40 = clipped ? std::abs(d40) : std::abs(d40) / 2;
        EXPECT_LE(std::abs(x(i) - b40(r, c)), step40 + 8 * std::abs(d40h - d40) + slack);
        EXPECT_LE(std::abs(x(i) - b41(r, c)),
                  d41 / 2 + 15 * std::abs(d41h - d41) + std::abs(m41h - lo) + slack);
      }
    }
  }
}

// Q4_K spends the same 4.5 bits per weight as Q4_0 but fits a scale and a min per 32 weights
// by a weighted least-squares search, so its error on Gaussian rows is lower; on the same rows
// Q8_0 is far more accurate than both.
TEST(Ggml, Q4_KErrorOnGaussianRowsIsBelowQ4_0) {
  const Matrix w = slim::random::gaussian(32, 1024, 11);
  const double e_q4k =
      slim::metrics::relative_frobenius(w, ggml::quantize(w, Format::q4_K).dequantize());
  const double e_q40 =
      slim::metrics::relative_frobenius(w, ggml::quantize(w, Format::q4_0).dequantize());
  const double e_q41 =
      slim::metrics::relative_frobenius(w, ggml::quantize(w, Format::q4_1).dequantize());
  const double e_q80 =
      slim::metrics::relative_frobenius(w, ggml::quantize(w, Format::q8_0).dequantize());
  std::printf(
      "relative Frobenius error on Gaussian 32x1024: q8_0 %.4f  q4_0 %.4f  q4_1 %.4f  q4_K %.4f\n",
      e_q80, e_q40, e_q41, e_q4k);
  EXPECT_LT(e_q4k, e_q40);
  EXPECT_LT(e_q80, e_q4k);
}

// bytes() is rows * (cols / block) * block_bytes and rows are laid out back to back, so
// quantizing a single row gives the same bytes as that row's slice of the matrix.
TEST(Ggml, MatrixRowsAreConcatenatedRowQuantizations) {
  const Matrix w = slim::random::student_t(3, 512, 4, 21);
  for (const Format f : {Format::q8_0, Format::q4_0, Format::q4_1, Format::q4_K}) {
    const auto q = ggml::quantize(w, f);
    const auto& info = ggml::format_info(f);
    ASSERT_EQ(q.bytes(), 3 * 512 / info.block_size * info.block_bytes);
    EXPECT_DOUBLE_EQ(q.bits_per_weight(), info.bits_per_weight());
    for (Index r = 0; r < 3; ++r) {
      const Matrix row = w.row(r);
      const auto one = ggml::quantize(row, f);
      const std::vector<std::uint8_t> slice(
          q.data.begin() + static_cast<long>(r * q.row_bytes()),
          q.data.begin() + static_cast<long>((r + 1) * q.row_bytes()));
      EXPECT_EQ(one.data, slice) << info.name << " row " << r;
    }
  }
}

TEST(Ggml, BlockOfALargerMatrixQuantizesLikeItsCopy) {
  const Matrix big = slim::random::gaussian(5, 600, 33);
  const Matrix copy = big.block(1, 40, 3, 512);
  for (const Format f : {Format::q8_0, Format::q4_K}) {
    EXPECT_EQ(ggml::quantize(big.block(1, 40, 3, 512), f).data, ggml::quantize(copy, f).data);
  }
}

TEST(Ggml, RejectsRowsThatAreNotAMultipleOfTheBlockSize) {
  EXPECT_THROW(ggml::quantize(Matrix::Ones(2, 48), Format::q8_0), slim::ArgumentError);
  EXPECT_THROW(ggml::quantize(Matrix::Ones(2, 128), Format::q4_K), slim::ArgumentError);
  const std::vector<std::uint8_t> data(144, 0);
  EXPECT_THROW(ggml::dequantize(Format::q4_K, 1, 128, data.data(), data.size()),
               slim::ArgumentError);
}

TEST(Ggml, RejectsEmptyAndNonFiniteWeights) {
  EXPECT_THROW(ggml::quantize(Matrix(0, 32), Format::q4_0), slim::ShapeError);
  Matrix w = Matrix::Ones(1, 32);
  w(0, 5) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(ggml::quantize(w, Format::q4_0), slim::NumericalError);
  w(0, 5) = std::numeric_limits<float>::infinity();
  EXPECT_THROW(ggml::quantize(w, Format::q8_0), slim::NumericalError);
}

TEST(Ggml, DequantizeRejectsAWrongByteCountOrShape) {
  const std::vector<std::uint8_t> data(34 * 3, 0);
  EXPECT_THROW(ggml::dequantize(Format::q8_0, 2, 64, data.data(), data.size()), slim::FormatError);
  EXPECT_THROW(ggml::dequantize(Format::q8_0, 0, 32, data.data(), data.size()), slim::ShapeError);
  EXPECT_NO_THROW(ggml::dequantize(Format::q8_0, 3, 32, data.data(), data.size()));
}

TEST(Ggml, RejectsAnUnregisteredFormat) {
  EXPECT_THROW(ggml::format_info(static_cast<Format>(99)), slim::ArgumentError);
}

}  // namespace

#include <slim/core.hpp>
#include <slim/quant/nf4.hpp>
#include <slim/quant/rtn.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

namespace {

using slim::Index;
using slim::Matrix;
using slim::quant::nf4_code_book;
using slim::quant::Nf4Options;
using slim::quant::quantize_nf4;

// The code book is bitsandbytes' NF4: ascending, 7 negative values, an exact 0, 8 positive
// values, exactly -1 and 1 at the ends (asymmetric: no value is the negative of another except
// the ends).
TEST(Nf4, CodeBookIsAscendingAsymmetricWithExactZeroAndOne) {
  for (std::size_t i = 1; i < nf4_code_book.size(); ++i) {
    EXPECT_LT(nf4_code_book[i - 1], nf4_code_book[i]);
  }
  EXPECT_EQ(nf4_code_book.front(), -1.0f);
  EXPECT_EQ(nf4_code_book[slim::quant::nf4_zero_code], 0.0f);
  EXPECT_EQ(nf4_code_book.back(), 1.0f);
  int negative = 0;
  for (const float v : nf4_code_book) negative += v < 0.0f;
  EXPECT_EQ(negative, 7);
  EXPECT_NE(nf4_code_book[1], -nf4_code_book[14]);
}

// The decision thresholds are the midpoints of adjacent code values (to fp32 precision).
TEST(Nf4, ThresholdsAreMidpointsOfAdjacentCodes) {
  const auto& t = slim::quant::detail::nf4_thresholds;
  for (std::size_t i = 0; i < t.size(); ++i) {
    const double mid = (static_cast<double>(nf4_code_book[i]) + nf4_code_book[i + 1]) / 2.0;
    EXPECT_NEAR(t[i], mid, 1e-7) << i;
  }
}

// Every code value, times any absmax, quantizes back to itself and dequantizes exactly.
TEST(Nf4, EveryCodeValueRoundTripsExactly) {
  for (const float absmax : {1.0f, 0.03125f, 2.5f, 7.3f}) {
    Matrix w(2, 16);
    for (int i = 0; i < 16; ++i) {
      w(0, i) = nf4_code_book[static_cast<std::size_t>(i)] * absmax;
      w(1, i) = nf4_code_book[static_cast<std::size_t>(15 - i)] * absmax;
    }
    const auto q = quantize_nf4(w, Nf4Options{.block_size = 16});
    for (int i = 0; i < 16; ++i) EXPECT_EQ(q.code(i), i) << absmax;
    EXPECT_TRUE(q.dequantize() == w) << absmax;
  }
}

// Nearest-code rounding against a brute-force search over the 16 values: the chosen code is
// the nearest, except within 1e-7 of a midpoint, where the fp32 threshold decides.
TEST(Nf4, EncodesToTheNearestCodeLikeABruteForceSearch) {
  const Matrix x = slim::random::gaussian(1, 20000, 5, 0.45);
  for (Index i = 0; i < x.size(); ++i) {
    const float v = std::clamp(x(0, i), -1.0f, 1.0f);
    int best = 0;
    double best_distance = std::numeric_limits<double>::infinity();
    double second_distance = best_distance;
    for (int c = 0; c < 16; ++c) {
      const double d =
          std::abs(static_cast<double>(v) - nf4_code_book[static_cast<std::size_t>(c)]);
      if (d < best_distance) {
        second_distance = best_distance;
        best_distance = d;
        best = c;
      } else if (d < second_distance) {
        second_distance = d;
      }
    }
    const int code = slim::quant::detail::nf4_encode(v);
    if (second_distance - best_distance > 2e-7) {
      ASSERT_EQ(code, best) << "x = " << v;
    } else {
      ASSERT_LE(std::abs(v - nf4_code_book[static_cast<std::size_t>(code)]), best_distance + 2e-7);
    }
  }
}

// A value exactly on a threshold goes to the lower code (dQuantizeNF4 tests x > threshold);
// the next fp32 value above goes to the upper one.
TEST(Nf4, ValuesExactlyOnAThresholdGoToTheLowerCode) {
  const auto& t = slim::quant::detail::nf4_thresholds;
  for (std::size_t i = 0; i < t.size(); ++i) {
    EXPECT_EQ(slim::quant::detail::nf4_encode(t[i]), i);
    EXPECT_EQ(slim::quant::detail::nf4_encode(std::nextafter(t[i], 2.0f)), i + 1);
  }
}

// Blocks run over the flattened row-major matrix (crossing row boundaries), the absmax is the
// block's max |w|, the first code of each byte is in the high nibble, and a tail block shorter
// than block_size has its own absmax. 3 x 7 = 21 weights in blocks of 4: 6 blocks, the last of
// one weight; 21 codes take 11 bytes, the last low nibble padded with the zero code 7.
TEST(Nf4, BlocksRunOverTheFlattenedMatrixWithATailBlock) {
  const Matrix w = slim::random::student_t(3, 7, 4, 9);
  const auto q = quantize_nf4(w, Nf4Options{.block_size = 4});
  ASSERT_EQ(q.blocks(), 6);
  ASSERT_EQ(q.packed_codes().size(), 11u);
  ASSERT_EQ(q.absmax_fp32().size(), 6u);
  const float* flat = w.data();
  for (Index b = 0; b < 6; ++b) {
    float amax = 0.0f;
    for (Index i = b * 4; i < std::min<Index>(21, b * 4 + 4); ++i)
      amax = std::max(amax, std::abs(flat[i]));
    EXPECT_EQ(q.absmax(b), amax);
  }
  EXPECT_EQ(q.packed_codes()[0] >> 4, q.code(0));
  EXPECT_EQ(q.packed_codes()[0] & 15, q.code(1));
  EXPECT_EQ(q.packed_codes()[10] & 15, slim::quant::nf4_zero_code);
  const Matrix back = q.dequantize();
  for (Index i = 0; i < 21; ++i) {
    const Index b = i / 4;
    const int code = slim::quant::detail::nf4_encode(flat[i] * (1.0f / q.absmax(b)));
    EXPECT_EQ(back.data()[i], nf4_code_book[static_cast<std::size_t>(code)] * q.absmax(b));
  }
  // The element of largest |w| in each block is reproduced exactly (code +-1).
  EXPECT_EQ(back(2, 6), w(2, 6));  // the 1-element tail block
}

TEST(Nf4, AllZeroBlockDequantizesToZero) {
  Matrix w = slim::random::gaussian(2, 64, 3);
  w.row(1).setZero();
  const auto q = quantize_nf4(w);
  const Matrix back = q.dequantize();
  EXPECT_TRUE((back.row(1).array() == 0.0f).all());
  EXPECT_EQ(q.absmax(1), 0.0f);
}

// Storage: 4 bits per weight plus an fp32 absmax per 64 = 4.5 bits; with double quantization,
// one byte per absmax, an fp32 scale per 256 absmax values and an fp32 offset:
// 4 + 8/64 + 32/(64*256) + 32/n = 4.127 bits.
TEST(Nf4, BytesCountCodesAndEveryOverheadExactly) {
  const Index rows = 128;
  const Index cols = 4096;
  const Matrix w = slim::random::gaussian(rows, cols, 17, 0.02);
  const auto plain = quantize_nf4(w);
  const auto dq = quantize_nf4(w, Nf4Options{.block_size = 64, .double_quant = true});
  const std::size_t n = static_cast<std::size_t>(rows * cols);
  const std::size_t blocks = n / 64;
  EXPECT_EQ(plain.bytes(), n / 2 + 4 * blocks);
  EXPECT_DOUBLE_EQ(plain.bits_per_weight(), 4.5);
  EXPECT_EQ(dq.bytes(), n / 2 + blocks + 4 * ((blocks + 255) / 256) + 4);
  EXPECT_NEAR(dq.bits_per_weight(), 4.127, 0.001);
  EXPECT_TRUE(dq.absmax_fp32().empty());
  EXPECT_EQ(dq.absmax_codes().size(), blocks);
}

// Double quantization reconstructs each absmax to within half the largest gap of the dynamic
// map times its group's scale (the map's gaps are at most 0.0156 near 1), and changes the
// weight error only slightly.
TEST(Nf4, DoubleQuantizationChangesErrorOnlySlightly) {
  const Matrix w = slim::random::gaussian(128, 4096, 19, 0.02);
  const auto plain = quantize_nf4(w);
  const auto dq = quantize_nf4(w, Nf4Options{.double_quant = true});
  const auto& map = slim::quant::detail::dynamic_map();
  float max_gap = 0.0f;
  for (std::size_t i = 1; i < map.size(); ++i) max_gap = std::max(max_gap, map[i] - map[i - 1]);
  for (Index b = 0; b < plain.blocks(); ++b) {
    const float scale = dq.absmax_scales()[static_cast<std::size_t>(b / 256)];
    ASSERT_LE(std::abs(dq.absmax(b) - plain.absmax(b)), 0.5f * max_gap * scale * 1.0001f + 1e-9f);
  }
  const double e_plain = slim::metrics::relative_frobenius(w, plain.dequantize());
  const double e_dq = slim::metrics::relative_frobenius(w, dq.dequantize());
  std::printf("NF4 g64 relative error: fp32 absmax %.5f, double-quantized %.5f\n", e_plain, e_dq);
  EXPECT_LT(std::abs(e_dq - e_plain) / e_plain, 0.02);
}

// bitsandbytes' dynamic map: 256 ascending values: 127 negative, 0 at index 127, their 127
// mirror images, and 1 at index 255.
TEST(Nf4, DynamicMapHasBitsandbytesShape) {
  const auto& map = slim::quant::detail::dynamic_map();
  for (std::size_t i = 1; i < map.size(); ++i) EXPECT_LT(map[i - 1], map[i]);
  EXPECT_EQ(map.back(), 1.0f);
  EXPECT_EQ(map[127], 0.0f);
  for (std::size_t i = 0; i < 127; ++i) EXPECT_EQ(map[i], -map[254 - i]);
  EXPECT_NEAR(map[0], -0.99297, 1e-5);   // -(0.98594 + 1) / 2 at scale 1
  EXPECT_NEAR(map[128], 5.5e-7, 1e-12);  // (0.1 + 1) / 2 * 1e-6
}

// NF4's quantile-placed levels beat uniform symmetric int4 absmax at the same block size (64)
// on bell-shaped weights, Gaussian and heavier-tailed Student-t (dof 4), on 4096-wide rows.
TEST(Nf4, BeatsSymmetricInt4AbsmaxOnGaussianAndStudentTWeights) {
  const slim::quant::Scheme int4{.bits = 4, .group_size = 64, .symmetric = true};
  const Matrix gaussian = slim::random::gaussian(64, 4096, 23);
  const Matrix student = slim::random::student_t(64, 4096, 4, 29);
  for (const auto* w : {&gaussian, &student}) {
    const double e_nf4 = slim::metrics::relative_frobenius(*w, quantize_nf4(*w).dequantize());
    const double e_int4 =
        slim::metrics::relative_frobenius(*w, slim::quant::fake_quantize(*w, int4));
    std::printf("%s: NF4 g64 %.4f vs int4 sym g64 %.4f\n",
                w == &gaussian ? "gaussian" : "student-t(4)", e_nf4, e_int4);
    EXPECT_LT(e_nf4, e_int4);
  }
}

// A block of a larger matrix (with an outer stride) quantizes like its contiguous copy.
TEST(Nf4, BlockOfALargerMatrixQuantizesLikeItsCopy) {
  const Matrix big = slim::random::gaussian(6, 200, 31);
  const Matrix copy = big.block(1, 8, 4, 128);
  const auto from_block = quantize_nf4(big.block(1, 8, 4, 128));
  const auto from_copy = quantize_nf4(copy);
  EXPECT_EQ(from_block.packed_codes(), from_copy.packed_codes());
  EXPECT_EQ(from_block.absmax_fp32(), from_copy.absmax_fp32());
}

TEST(Nf4, RejectsEmptyNonFiniteAndBadBlockSizes) {
  EXPECT_THROW(quantize_nf4(Matrix(0, 4)), slim::ShapeError);
  Matrix w = Matrix::Ones(2, 64);
  EXPECT_THROW(quantize_nf4(w, Nf4Options{.block_size = 0}), slim::ArgumentError);
  EXPECT_THROW(quantize_nf4(w, Nf4Options{.block_size = -64}), slim::ArgumentError);
  EXPECT_THROW(quantize_nf4(w, Nf4Options{.double_quant = true, .double_quant_block_size = 0}),
               slim::ArgumentError);
  w(1, 3) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(quantize_nf4(w), slim::NumericalError);
  w(1, 3) = -std::numeric_limits<float>::infinity();
  EXPECT_THROW(quantize_nf4(w), slim::NumericalError);
}

}  // namespace

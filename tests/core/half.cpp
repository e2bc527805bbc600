#include <slim/core/half.hpp>
#include <slim/core/random.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace {

TEST(Half, EveryFp16ValueRoundTripsThroughFp32) {
  for (std::uint32_t h = 0; h < 0x10000u; ++h) {
    const float f = slim::fp16_to_fp32(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(slim::fp16_to_fp32(slim::fp32_to_fp16(f))));
      continue;
    }
    ASSERT_EQ(slim::fp32_to_fp16(f), h) << std::hex << h;
  }
}

TEST(Half, KnownValuesAndTiesRoundToEven) {
  EXPECT_EQ(slim::fp32_to_fp16(1.0f), 0x3c00);
  EXPECT_EQ(slim::fp32_to_fp16(-2.0f), 0xc000);
  EXPECT_EQ(slim::fp32_to_fp16(65504.0f), 0x7bff);
  EXPECT_EQ(slim::fp32_to_fp16(65520.0f), 0x7c00);                      // rounds up to infinity
  EXPECT_EQ(slim::fp32_to_fp16(std::ldexp(1.0f, -24)), 0x0001);         // smallest subnormal
  EXPECT_EQ(slim::fp32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);         // tie to even: 0
  EXPECT_EQ(slim::fp32_to_fp16(std::ldexp(3.0f, -25)), 0x0002);         // tie 1.5 ulp -> 2
  EXPECT_EQ(slim::fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie to even mantissa 0
  EXPECT_EQ(slim::fp32_to_fp16(1.0f + std::ldexp(3.0f, -11)), 0x3c02);  // tie to even mantissa 2
  EXPECT_EQ(slim::fp32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(slim::bf16_to_fp32(0x3f80), 1.0f);
  EXPECT_TRUE(
      std::isnan(slim::bf16_to_fp32(slim::fp32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
}

#if defined(__F16C__)
TEST(Half, MatchesHardwareF16cConversionOnRandomBitPatterns) {
  slim::random::Generator g(3);
  for (int i = 0; i < 2000000; ++i) {
    const auto bits = static_cast<std::uint32_t>(g.next());
    const float f = slim::bits_float(bits);
    const std::uint16_t hw = static_cast<std::uint16_t>(_cvtss_sh(f, 0));
    const std::uint16_t sw = slim::fp32_to_fp16(f);
    if (std::isnan(f)) {
      ASSERT_EQ(sw & 0x7c00, 0x7c00);
      ASSERT_NE(sw & 0x3ff, 0);
      continue;
    }
    ASSERT_EQ(sw, hw) << std::hex << bits;
    ASSERT_EQ(slim::fp16_to_fp32(hw), _cvtsh_ss(hw));
  }
}
#endif

}  // namespace

// ggml-compatible block formats Q8_0, Q4_0, Q4_1 and Q4_K: the packed block structs of ggml's
// ggml-common.h and byte-exact ports of ggml's reference quantizers (quantize_row_*_ref in
// ggml-quants.c, the path llama.cpp's quantize tool takes without an importance matrix) and of
// their dequantize_row_* functions, so a row quantized here is the row a GGUF file would hold.
//
// Formats (d, m, dmin are fp16, rounded to nearest even as GGML_FP32_TO_FP16 does):
//   Q8_0  32 weights / 34 bytes:  d = amax/127, q = roundf(x/d) (half away from zero), x~ = q*d
//   Q4_0  32 weights / 18 bytes:  d = max/-8 where max is the SIGNED value of largest |x|,
//         q = min(15, trunc(x/d + 8.5)), x~ = (q - 8)*d; element j in the low nibble of byte j,
//         element j+16 in its high nibble
//   Q4_1  32 weights / 20 bytes:  d = (max-min)/15, m = min, q = min(15, trunc((x-min)/d + 0.5)),
//         x~ = q*d + m; same nibble order as Q4_0
//   Q4_K  256 weights / 144 bytes: 8 sub-blocks of 32, each with a 6-bit scale and 6-bit min
//         (packed by get_scale_min_k4's layout) times the fp16 super-scales d and dmin; each
//         sub-block's (scale, min) comes from make_qkx2_quants(32, 15, x, weights = sqrt(mean x^2)
//         + |x|, rmin = -1, rdelta = 0.1, nstep = 20, use_mad = false), x~ = d*sc*q - dmin*m;
//         within each 64-weight pair of sub-blocks, element l in the low nibble of byte l and
//         element l+32 in its high nibble.
// "x/d" is computed as x * (1/d) and nearest_int is ggml's 1.5*2^23 trick (round half to even),
// exactly as ggml does. Floating-point contraction (fusing a*b+c into an FMA, which GCC does by
// default under -march=native) is switched off in this header so that every product and sum
// rounds as in ggml's portable build of ggml-quants.c; the bytes do not depend on the target.
// Checked byte for byte (quantized blocks and dequantized floats) against libggml-base.so's
// quantize_row_*_ref / dequantize_row_* on Gaussian, Student-t, tiny, all-positive and
// tie-heavy rows, with GCC and Clang, with and without -march=native.
#pragma once

#include <slim/core/checks.hpp>
#include <slim/core/error.hpp>
#include <slim/core/half.hpp>
#include <slim/core/types.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#if defined(__clang__)
#pragma float_control(push)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

namespace slim::quant::ggml {

// ggml's block sizes.
inline constexpr int qk8_0 = 32;
inline constexpr int qk4_0 = 32;
inline constexpr int qk4_1 = 32;
inline constexpr int qk_k = 256;
inline constexpr int k_scale_size = 12;

// The packed blocks, field for field as ggml-common.h declares them (fp16 stored as its bits).
struct block_q8_0 {
  std::uint16_t d;
  std::int8_t qs[qk8_0];
};
struct block_q4_0 {
  std::uint16_t d;
  std::uint8_t qs[qk4_0 / 2];
};
struct block_q4_1 {
  std::uint16_t d;
  std::uint16_t m;
  std::uint8_t qs[qk4_1 / 2];
};
struct block_q4_K {
  std::uint16_t d;
  std::uint16_t dmin;
  std::uint8_t scales[k_scale_size];
  std::uint8_t qs[qk_k / 2];
};
static_assert(sizeof(block_q8_0) == 2 + qk8_0, "block_q8_0 must be 34 bytes");
static_assert(sizeof(block_q4_0) == 2 + qk4_0 / 2, "block_q4_0 must be 18 bytes");
static_assert(sizeof(block_q4_1) == 4 + qk4_1 / 2, "block_q4_1 must be 20 bytes");
static_assert(sizeof(block_q4_K) == 4 + k_scale_size + qk_k / 2, "block_q4_K must be 144 bytes");

namespace detail {

// ggml's nearest_int: adding 1.5*2^23 leaves round-half-to-even(f) in the low mantissa bits
// (valid for |f| <= 2^22 - 1, as ggml asserts; outside that it returns the same bits ggml would).
inline int nearest_int(float f) {
  const float v = f + 12582912.0f;
  std::int32_t i;
  std::memcpy(&i, &v, sizeof i);
  return (i & 0x007fffff) - 0x00400000;
}

// C's (int8_t) conversion of a value ggml knows lies in [0, 16.5], followed by MIN(15, .):
// truncation toward zero. Out-of-range inputs (only reachable when 1/d overflows) saturate
// instead of being undefined behaviour.
inline std::uint8_t truncate_to_nibble(float t) {
  if (!(t > 0.0f)) return 0;
  if (t >= 15.0f) return 15;
  return static_cast<std::uint8_t>(static_cast<int>(t));
}

// roundf(x) stored into an int8_t (half away from zero), saturating outside [-128, 127].
inline std::int8_t round_to_int8(float x) {
  const float r = std::round(x);
  if (!(r > -128.0f)) return r == r ? std::int8_t{-128} : std::int8_t{0};
  if (r >= 127.0f) return 127;
  return static_cast<std::int8_t>(r);
}

// make_qkx2_quants of ggml-quants.c: an asymmetric (scale, min) fit of n values to 0..nmax by
// a weighted least-squares refit over nstep+1 trial inverse scales (nmax + rmin + rdelta*is) /
// (max - min); returns the scale, stores -min in *the_min and the levels in L.
inline float make_qkx2_quants(int n, int nmax, const float* x, const float* weights,
                              std::uint8_t* L, float* the_min, std::uint8_t* Laux, float rmin,
                              float rdelta, int nstep, bool use_mad) {
  float min = x[0];
  float max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.0f;
  }
  float iscale = static_cast<float>(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<std::uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * static_cast<float>(L[i]) + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
    float sum_l = 0;
    float sum_l2 = 0;
    float sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = static_cast<std::uint8_t>(l);
      const float w = weights[i];
      const float lf = static_cast<float>(l);
      sum_l += w * lf;
      sum_l2 += w * lf * lf;
      sum_xl += w * lf * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// get_scale_min_k4: the 6-bit scale and min of sub-block j from Q4_K's 12 packed bytes.
// Sub-blocks 0..3 keep their scale in the low 6 bits of bytes 0..3 and their min in bytes
// 4..7; sub-blocks 4..7 keep the low 4 bits of scale and min in the nibbles of bytes 8..11
// and their top 2 bits in the top bits of bytes j-4 (scale) and j (min).
inline void get_scale_min_k4(int j, const std::uint8_t* q, std::uint8_t* d, std::uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}

}  // namespace detail

// One traits struct per format: its block, block size and the row functions. k, the number of
// floats, is a multiple of block_size (callers check; the row functions assert).
struct Q8_0 {
  using block = block_q8_0;
  static constexpr const char* name = "q8_0";
  static constexpr Index block_size = qk8_0;

  static void quantize_row(const float* x, block* y, Index k) {
    const Index nb = k / block_size;
    for (Index i = 0; i < nb; ++i) {
      float amax = 0.0f;
      for (int j = 0; j < qk8_0; ++j) amax = std::max(amax, std::fabs(x[i * qk8_0 + j]));
      const float d = amax / ((1 << 7) - 1);
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      y[i].d = fp32_to_fp16(d);
      for (int j = 0; j < qk8_0; ++j) y[i].qs[j] = detail::round_to_int8(x[i * qk8_0 + j] * id);
    }
  }

  static void dequantize_row(const block* x, float* y, Index k) {
    const Index nb = k / block_size;
    for (Index i = 0; i < nb; ++i) {
      const float d = fp16_to_fp32(x[i].d);
      for (int j = 0; j < qk8_0; ++j) y[i * qk8_0 + j] = static_cast<float>(x[i].qs[j]) * d;
    }
  }
};

struct Q4_0 {
  using block = block_q4_0;
  static constexpr const char* name = "q4_0";
  static constexpr Index block_size = qk4_0;

  static void quantize_row(const float* x, block* y, Index k) {
    constexpr int qk = qk4_0;
    const Index nb = k / block_size;
    for (Index i = 0; i < nb; ++i) {
      float amax = 0.0f;  // largest |x| and the signed value that has it (first one wins)
      float max = 0.0f;
      for (int j = 0; j < qk; ++j) {
        const float v = x[i * qk + j];
        if (amax < std::fabs(v)) {
          amax = std::fabs(v);
          max = v;
        }
      }
      const float d = max / -8;
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      y[i].d = fp32_to_fp16(d);
      for (int j = 0; j < qk / 2; ++j) {
        const float x0 = x[i * qk + j] * id;
        const float x1 = x[i * qk + qk / 2 + j] * id;
        const std::uint8_t xi0 = detail::truncate_to_nibble(x0 + 8.5f);
        const std::uint8_t xi1 = detail::truncate_to_nibble(x1 + 8.5f);
        y[i].qs[j] = static_cast<std::uint8_t>(xi0 | (xi1 << 4));
      }
    }
  }

  static void dequantize_row(const block* x, float* y, Index k) {
    constexpr int qk = qk4_0;
    const Index nb = k / block_size;
    for (Index i = 0; i < nb; ++i) {
      const float d = fp16_to_fp32(x[i].d);
      for (int j = 0; j < qk / 2; ++j) {
        const int x0 = (x[i].qs[j] & 0x0F) - 8;
        const int x1 = (x[i].qs[j] >> 4) - 8;
        y[i * qk + j] = static_cast<float>(x0) * d;
        y[i * qk + j + qk / 2] = static_cast<float>(x1) * d;
      }
    }
  }
};

struct Q4_1 {
  using block = block_q4_1;
  static constexpr const char* name = "q4_1";
  static constexpr Index block_size = qk4_1;

  static void quantize_row(const float* x, block* y, Index k) {
    constexpr int qk = qk4_1;
    const Index nb = k / block_size;
    for (Index i = 0; i < nb; ++i) {
      float min = std::numeric_limits<float>::max();
      float max = -std::numeric_limits<float>::max();
      for (int j = 0; j < qk; ++j) {
        const float v = x[i * qk + j];
        if (v < min) min = v;
        if (v > max) max = v;
      }
      const float d = (max - min) / ((1 << 4) - 1);
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      y[i].d = fp32_to_fp16(d);
      y[i].m = fp32_to_fp16(min);
      for (int j = 0; j < qk / 2; ++j) {
        const float x0 = (x[i * qk + j] - min) * id;
        const float x1 = (x[i * qk + qk / 2 + j] - min) * id;
        const std::uint8_t xi0 = detail::truncate_to_nibble(x0 + 0.5f);
        const std::uint8_t xi1 = detail::truncate_to_nibble(x1 + 0.5f);
        y[i].qs[j] = static_cast<std::uint8_t>(xi0 | (xi1 << 4));
      }
    }
  }

  static void dequantize_row(const block* x, float* y, Index k) {
    constexpr int qk = qk4_1;
    const Index nb = k / block_size;
    for (Index i = 0; i < nb; ++i) {
      const float d = fp16_to_fp32(x[i].d);
      const float m = fp16_to_fp32(x[i].m);
      for (int j = 0; j < qk / 2; ++j) {
        const int x0 = x[i].qs[j] & 0x0F;
        const int x1 = x[i].qs[j] >> 4;
        y[i * qk + j] = static_cast<float>(x0) * d + m;
        y[i * qk + j + qk / 2] = static_cast<float>(x1) * d + m;
      }
    }
  }
};

struct Q4_K {
  using block = block_q4_K;
  static constexpr const char* name = "q4_K";
  static constexpr Index block_size = qk_k;

  static void quantize_row(const float* x, block* y, Index k) {
    const Index nb = k / block_size;
    std::uint8_t L[qk_k];
    std::uint8_t Laux[32];
    float weights[32];
    float mins[qk_k / 32];
    float scales[qk_k / 32];
    for (Index i = 0; i < nb; ++i) {
      float max_scale = 0;  // the min is subtracted, so scales are non-negative
      float max_min = 0;
      for (int j = 0; j < qk_k / 32; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = std::sqrt(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
        scales[j] = detail::make_qkx2_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j],
                                             Laux, -1.0f, 0.1f, 20, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
      }
      const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
      const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
      for (int j = 0; j < qk_k / 32; ++j) {
        // uint8_t ls = nearest_int(...): C's modular conversion, then MIN(63, .).
        std::uint8_t ls = static_cast<std::uint8_t>(detail::nearest_int(inv_scale * scales[j]));
        std::uint8_t lm = static_cast<std::uint8_t>(detail::nearest_int(inv_min * mins[j]));
        ls = std::min<std::uint8_t>(63, ls);
        lm = std::min<std::uint8_t>(63, lm);
        if (j < 4) {
          y[i].scales[j] = ls;
          y[i].scales[j + 4] = lm;
        } else {
          y[i].scales[j + 4] = static_cast<std::uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
          y[i].scales[j - 4] |= static_cast<std::uint8_t>((ls >> 4) << 6);
          y[i].scales[j - 0] |= static_cast<std::uint8_t>((lm >> 4) << 6);
        }
      }
      y[i].d = fp32_to_fp16(max_scale / 63.0f);
      y[i].dmin = fp32_to_fp16(max_min / 63.0f);

      // Requantize with the stored (6-bit, fp16) scales; a sub-block whose scale is zero keeps
      // the levels make_qkx2_quants chose, as in ggml.
      for (int j = 0; j < qk_k / 32; ++j) {
        std::uint8_t sc;
        std::uint8_t m;
        detail::get_scale_min_k4(j, y[i].scales, &sc, &m);
        const float d = fp16_to_fp32(y[i].d) * static_cast<float>(sc);
        if (d == 0.0f) continue;
        const float dm = fp16_to_fp32(y[i].dmin) * static_cast<float>(m);
        for (int ii = 0; ii < 32; ++ii) {
          const int l = detail::nearest_int((x[32 * j + ii] + dm) / d);
          L[32 * j + ii] = static_cast<std::uint8_t>(std::max(0, std::min(15, l)));
        }
      }
      std::uint8_t* q = y[i].qs;
      for (int j = 0; j < qk_k; j += 64) {
        for (int l = 0; l < 32; ++l)
          q[l] = static_cast<std::uint8_t>(L[j + l] | (L[j + l + 32] << 4));
        q += 32;
      }
      x += qk_k;
    }
  }

  static void dequantize_row(const block* x, float* y, Index k) {
    const Index nb = k / block_size;
    for (Index i = 0; i < nb; ++i) {
      const std::uint8_t* q = x[i].qs;
      const float d = fp16_to_fp32(x[i].d);
      const float min = fp16_to_fp32(x[i].dmin);
      int is = 0;
      for (int j = 0; j < qk_k; j += 64) {
        std::uint8_t sc;
        std::uint8_t m;
        detail::get_scale_min_k4(is + 0, x[i].scales, &sc, &m);
        const float d1 = d * static_cast<float>(sc);
        const float m1 = min * static_cast<float>(m);
        detail::get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
        const float d2 = d * static_cast<float>(sc);
        const float m2 = min * static_cast<float>(m);
        for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
        q += 32;
        is += 2;
      }
    }
  }
};

// The formats, each registered once in format_table() below.
enum class Format { q8_0, q4_0, q4_1, q4_K };

struct FormatInfo {
  Format format;
  const char* name;
  Index block_size;         // weights per block
  std::size_t block_bytes;  // bytes per block
  void (*quantize_row)(const float* x, void* y, Index k);
  void (*dequantize_row)(const void* x, float* y, Index k);

  double bits_per_weight() const {
    return 8.0 * static_cast<double>(block_bytes) / static_cast<double>(block_size);
  }
};

namespace detail {

// Byte-buffer adapters of the traits' row functions. Blocks are copied through a local block
// object so that the buffer is only ever read and written as bytes (no type punning, no
// alignment assumption on the caller's buffer).
template <typename Traits>
void quantize_row_erased(const float* x, void* y, Index k) {
  using Block = typename Traits::block;
  auto* out = static_cast<std::uint8_t*>(y);
  Block block{};
  for (Index b = 0; b < k / Traits::block_size; ++b) {
    Traits::quantize_row(x + b * Traits::block_size, &block, Traits::block_size);
    std::memcpy(out + static_cast<std::size_t>(b) * sizeof(Block), &block, sizeof(Block));
  }
}
template <typename Traits>
void dequantize_row_erased(const void* x, float* y, Index k) {
  using Block = typename Traits::block;
  const auto* in = static_cast<const std::uint8_t*>(x);
  Block block{};
  for (Index b = 0; b < k / Traits::block_size; ++b) {
    std::memcpy(&block, in + static_cast<std::size_t>(b) * sizeof(Block), sizeof(Block));
    Traits::dequantize_row(&block, y + b * Traits::block_size, Traits::block_size);
  }
}
template <typename Traits>
constexpr FormatInfo make_info(Format f) {
  return FormatInfo{f,
                    Traits::name,
                    Traits::block_size,
                    sizeof(typename Traits::block),
                    &quantize_row_erased<Traits>,
                    &dequantize_row_erased<Traits>};
}

}  // namespace detail

// The one table of formats: adding a format is one traits struct, one enum value and one row.
inline const FormatInfo* format_table(std::size_t* count) {
  static const FormatInfo table[] = {
      detail::make_info<Q8_0>(Format::q8_0),
      detail::make_info<Q4_0>(Format::q4_0),
      detail::make_info<Q4_1>(Format::q4_1),
      detail::make_info<Q4_K>(Format::q4_K),
  };
  *count = sizeof(table) / sizeof(table[0]);
  return table;
}

// The table row of `format`; ArgumentError for a value that is not a registered format.
inline const FormatInfo& format_info(Format format) {
  std::size_t count = 0;
  const FormatInfo* table = format_table(&count);
  for (std::size_t i = 0; i < count; ++i) {
    if (table[i].format == format) return table[i];
  }
  throw ArgumentError(slim::detail::concat("ggml::format_info: format ", static_cast<int>(format),
                                           " is not a registered ggml format"));
}

// A matrix stored row by row in a ggml block format: row r occupies bytes
// [r * row_bytes(), (r + 1) * row_bytes()) of data, exactly as a GGUF tensor of shape
// (cols, rows) in ggml's order stores it.
struct GgmlMatrix {
  Format format = Format::q8_0;
  Index rows = 0;
  Index cols = 0;
  std::vector<std::uint8_t> data;

  const FormatInfo& info() const { return format_info(format); }
  std::size_t row_bytes() const {
    return static_cast<std::size_t>(cols / info().block_size) * info().block_bytes;
  }
  std::size_t bytes() const { return data.size(); }
  double bits_per_weight() const {
    return 8.0 * static_cast<double>(bytes()) / static_cast<double>(rows * cols);
  }
  Matrix dequantize() const;
};

namespace detail {
inline void require_row_multiple(const FormatInfo& info, Index cols, const char* fn) {
  require<ArgumentError>(cols % info.block_size == 0, fn, ": in_features ", cols,
                         " is not a multiple of ", info.name, "'s block size ", info.block_size);
}
}  // namespace detail

// Quantizes W (out x in, row-major) row by row with ggml's reference quantizer of `format`.
// Throws ShapeError for an empty W, ArgumentError when in_features is not a multiple of the
// format's block size and NumericalError for non-finite weights.
inline GgmlMatrix quantize(const Eigen::Ref<const Matrix>& w, Format format) {
  const FormatInfo& info = format_info(format);
  require_nonempty(w, "ggml::quantize: W");
  detail::require_row_multiple(info, w.cols(), "ggml::quantize");
  require_finite(w, "ggml::quantize: W");
  GgmlMatrix q{format, w.rows(), w.cols(), {}};
  const std::size_t row_bytes = q.row_bytes();
  q.data.assign(row_bytes * static_cast<std::size_t>(w.rows()), 0);
  for (Index r = 0; r < w.rows(); ++r) {
    info.quantize_row(w.row(r).data(), q.data.data() + static_cast<std::size_t>(r) * row_bytes,
                      w.cols());
  }
  return q;
}

// Dequantizes `rows` rows of `cols` weights stored in `format` in `data`. Throws ShapeError for
// a non-positive shape, ArgumentError when cols is not a multiple of the block size and
// FormatError when data does not hold exactly rows * row_bytes bytes.
inline Matrix dequantize(Format format, Index rows, Index cols, const std::uint8_t* data,
                         std::size_t size) {
  const FormatInfo& info = format_info(format);
  require<ShapeError>(rows > 0 && cols > 0, "ggml::dequantize: shape ", rows, " x ", cols,
                      " must be positive");
  detail::require_row_multiple(info, cols, "ggml::dequantize");
  const std::size_t row_bytes = static_cast<std::size_t>(cols / info.block_size) * info.block_bytes;
  const std::size_t expected = row_bytes * static_cast<std::size_t>(rows);
  require<FormatError>(size == expected, "ggml::dequantize: ", size, " bytes of ", info.name,
                       " data for a ", rows, " x ", cols, " matrix; expected ", expected);
  Matrix w(rows, cols);
  for (Index r = 0; r < rows; ++r) {
    info.dequantize_row(data + static_cast<std::size_t>(r) * row_bytes, w.row(r).data(), cols);
  }
  return w;
}

inline Matrix GgmlMatrix::dequantize() const {
  return ggml::dequantize(format, rows, cols, data.data(), data.size());
}

}  // namespace slim::quant::ggml

#if defined(__clang__)
#pragma float_control(pop)
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

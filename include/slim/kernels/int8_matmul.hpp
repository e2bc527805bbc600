// Y = X W^T for 4- and 8-bit packed weights (packed_weights.hpp) and dynamically quantized int8
// activations, with integer dot products: a portable scalar reference plus AVX2
// (vpmaddubsw/vpmaddwd) and AVX-512 VNNI (vpdpbusd) paths chosen at compile time. The activation
// scheme is ggml's Q8 idea with one scale per token (per-row absmax) instead of per 32-block.
//
// Arithmetic (gemmlowp-style). Weights: code q in [0, 2^b - 1] (unsigned), scale s (fp16) and
// zero z per (row r, group g); symmetric schemes have z = 2^(b-1). w = s * (q - z).
// Activations, per token t: a = max_k |x_k|, d = a / 127, inv = 127 / a (both 0 if a = 0),
//   x~_k = clamp(nearbyint(x_k * inv), -127, 127)   (round half to even; int8, never -128)
// so |x_k - d * x~_k| <= d / 2 (plus float rounding of x_k * inv). Non-finite x throws
// NumericalError: an Inf would make every code of the token 0 or NaN and the output garbage.
// Per group the integer accumulator is
//   acc(r, t, g) = sum_{k in g} q_rk * x~_tk   (exact int32: |acc| <= group size * 255 * 127)
//   S(t, g)      = sum_{k in g} x~_tk          (computed once per token, with the quantization)
// and the output is
//   y(t, r) = d_t * ( sum_g s_rg * acc(r, t, g)  -  sum_g s_rg * z_rg * S(t, g) ).
// The zero-point term is a short float dot over groups done once per (row, token) after the main
// loop, so the inner loop never touches zero points. Because weight codes are unsigned and
// activations signed, vpdpbusd (u8 x s8, four products summed into an int32 lane) takes codes and
// activations as they are: no +128 offset trick is needed, and nothing saturates (vpdpbusd
// accumulates in 32 bits). AVX2's vpmaddubsw (u8 x s8 -> saturating s16 pair sums) is exact for
// 4-bit codes (2 * 15 * 127 < 2^15); an 8-bit code q is split into nibbles q = 16 * hi + lo and
// each nibble goes through vpmaddubsw, then vpmaddwd by 1 and by 16 widens to int32 exactly.
// The int32 accumulators of every path are bit-identical to the reference (group_dots_*); the
// float outputs differ only by summation order. An int8 path refuses groups whose worst-case
// accumulator could exceed int32 (8-bit per-channel rows of more than 66311 inputs).
//
// Layout: packed weights hold 4 rows per block, rows (0,1) and (2,3) interleaved 4 bytes at a
// time, so 32-bit lane 2j+h of a 64-byte unit holds four inputs of row 2p+h. Activations are
// stored per 64-input chunk as two 64-byte vectors, lo (inputs 0..31) and hi (32..63), each
// input quadruple repeated for h = 0, 1, matching the weight lanes; one load then serves both
// rows of a pair. The kernel keeps 2 pairs x up to 4 tokens of int32 accumulators, converts
// them to float with the group's scales at every group end, and reads the weight stream once,
// sequentially, prefetching 4 KiB ahead (GEMV, T = 1, is DRAM-bound). For many tokens (prefill;
// W8A8 GEMM when the weights are 8-bit) the same kernel runs 4-token register tiles over
// 64-token activation panels that stay in L2, while each 4-row weight block stays in L1 across
// the panel. Threads (OpenMP) split the 4-row blocks; every output is computed by the same
// instruction sequence whatever the thread count, so results are identical for any `threads`.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/half.hpp>
#include <slim/core/types.hpp>
#include <slim/kernels/packed_weights.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace slim::kernels {

// Tokens quantized to int8 for one PackedWeights layout (see the header comment).
struct QuantizedActivations {
  Index tokens = 0;
  Index cols = 0;
  Index cols_padded = 0;
  Index param_groups = 0;
  detail::AlignedVector<std::int8_t> values;  // tokens x 2 * cols_padded, lo/hi per chunk
  std::vector<float> scales;                  // d_t = absmax / 127
  detail::AlignedVector<float> group_sums;    // tokens x 4 * param_groups: S(t, g) repeated 4x

  const std::int8_t* token(Index t) const {
    return values.data() + static_cast<std::size_t>(t) * 2 * static_cast<std::size_t>(cols_padded);
  }
  const float* sums(Index t) const {
    return group_sums.data() + static_cast<std::size_t>(t * 4 * param_groups);
  }
  // x~_tk.
  int value(Index t, Index k) const {
    const Index c = k / kChunk, kk = k % kChunk;
    return token(t)[c * 128 + (kk / kSubBlock) * 64 + 8 * ((kk % kSubBlock) / 4) + kk % 4];
  }
};

// Group of input k under layout w.
inline Index group_of(const PackedWeights& w, Index k) {
  if (w.split) return k / kSubBlock;
  return k / (w.chunks_per_group * kChunk);
}

// Quantizes each row of x (tokens x w.cols) to int8 with its own absmax scale. Throws ShapeError
// for a wrong width or no rows and NumericalError for a non-finite value; `fn` names the caller.
inline void quantize_activations(const Eigen::Ref<const Matrix>& x, const PackedWeights& w,
                                 QuantizedActivations& out,
                                 const char* fn = "quantize_activations") {
  require<ShapeError>(x.rows() > 0, fn, ": input has no rows; expected at least one token");
  require<ShapeError>(x.cols() == w.cols, fn, ": input has ", x.cols(),
                      " columns; expected in_features ", w.cols);
  out.tokens = x.rows();
  out.cols = w.cols;
  out.cols_padded = w.cols_padded;
  out.param_groups = w.param_groups;
  out.values.assign(static_cast<std::size_t>(x.rows() * 2 * w.cols_padded), 0);
  out.scales.assign(static_cast<std::size_t>(x.rows()), 0.0f);
  out.group_sums.assign(static_cast<std::size_t>(x.rows() * 4 * w.param_groups), 0.0f);
  std::vector<int> sums(static_cast<std::size_t>(w.param_groups));
  for (Index t = 0; t < x.rows(); ++t) {
    const float* row = x.row(t).data();
    float amax = 0.0f;
    for (Index k = 0; k < x.cols(); ++k) {
      if (!std::isfinite(row[k])) {
        throw NumericalError(slim::detail::concat(
            fn, ": activation (", t, ", ", k, ") is ", row[k],
            "; the int8 activation path needs finite inputs (its absmax scale would be ", row[k],
            ")"));
      }
      amax = std::max(amax, std::abs(row[k]));
    }
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    out.scales[static_cast<std::size_t>(t)] = amax / 127.0f;
    std::int8_t* dst = out.values.data() + static_cast<std::size_t>(t * 2 * w.cols_padded);
    std::fill(sums.begin(), sums.end(), 0);
    for (Index k0 = 0; k0 < x.cols(); k0 += kSubBlock) {  // one lo or hi half-chunk at a time
      std::int8_t* half = dst + (k0 / kChunk) * 128 + ((k0 / kSubBlock) % 2) * 64;
      const Index n = std::min(kSubBlock, x.cols() - k0);
      int sum = 0;
      for (Index i = 0; i < n; ++i) {
        const float q = std::clamp(std::nearbyint(row[k0 + i] * inv), -127.0f, 127.0f);
        const auto v = static_cast<std::int8_t>(q);
        half[8 * (i / 4) + i % 4] = v;
        half[8 * (i / 4) + i % 4 + 4] = v;
        sum += v;
      }
      sums[static_cast<std::size_t>(group_of(w, k0))] += sum;
    }
    float* s = out.group_sums.data() + static_cast<std::size_t>(t * 4 * w.param_groups);
    for (Index g = 0; g < w.param_groups; ++g)
      for (Index r = 0; r < 4; ++r)
        s[g * 4 + r] = static_cast<float>(sums[static_cast<std::size_t>(g)]);
  }
}

// Throws ArgumentError if a group's int32 accumulator could overflow for these weights.
inline void require_int32_safe(const PackedWeights& w, const char* fn) {
  const Index span = w.split ? kSubBlock : w.chunks_per_group * kChunk;
  const double worst = static_cast<double>(span) * ((1 << w.bits) - 1) * 127.0;
  require<ArgumentError>(
      worst <= static_cast<double>(std::numeric_limits<std::int32_t>::max()), fn, ": a group of ",
      span, " inputs at ", w.bits, " bits could overflow the int32 accumulator; expected at most ",
      static_cast<Index>(std::numeric_limits<std::int32_t>::max() / (((1 << w.bits) - 1) * 127.0)),
      " inputs per group");
}

inline void require_threads(int threads, const char* fn) {
  require<ArgumentError>(threads >= 1, fn, ": threads ", threads, " must be at least 1");
}

// ---------------------------------------------------------------------------------------------
// Scalar reference (always compiled).

// acc(r, t, g) for every real row, token and visited group: out[(r * tokens + t) * groups_padded
// + g]. The SIMD group_dots_* must return exactly these integers.
inline void group_dots_reference(const PackedWeights& w, const QuantizedActivations& a,
                                 std::int32_t* out) {
  const Index span = w.split ? kSubBlock : w.chunks_per_group * kChunk;
  for (Index r = 0; r < w.rows; ++r)
    for (Index t = 0; t < a.tokens; ++t)
      for (Index g = 0; g < w.groups_padded; ++g) {
        std::int32_t acc = 0;
        for (Index k = g * span; k < std::min((g + 1) * span, w.cols_padded); ++k)
          acc += w.code(r, k) * a.value(t, k);
        out[(r * a.tokens + t) * w.groups_padded + g] = acc;
      }
}

// y(t, r) at y[t * ldy + r] by the formula in the header comment, in scalar code.
inline void matmul_int8_reference(const PackedWeights& w, const QuantizedActivations& a, float* y,
                                  Index ldy, int threads = 1) {
  require_threads(threads, "matmul_int8_reference");
  const Index span = w.split ? kSubBlock : w.chunks_per_group * kChunk;
#if defined(_OPENMP)
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
  for (Index r = 0; r < w.rows; ++r) {
    for (Index t = 0; t < a.tokens; ++t) {
      float main = 0.0f, correction = 0.0f;
      for (Index g = 0; g < w.groups_padded; ++g) {
        std::int32_t acc = 0;
        for (Index k = g * span; k < std::min((g + 1) * span, w.cols_padded); ++k)
          acc += w.code(r, k) * a.value(t, k);
        const float s = g < w.groups ? w.scale(r, g) : 0.0f;
        const int z = g < w.groups ? w.zero(r, g) : 0;
        main += s * static_cast<float>(acc);
        correction += s * static_cast<float>(z) * a.sums(t)[g * 4];
      }
      y[t * ldy + r] = a.scales[static_cast<std::size_t>(t)] * (main - correction);
    }
  }
}

namespace detail {

// Tokens per activation panel (kept in L2 while every row block streams past it).
inline constexpr Index kTokenPanel = 64;
// How far ahead of the weight stream the SIMD kernels prefetch.
#ifndef SLIM_KERNELS_PREFETCH_BYTES
#define SLIM_KERNELS_PREFETCH_BYTES 4096
#endif
inline constexpr std::size_t kPrefetchBytes = SLIM_KERNELS_PREFETCH_BYTES;

// Runs tile(b, t0, nt) over all row blocks (parallel) and tokens (panels, groups of up to
// max_nt).
template <typename Tile>
void for_each_tile(const PackedWeights& w, Index tokens, int threads, Index max_nt,
                   const Tile& tile) {
  for (Index p0 = 0; p0 < tokens; p0 += kTokenPanel) {
    const Index p1 = std::min(tokens, p0 + kTokenPanel);
#if defined(_OPENMP)
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
    for (Index b = 0; b < w.row_blocks; ++b)
      for (Index t = p0; t < p1; t += max_nt) tile(b, t, std::min(max_nt, p1 - t));
  }
  (void)threads;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// AVX-512 VNNI.
#if defined(SLIM_KERNELS_AVX512VNNI)
namespace detail::avx512 {

// One block of 4 rows x NT tokens. Capture: also store the int32 group accumulators.
template <int Bits, bool Split, int NT, bool Capture>
inline void tile(const PackedWeights& w, Index b, const QuantizedActivations& a, Index t0, float* y,
                 Index ldy, std::int32_t* capture) {
  constexpr bool kDual = NT <= 2;  // separate lo/hi accumulators: more independent chains
  constexpr int H = kDual ? 2 : 1;
  const std::uint8_t* codes = w.block(b);
  const std::uint16_t* scales = w.block_scales(b);
  const std::int8_t* xs[NT];
  for (int t = 0; t < NT; ++t) xs[t] = a.token(t0 + t);
  __m512i iacc[H][2][NT];
  __m512 facc[H][2][NT];
  for (int h = 0; h < H; ++h)
    for (int p = 0; p < 2; ++p)
      for (int t = 0; t < NT; ++t) {
        iacc[h][p][t] = _mm512_setzero_si512();
        facc[h][p][t] = _mm512_setzero_ps();
      }
  const __m512i nibble = _mm512_set1_epi8(0x0f);
  const Index chunks = w.chunks();
  const std::size_t unit = w.unit_bytes;

  // Converts accumulators of half h (or both, if `both`) for group g into floats.
  auto flush = [&](Index g, int h, bool both) {
    const __m128 s4 =
        _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(scales + 4 * g)));
    const __m512 sv[2] = {_mm512_broadcast_f32x2(s4),
                          _mm512_broadcast_f32x2(_mm_movehl_ps(s4, s4))};
    for (int p = 0; p < 2; ++p)
      for (int t = 0; t < NT; ++t) {
        __m512i acc = iacc[h][p][t];
        if (kDual && both) {
          acc = _mm512_add_epi32(acc, iacc[1][p][t]);
          iacc[1][p][t] = _mm512_setzero_si512();
        }
        if constexpr (Capture) {
          for (int hh = 0; hh < 2; ++hh) {
            const Index r = b * kBlockRows + 2 * p + hh;
            if (r < w.rows)
              capture[(r * a.tokens + t0 + t) * w.groups_padded + g] =
                  _mm512_mask_reduce_add_epi32(hh ? 0xAAAA : 0x5555, acc);
          }
        }
        facc[h][p][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), sv[p], facc[h][p][t]);
        iacc[h][p][t] = _mm512_setzero_si512();
      }
  };

  for (Index c = 0; c < chunks; ++c) {
    const std::uint8_t* u = codes + static_cast<std::size_t>(c) * 2 * unit;
    // One sequential stream per thread: prefetch far enough ahead to keep DRAM busy.
    for (std::size_t line = 0; line < 2 * unit; line += 64)
      _mm_prefetch(reinterpret_cast<const char*>(u + kPrefetchBytes + line), _MM_HINT_T0);
    __m512i lo[2], hi[2];
    for (int p = 0; p < 2; ++p) {
      if constexpr (Bits == 4) {
        const __m512i v = _mm512_load_si512(u + p * unit);
        lo[p] = _mm512_and_si512(v, nibble);
        hi[p] = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
      } else {
        lo[p] = _mm512_load_si512(u + p * unit);
        hi[p] = _mm512_load_si512(u + p * unit + 64);
      }
    }
    if constexpr (Split) {
      for (int t = 0; t < NT; ++t) {
        const __m512i x = _mm512_load_si512(xs[t] + c * 128);
        for (int p = 0; p < 2; ++p) iacc[0][p][t] = _mm512_dpbusd_epi32(iacc[0][p][t], lo[p], x);
      }
      flush(2 * c, 0, false);
      for (int t = 0; t < NT; ++t) {
        const __m512i x = _mm512_load_si512(xs[t] + c * 128 + 64);
        for (int p = 0; p < 2; ++p)
          iacc[H - 1][p][t] = _mm512_dpbusd_epi32(iacc[H - 1][p][t], hi[p], x);
      }
      flush(2 * c + 1, H - 1, false);
    } else {
      for (int t = 0; t < NT; ++t) {
        const __m512i xl = _mm512_load_si512(xs[t] + c * 128);
        const __m512i xh = _mm512_load_si512(xs[t] + c * 128 + 64);
        for (int p = 0; p < 2; ++p) {
          iacc[0][p][t] = _mm512_dpbusd_epi32(iacc[0][p][t], lo[p], xl);
          iacc[H - 1][p][t] = _mm512_dpbusd_epi32(iacc[H - 1][p][t], hi[p], xh);
        }
      }
      if ((c + 1) % w.chunks_per_group == 0) flush((c + 1) / w.chunks_per_group - 1, 0, true);
    }
  }
  if constexpr (Capture) return;

  // Zero-point term: sum_g s_rg z_rg S(t, g), 4 groups (16 lanes [g][r]) at a time.
  __m512 corr[NT];
  for (int t = 0; t < NT; ++t) corr[t] = _mm512_setzero_ps();
  const std::uint8_t* zeros = w.block_zeros(b);
  const __m512 zsym = _mm512_set1_ps(static_cast<float>(w.zero_point()));
  for (Index g = 0; g < w.param_groups; g += 4) {
    const __m512 s =
        _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(scales + 4 * g)));
    const __m512 z = zeros ? _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
                                 _mm_loadu_si128(reinterpret_cast<const __m128i*>(zeros + 4 * g))))
                           : zsym;
    const __m512 m = _mm512_mul_ps(s, z);
    for (int t = 0; t < NT; ++t)
      corr[t] = _mm512_fmadd_ps(m, _mm512_load_ps(a.sums(t0 + t) + 4 * g), corr[t]);
  }
  for (int t = 0; t < NT; ++t) {
    const float d = a.scales[static_cast<std::size_t>(t0 + t)];
    for (int rr = 0; rr < 4; ++rr) {
      const Index r = b * kBlockRows + rr;
      if (r >= w.rows) break;
      const int p = rr / 2;
      const __mmask16 lanes = (rr % 2) ? 0xAAAA : 0x5555;
      __m512 f = facc[0][p][t];
      if (kDual) f = _mm512_add_ps(f, facc[H - 1][p][t]);
      const float main = _mm512_mask_reduce_add_ps(lanes, f);
      const float c = _mm512_mask_reduce_add_ps(static_cast<__mmask16>(0x1111 << rr), corr[t]);
      y[(t0 + t) * ldy + r] = d * (main - c);
    }
  }
}

template <int Bits, bool Split, bool Capture>
inline void run(const PackedWeights& w, const QuantizedActivations& a, float* y, Index ldy,
                int threads, std::int32_t* capture) {
  detail::for_each_tile(w, a.tokens, Capture ? 1 : threads, 4, [&](Index b, Index t, Index nt) {
    switch (nt) {
      case 4:
        tile<Bits, Split, 4, Capture>(w, b, a, t, y, ldy, capture);
        break;
      case 3:
        tile<Bits, Split, 3, Capture>(w, b, a, t, y, ldy, capture);
        break;
      case 2:
        tile<Bits, Split, 2, Capture>(w, b, a, t, y, ldy, capture);
        break;
      default:
        tile<Bits, Split, 1, Capture>(w, b, a, t, y, ldy, capture);
        break;
    }
  });
}

template <bool Capture>
inline void dispatch(const PackedWeights& w, const QuantizedActivations& a, float* y, Index ldy,
                     int threads, std::int32_t* capture) {
  if (w.bits == 4) {
    if (w.split)
      run<4, true, Capture>(w, a, y, ldy, threads, capture);
    else
      run<4, false, Capture>(w, a, y, ldy, threads, capture);
  } else {
    if (w.split)
      run<8, true, Capture>(w, a, y, ldy, threads, capture);
    else
      run<8, false, Capture>(w, a, y, ldy, threads, capture);
  }
}

}  // namespace detail::avx512

inline void group_dots_avx512(const PackedWeights& w, const QuantizedActivations& a,
                              std::int32_t* out) {
  detail::avx512::dispatch<true>(w, a, nullptr, 0, 1, out);
}

inline void matmul_int8_avx512(const PackedWeights& w, const QuantizedActivations& a, float* y,
                               Index ldy, int threads = 1) {
  require_threads(threads, "matmul_int8_avx512");
  detail::avx512::dispatch<false>(w, a, y, ldy, threads, nullptr);
}
#endif  // SLIM_KERNELS_AVX512VNNI

// ---------------------------------------------------------------------------------------------
// AVX2 + FMA + F16C.
#if defined(SLIM_KERNELS_AVX2)
namespace detail::avx2 {

// Four-code dot products of 32 bytes of unsigned codes with 32 signed activations, as 8 int32
// lanes (lane i: bytes 4i .. 4i+3).
template <int Bits>
inline __m256i dot(__m256i q, __m256i x) {
  const __m256i ones = _mm256_set1_epi16(1);
  if constexpr (Bits == 4) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), ones);
  } else {
    const __m256i nibble = _mm256_set1_epi8(0x0f);
    const __m256i lo = _mm256_and_si256(q, nibble);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), nibble);
    return _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(lo, x), ones),
                            _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x), _mm256_set1_epi16(16)));
  }
}

inline std::int32_t sum_lanes(__m256i v, int parity) {
  alignas(32) std::int32_t l[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(l), v);
  return l[parity] + l[parity + 2] + l[parity + 4] + l[parity + 6];
}

template <int Bits, bool Split, int NT, bool Capture>
inline void tile(const PackedWeights& w, Index b, const QuantizedActivations& a, Index t0, float* y,
                 Index ldy, std::int32_t* capture) {
  const std::uint8_t* codes = w.block(b);
  const std::uint16_t* scales = w.block_scales(b);
  const std::int8_t* xs[NT];
  for (int t = 0; t < NT; ++t) xs[t] = a.token(t0 + t);
  __m256i iacc[2][NT];
  __m256 facc[2][NT];
  for (int p = 0; p < 2; ++p)
    for (int t = 0; t < NT; ++t) {
      iacc[p][t] = _mm256_setzero_si256();
      facc[p][t] = _mm256_setzero_ps();
    }
  const __m256i nibble = _mm256_set1_epi8(0x0f);
  const Index chunks = w.chunks();
  const std::size_t unit = w.unit_bytes;

  auto flush = [&](Index g) {
    const __m128 s4 =
        _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(scales + 4 * g)));
    const __m256 sv[2] = {
        _mm256_castpd_ps(_mm256_broadcastsd_pd(_mm_castps_pd(s4))),
        _mm256_castpd_ps(_mm256_broadcastsd_pd(_mm_castps_pd(_mm_movehl_ps(s4, s4))))};
    for (int p = 0; p < 2; ++p)
      for (int t = 0; t < NT; ++t) {
        if constexpr (Capture) {
          for (int hh = 0; hh < 2; ++hh) {
            const Index r = b * kBlockRows + 2 * p + hh;
            if (r < w.rows)
              capture[(r * a.tokens + t0 + t) * w.groups_padded + g] = sum_lanes(iacc[p][t], hh);
          }
        }
        facc[p][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[p][t]), sv[p], facc[p][t]);
        iacc[p][t] = _mm256_setzero_si256();
      }
  };
  // Weight half `half` (lo 0 / hi 1) of pair p, 32-byte part `part`.
  auto weights = [&](const std::uint8_t* u, int p, int half, int part) {
    if constexpr (Bits == 4) {
      const __m256i v =
          _mm256_load_si256(reinterpret_cast<const __m256i*>(u + p * unit + 32 * part));
      return half ? _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble) : _mm256_and_si256(v, nibble);
    } else {
      return _mm256_load_si256(
          reinterpret_cast<const __m256i*>(u + p * unit + 64 * half + 32 * part));
    }
  };
  auto accumulate = [&](const std::uint8_t* u, Index c, int half) {
    for (int part = 0; part < 2; ++part) {
      const __m256i q[2] = {weights(u, 0, half, part), weights(u, 1, half, part)};
      for (int t = 0; t < NT; ++t) {
        const __m256i x = _mm256_load_si256(
            reinterpret_cast<const __m256i*>(xs[t] + c * 128 + 64 * half + 32 * part));
        for (int p = 0; p < 2; ++p) iacc[p][t] = _mm256_add_epi32(iacc[p][t], dot<Bits>(q[p], x));
      }
    }
  };

  for (Index c = 0; c < chunks; ++c) {
    const std::uint8_t* u = codes + static_cast<std::size_t>(c) * 2 * unit;
    if constexpr (Split) {
      accumulate(u, c, 0);
      flush(2 * c);
      accumulate(u, c, 1);
      flush(2 * c + 1);
    } else {
      accumulate(u, c, 0);
      accumulate(u, c, 1);
      if ((c + 1) % w.chunks_per_group == 0) flush((c + 1) / w.chunks_per_group - 1);
    }
  }
  if constexpr (Capture) return;

  __m256 corr[NT];
  for (int t = 0; t < NT; ++t) corr[t] = _mm256_setzero_ps();
  const std::uint8_t* zeros = w.block_zeros(b);
  const __m256 zsym = _mm256_set1_ps(static_cast<float>(w.zero_point()));
  for (Index g = 0; g < w.param_groups; g += 2) {
    const __m256 s =
        _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(scales + 4 * g)));
    const __m256 z = zeros ? _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(
                                 _mm_loadl_epi64(reinterpret_cast<const __m128i*>(zeros + 4 * g))))
                           : zsym;
    const __m256 m = _mm256_mul_ps(s, z);
    for (int t = 0; t < NT; ++t)
      corr[t] = _mm256_fmadd_ps(m, _mm256_load_ps(a.sums(t0 + t) + 4 * g), corr[t]);
  }
  for (int t = 0; t < NT; ++t) {
    const float d = a.scales[static_cast<std::size_t>(t0 + t)];
    alignas(32) float cl[8];
    _mm256_store_ps(cl, corr[t]);
    for (int rr = 0; rr < 4; ++rr) {
      const Index r = b * kBlockRows + rr;
      if (r >= w.rows) break;
      alignas(32) float l[8];
      _mm256_store_ps(l, facc[rr / 2][t]);
      const int h = rr % 2;
      const float main = (l[h] + l[h + 2]) + (l[h + 4] + l[h + 6]);
      y[(t0 + t) * ldy + r] = d * (main - (cl[rr] + cl[rr + 4]));
    }
  }
}

template <int Bits, bool Split, bool Capture>
inline void run(const PackedWeights& w, const QuantizedActivations& a, float* y, Index ldy,
                int threads, std::int32_t* capture) {
  detail::for_each_tile(w, a.tokens, Capture ? 1 : threads, 2, [&](Index b, Index t, Index nt) {
    if (nt == 2)
      tile<Bits, Split, 2, Capture>(w, b, a, t, y, ldy, capture);
    else
      tile<Bits, Split, 1, Capture>(w, b, a, t, y, ldy, capture);
  });
}

template <bool Capture>
inline void dispatch(const PackedWeights& w, const QuantizedActivations& a, float* y, Index ldy,
                     int threads, std::int32_t* capture) {
  if (w.bits == 4) {
    if (w.split)
      run<4, true, Capture>(w, a, y, ldy, threads, capture);
    else
      run<4, false, Capture>(w, a, y, ldy, threads, capture);
  } else {
    if (w.split)
      run<8, true, Capture>(w, a, y, ldy, threads, capture);
    else
      run<8, false, Capture>(w, a, y, ldy, threads, capture);
  }
}

}  // namespace detail::avx2

inline void group_dots_avx2(const PackedWeights& w, const QuantizedActivations& a,
                            std::int32_t* out) {
  detail::avx2::dispatch<true>(w, a, nullptr, 0, 1, out);
}

inline void matmul_int8_avx2(const PackedWeights& w, const QuantizedActivations& a, float* y,
                             Index ldy, int threads = 1) {
  require_threads(threads, "matmul_int8_avx2");
  detail::avx2::dispatch<false>(w, a, y, ldy, threads, nullptr);
}
#endif  // SLIM_KERNELS_AVX2

// The best path compiled in: "avx512-vnni", "avx2" or "scalar".
inline const char* int8_isa() {
#if defined(SLIM_KERNELS_AVX512VNNI)
  return "avx512-vnni";
#elif defined(SLIM_KERNELS_AVX2)
  return "avx2";
#else
  return "scalar";
#endif
}

// y[t * ldy + r] = row t of X W^T through the best compiled path.
inline void matmul_int8(const PackedWeights& w, const QuantizedActivations& a, float* y, Index ldy,
                        int threads = 1) {
#if defined(SLIM_KERNELS_AVX512VNNI)
  matmul_int8_avx512(w, a, y, ldy, threads);
#elif defined(SLIM_KERNELS_AVX2)
  matmul_int8_avx2(w, a, y, ldy, threads);
#else
  matmul_int8_reference(w, a, y, ldy, threads);
#endif
}

}  // namespace slim::kernels

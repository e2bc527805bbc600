// Y = X W^T for packed 4- and 8-bit weights (packed_weights.hpp) and fp32 activations, with
// w = s * (q - z) computed on the fly (exactly QuantizedMatrix::dequantize's values), so the
// result equals X * dequantize(W)^T up to float summation order. Few tokens (T <= 8): a direct
// AVX-512 kernel converts each 16 codes to floats (q - z in int32, then * s) and FMAs them with
// the activations, reading the weight stream once. More tokens, or no AVX-512: each thread
// dequantizes a tile of rows into an L2-sized float buffer (SIMD when available) and multiplies
// it with Eigen. Activations are used as given: NaN/Inf propagate as in a dense fp32 layer.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/types.hpp>
#include <slim/kernels/packed_weights.hpp>

#include <algorithm>
#include <cstdint>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace slim::kernels {

namespace detail {

// Tokens up to which the direct kernel runs (beyond, the dequantized tile + Eigen GEMM wins).
inline constexpr Index kDirectFp32Tokens = 8;

// x (tokens x cols) as floats in the kernels' chunk layout (the int8 activation layout of
// int8_matmul.hpp): per 64-input chunk, lo then hi, each input quadruple repeated twice.
inline void duplicate_activations(const Eigen::Ref<const Matrix>& x, Index cols_padded,
                                  AlignedVector<float>& out) {
  out.assign(static_cast<std::size_t>(x.rows() * 2 * cols_padded), 0.0f);
  for (Index t = 0; t < x.rows(); ++t) {
    float* dst = out.data() + t * 2 * cols_padded;
    for (Index k = 0; k < x.cols(); ++k) {
      const Index c = k / kChunk, kk = k % kChunk;
      float* at = dst + c * 128 + (kk / kSubBlock) * 64 + 8 * ((kk % kSubBlock) / 4) + kk % 4;
      at[0] = at[4] = x(t, k);
    }
  }
}

}  // namespace detail

#if defined(SLIM_KERNELS_AVX512)
namespace detail::avx512_fp32 {

// 16 codes (bytes 16i .. 16i+15 of a 64-byte unit, `half` selecting the nibble for 4-bit) as
// int32 lanes [row 2p: 4, row 2p+1: 4, row 2p: 4, row 2p+1: 4].
template <int Bits>
inline __m512i codes16(const std::uint8_t* unit, int half, int i) {
  if constexpr (Bits == 4) {
    __m128i v = _mm_load_si128(reinterpret_cast<const __m128i*>(unit + 16 * i));
    if (half) v = _mm_srli_epi16(v, 4);
    return _mm512_cvtepu8_epi32(_mm_and_si128(v, _mm_set1_epi8(0x0f)));
  } else {
    return _mm512_cvtepu8_epi32(
        _mm_load_si128(reinterpret_cast<const __m128i*>(unit + 64 * half + 16 * i)));
  }
}

// Lane l of pair p belongs to row 2p + ((l / 4) % 2) of the block.
inline __m512i pair_rows(int p) {
  return _mm512_set_epi32(2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p, 2 * p, 2 * p, 2 * p,
                          2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p, 2 * p, 2 * p, 2 * p);
}

// Scales and zeros of group g for the 4 rows, spread to the lane pattern of each pair.
inline void group_params(const PackedWeights& w, Index b, Index g, __m512 sv[2], __m512i zv[2]) {
  const __m128 s4 =
      _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w.block_scales(b) + 4 * g)));
  const std::uint8_t* zeros = w.block_zeros(b);
  std::int32_t z32 = 0;
  if (zeros) std::memcpy(&z32, zeros + 4 * g, 4);
  const __m128i z4 =
      zeros ? _mm_cvtepu8_epi32(_mm_cvtsi32_si128(z32)) : _mm_set1_epi32(w.zero_point());
  for (int p = 0; p < 2; ++p) {
    sv[p] = _mm512_permutexvar_ps(pair_rows(p), _mm512_castps128_ps512(s4));
    zv[p] = _mm512_permutexvar_epi32(pair_rows(p), _mm512_castsi128_si512(z4));
  }
}

template <int Bits, int NT>
inline void tile(const PackedWeights& w, Index b, const float* xdup, Index t0, float* y,
                 Index ldy) {
  constexpr int Q = NT == 1 ? 4 : (NT == 2 ? 2 : 1);  // independent accumulators per output
  const Index ldx = 2 * w.cols_padded;
  __m512 acc[2][NT][Q];
  for (int p = 0; p < 2; ++p)
    for (int t = 0; t < NT; ++t)
      for (int q = 0; q < Q; ++q) acc[p][t][q] = _mm512_setzero_ps();
  __m512 sv[2];
  __m512i zv[2];
  Index current = -1;
  const std::uint8_t* codes = w.block(b);
  for (Index c = 0; c < w.chunks(); ++c) {
    const std::uint8_t* u = codes + static_cast<std::size_t>(c) * 2 * w.unit_bytes;
    for (std::size_t line = 0; line < 2 * w.unit_bytes; line += 64)
      _mm_prefetch(reinterpret_cast<const char*>(u + 4096 + line), _MM_HINT_T0);
    for (int half = 0; half < 2; ++half) {
      const Index k0 = c * kChunk + half * kSubBlock;
      const Index g = w.split ? k0 / kSubBlock : k0 / (w.chunks_per_group * kChunk);
      if (g != current) {
        group_params(w, b, g, sv, zv);
        current = g;
      }
      for (int p = 0; p < 2; ++p) {
        const std::uint8_t* unit = u + static_cast<std::size_t>(p) * w.unit_bytes;
        for (int i = 0; i < 4; ++i) {
          const __m512 wf = _mm512_mul_ps(
              _mm512_cvtepi32_ps(_mm512_sub_epi32(codes16<Bits>(unit, half, i), zv[p])), sv[p]);
          for (int t = 0; t < NT; ++t) {
            const float* x = xdup + (t0 + t) * ldx + c * 128 + 64 * half + 16 * i;
            acc[p][t][i % Q] = _mm512_fmadd_ps(wf, _mm512_load_ps(x), acc[p][t][i % Q]);
          }
        }
      }
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int rr = 0; rr < 4; ++rr) {
      const Index r = b * kBlockRows + rr;
      if (r >= w.rows) break;
      __m512 f = acc[rr / 2][t][0];
      for (int q = 1; q < Q; ++q) f = _mm512_add_ps(f, acc[rr / 2][t][q]);
      y[(t0 + t) * ldy + r] =
          _mm512_mask_reduce_add_ps(static_cast<__mmask16>(rr % 2 ? 0xF0F0 : 0x0F0F), f);
    }
}

template <int Bits>
inline void direct(const PackedWeights& w, const float* xdup, Index tokens, float* y, int threads) {
#if defined(_OPENMP)
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
  for (Index b = 0; b < w.row_blocks; ++b)
    for (Index t = 0; t < tokens; t += 4) {
      switch (std::min<Index>(4, tokens - t)) {
        case 4:
          tile<Bits, 4>(w, b, xdup, t, y, w.rows);
          break;
        case 3:
          tile<Bits, 3>(w, b, xdup, t, y, w.rows);
          break;
        case 2:
          tile<Bits, 2>(w, b, xdup, t, y, w.rows);
          break;
        default:
          tile<Bits, 1>(w, b, xdup, t, y, w.rows);
          break;
      }
    }
  (void)threads;
}

// dequantize_block with AVX-512.
template <int Bits>
inline void dequantize_block(const PackedWeights& w, Index b, float* out) {
  // [row 2p lanes (0-3, 8-11) | row 2p+1 lanes (4-7, 12-15)]
  const __m512i split_rows = _mm512_set_epi32(15, 14, 13, 12, 7, 6, 5, 4, 11, 10, 9, 8, 3, 2, 1, 0);
  __m512 sv[2];
  __m512i zv[2];
  Index current = -1;
  const std::uint8_t* codes = w.block(b);
  for (Index c = 0; c < w.chunks(); ++c) {
    const std::uint8_t* u = codes + static_cast<std::size_t>(c) * 2 * w.unit_bytes;
    for (int half = 0; half < 2; ++half) {
      const Index k0 = c * kChunk + half * kSubBlock;
      const Index g = w.split ? k0 / kSubBlock : k0 / (w.chunks_per_group * kChunk);
      if (g != current) {
        group_params(w, b, g, sv, zv);
        current = g;
      }
      for (int p = 0; p < 2; ++p) {
        const std::uint8_t* unit = u + static_cast<std::size_t>(p) * w.unit_bytes;
        float* row0 = out + (2 * p) * w.cols_padded + k0;
        float* row1 = row0 + w.cols_padded;
        for (int i = 0; i < 4; ++i) {
          const __m512 wf = _mm512_permutexvar_ps(
              split_rows, _mm512_mul_ps(_mm512_cvtepi32_ps(
                                            _mm512_sub_epi32(codes16<Bits>(unit, half, i), zv[p])),
                                        sv[p]));
          _mm256_storeu_ps(row0 + 8 * i, _mm512_castps512_ps256(wf));
          _mm256_storeu_ps(row1 + 8 * i, _mm512_extractf32x8_ps(wf, 1));
        }
      }
    }
  }
  for (Index rr = 0; rr < kBlockRows; ++rr)
    std::fill(out + rr * w.cols_padded + w.cols, out + (rr + 1) * w.cols_padded, 0.0f);
}

}  // namespace detail::avx512_fp32
#endif  // SLIM_KERNELS_AVX512

// dequantize_block through the fastest compiled path (same values as the scalar one).
inline void dequantize_block_fast(const PackedWeights& w, Index b, float* out) {
#if defined(SLIM_KERNELS_AVX512)
  if (w.bits == 4)
    detail::avx512_fp32::dequantize_block<4>(w, b, out);
  else
    detail::avx512_fp32::dequantize_block<8>(w, b, out);
#else
  dequantize_block(w, b, out);
#endif
}

// y (tokens x rows) = x (tokens x cols) * dequantize(w)^T with `threads` OpenMP threads. Throws
// ShapeError for an empty x or a wrong width and ArgumentError for threads < 1.
inline void matmul_fp32(const PackedWeights& w, const Eigen::Ref<const Matrix>& x, Matrix& y,
                        int threads = 1) {
  require<ArgumentError>(threads >= 1, "matmul_fp32: threads ", threads, " must be at least 1");
  require<ShapeError>(x.rows() > 0, "matmul_fp32: input has no rows; expected at least one token");
  require<ShapeError>(x.cols() == w.cols, "matmul_fp32: input has ", x.cols(),
                      " columns; expected in_features ", w.cols);
  y.resize(x.rows(), w.rows);
#if defined(SLIM_KERNELS_AVX512)
  if (x.rows() <= detail::kDirectFp32Tokens) {
    detail::AlignedVector<float> xdup;
    detail::duplicate_activations(x, w.cols_padded, xdup);
    if (w.bits == 4)
      detail::avx512_fp32::direct<4>(w, xdup.data(), x.rows(), y.data(), threads);
    else
      detail::avx512_fp32::direct<8>(w, xdup.data(), x.rows(), y.data(), threads);
    return;
  }
#endif
  // Tiles of about 256 KiB of floats (at most 64 rows) for few tokens; for many tokens, Eigen
  // repacks X for every tile, so tiles grow to about 4 MiB (at most 256 rows).
  const bool many = x.rows() > 64;
  const Index tile_blocks = std::clamp<Index>(
      (Index{1} << (many ? 22 : 18)) / (4 * kBlockRows * w.cols_padded), 1, many ? 64 : 16);
  const Index tiles = (w.row_blocks + tile_blocks - 1) / tile_blocks;
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
#endif
  {
#if defined(_OPENMP)
    // Keep Eigen's own GEMM parallelism off inside this region (this call only changes the
    // region's implicit task): `threads` alone decides, and every tile is computed the same way.
    omp_set_num_threads(1);
#endif
    Matrix tile(tile_blocks * kBlockRows, w.cols_padded);
#if defined(_OPENMP)
#pragma omp for schedule(static)
#endif
    for (Index i = 0; i < tiles; ++i) {
      const Index b0 = i * tile_blocks, b1 = std::min(w.row_blocks, b0 + tile_blocks);
      for (Index b = b0; b < b1; ++b)
        dequantize_block_fast(w, b, tile.row((b - b0) * kBlockRows).data());
      const Index r0 = b0 * kBlockRows, n = std::min(w.rows, b1 * kBlockRows) - r0;
      y.middleCols(r0, n).noalias() = x * tile.topLeftCorner(n, w.cols).transpose();
    }
  }
}

}  // namespace slim::kernels

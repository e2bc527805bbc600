// Sparse matrix-vector and matrix-matrix products y = W x and Y = X W^T for the CSR, windowed CSR
// and N:M storage of slim/prune/sparse_storage.hpp. Each product has a portable scalar reference
// (`*_reference`) and a fast path chosen at compile time: AVX-512F (CSR: 16-wide gathers of x by
// the 16-bit column indices; windowed CSR: the window's 32 inputs held in two registers and
// selected by the 8-bit offsets with vpermt2ps, entries streamed with software prefetch; 2:4: the
// 2-bit positions decoded in registers and x selected with vpermt2ps, 16 values per 32 inputs, 8
// rows of the tiled N:M layout per pass sharing the loads of x),
// AVX2+FMA (8-wide gathers), else the scalar loop. Gathers are slow on Zen 4 (a 16-wide
// vgatherdps measured ~20 cycles here), which is why the windowed format exists. GEMM transposes X
// once and accumulates rows of X^T (vectorized by Eigen). OpenMP splits output rows.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/types.hpp>
#include <slim/prune/sparse_storage.hpp>

#include <algorithm>
#include <cstdint>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

namespace slim::kernels {

struct SparseKernelOptions {
  int threads = 0;  // OpenMP threads over output rows; 0 = OpenMP's default
};

namespace detail {

inline int sparse_threads(const SparseKernelOptions& o) {
#if defined(_OPENMP)
  return o.threads > 0 ? o.threads : omp_get_max_threads();
#else
  (void)o;
  return 1;
#endif
}

template <typename Storage>
void require_gemv_shapes(const Storage& w, Index x_size, Index y_size, const char* fn) {
  require<ShapeError>(x_size == w.cols(), fn, ": x has ", x_size, " entries; expected in_features ",
                      w.cols());
  require<ShapeError>(y_size == w.rows(), fn, ": y has ", y_size,
                      " entries; expected out_features ", w.rows());
}

#if defined(__AVX512F__)
// Sum of the 16 lanes, by vpermt2ps swaps of halves, quarters, pairs and neighbours. (GCC 12's
// _mm512_reduce_add_ps and the extract/shuffle intrinsics pass _mm512_undefined_ps, which warns
// of an uninitialized variable inside GCC's header once inlined into the 8-row loop below.)
inline float sum_lanes_ps(__m512 a) {
  const __m512i halves = _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
  const __m512i quarters = _mm512_setr_epi32(4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
  const __m512i pairs = _mm512_setr_epi32(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  const __m512i neighbours =
      _mm512_setr_epi32(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
  a = _mm512_add_ps(a, _mm512_permutex2var_ps(a, halves, a));
  a = _mm512_add_ps(a, _mm512_permutex2var_ps(a, quarters, a));
  a = _mm512_add_ps(a, _mm512_permutex2var_ps(a, pairs, a));
  a = _mm512_add_ps(a, _mm512_permutex2var_ps(a, neighbours, a));
  return _mm512_cvtss_f32(a);
}
#endif

// Dot product of CSR row entries [begin, end) with x, fast path.
inline float csr_row_dot(const prune::CsrMatrix& w, std::uint32_t begin, std::uint32_t end,
                         const float* x) {
  const float* v = w.values().data();
  if (!w.narrow_indices()) {
    const std::uint32_t* idx = w.indices32().data();
    float s = 0.0f;
    for (std::uint32_t k = begin; k < end; ++k) s += v[k] * x[idx[k]];
    return s;
  }
  const std::uint16_t* idx = w.indices16().data();
  std::uint32_t k = begin;
  float s = 0.0f;
#if defined(__AVX512F__)
  __m512 acc0 = _mm512_setzero_ps();
  __m512 acc1 = _mm512_setzero_ps();
  for (; k + 32 <= end; k += 32) {
    const __m512i i0 =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx + k)));
    const __m512i i1 =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx + k + 16)));
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(v + k), _mm512_i32gather_ps(i0, x, 4), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(v + k + 16), _mm512_i32gather_ps(i1, x, 4), acc1);
  }
  if (k + 16 <= end) {
    const __m512i i0 =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx + k)));
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(v + k), _mm512_i32gather_ps(i0, x, 4), acc0);
    k += 16;
  }
  s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
#elif defined(__AVX2__) && defined(__FMA__)
  __m256 acc0 = _mm256_setzero_ps();
  __m256 acc1 = _mm256_setzero_ps();
  for (; k + 16 <= end; k += 16) {
    const __m256i i0 =
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(idx + k)));
    const __m256i i1 =
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(idx + k + 8)));
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(v + k), _mm256_i32gather_ps(x, i0, 4), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(v + k + 8), _mm256_i32gather_ps(x, i1, 4), acc1);
  }
  const __m256 acc = _mm256_add_ps(acc0, acc1);
  const __m128 half = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  const __m128 quad = _mm_add_ps(half, _mm_movehl_ps(half, half));
  s = _mm_cvtss_f32(_mm_add_ss(quad, _mm_shuffle_ps(quad, quad, 1)));
#endif
  for (; k < end; ++k) s += v[k] * x[idx[k]];
  return s;
}

// Dot product of windowed-CSR row r with x, fast path. (Running the second 16-entry step of every
// window unconditionally to avoid the n > 16 branch was measured slower at 50% sparsity.)
inline float windowed_row_dot(const prune::WindowedCsrMatrix& w, Index r, const float* x) {
  constexpr Index window = prune::WindowedCsrMatrix::kWindow;
  const Index windows = w.windows_per_row();
  const std::uint8_t* counts = w.counts().data() + r * windows;
  const std::size_t first = w.row_offsets()[std::size_t(r)];
  const float* v = w.values().data() + first;
  const std::uint8_t* off = w.offsets().data() + first;
#if defined(__AVX512F__)
  // Entries of one window against its inputs xl = x[32q, 32q+16), xh = x[32q+16, 32q+32); lanes
  // past the window's count keep the accumulator (mask3), so they contribute nothing. Loads past
  // the row's last entry stay inside the stored padding.
  const auto low_lanes = [](Index n) {  // mask of the first n lanes (none if n <= 0)
    return _cvtu32_mask16(n >= 16 ? 0xffffu : n <= 0 ? 0u : (1u << n) - 1u);
  };
  const auto window_dot = [&](__m512 xl, __m512 xh, Index n, __m512 acc) {
    _mm_prefetch(reinterpret_cast<const char*>(v + 512), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(off + 512), _MM_HINT_T0);
    const __m512i i0 = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(off)));
    acc = _mm512_mask3_fmadd_ps(_mm512_loadu_ps(v), _mm512_permutex2var_ps(xl, i0, xh), acc,
                                low_lanes(n));
    if (n > 16) {
      const __m512i i1 =
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(off + 16)));
      acc = _mm512_mask3_fmadd_ps(_mm512_loadu_ps(v + 16), _mm512_permutex2var_ps(xl, i1, xh), acc,
                                  low_lanes(n - 16));
    }
    v += n;
    off += n;
    return acc;
  };
  __m512 acc0 = _mm512_setzero_ps();
  __m512 acc1 = _mm512_setzero_ps();
  const Index full = w.cols() / window;
  Index q = 0;
  for (; q + 2 <= full; q += 2) {  // two accumulators hide the FMA latency
    const float* xs = x + q * window;
    acc0 = window_dot(_mm512_loadu_ps(xs), _mm512_loadu_ps(xs + 16), counts[q], acc0);
    acc1 = window_dot(_mm512_loadu_ps(xs + 32), _mm512_loadu_ps(xs + 48), counts[q + 1], acc1);
  }
  for (; q < windows; ++q) {  // an odd last full window and a partial one (masked loads of x)
    const Index valid = std::min<Index>(window, w.cols() - q * window);
    const float* xs = x + q * window;
    acc0 = window_dot(_mm512_maskz_loadu_ps(low_lanes(valid), xs),
                      _mm512_maskz_loadu_ps(low_lanes(valid - 16), xs + 16), counts[q], acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
#elif defined(__AVX2__) && defined(__FMA__)
  // 8 entries at a time: x gathered from the window by the offsets, lanes past the window's count
  // masked off (gathered as 0, never loaded; stored values are finite, so v * 0 adds nothing).
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256 acc0 = _mm256_setzero_ps();
  __m256 acc1 = _mm256_setzero_ps();
  for (Index q = 0; q < windows; ++q) {
    const float* xs = x + q * window;
    const int n = counts[q];
    for (int j = 0; j < n; j += 16) {
      const __m256i i0 =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(off + j)));
      const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - j), lane);
      acc0 = _mm256_fmadd_ps(
          _mm256_loadu_ps(v + j),
          _mm256_mask_i32gather_ps(_mm256_setzero_ps(), xs, i0, _mm256_castsi256_ps(m0), 4), acc0);
      if (n - j > 8) {
        const __m256i i1 =
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(off + j + 8)));
        const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - j - 8), lane);
        acc1 = _mm256_fmadd_ps(
            _mm256_loadu_ps(v + j + 8),
            _mm256_mask_i32gather_ps(_mm256_setzero_ps(), xs, i1, _mm256_castsi256_ps(m1), 4),
            acc1);
      }
    }
    v += n;
    off += n;
  }
  const __m256 acc = _mm256_add_ps(acc0, acc1);
  const __m128 half = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  const __m128 quad = _mm_add_ps(half, _mm_movehl_ps(half, half));
  return _mm_cvtss_f32(_mm_add_ss(quad, _mm_shuffle_ps(quad, quad, 1)));
#else
  float s = 0.0f;
  for (Index q = 0; q < windows; ++q) {
    for (unsigned i = 0; i < counts[q]; ++i) s += v[i] * x[q * window + off[i]];
    v += counts[q];
    off += counts[q];
  }
  return s;
#endif
}

// Sum over values [k_begin, values_per_row) of N:M row r times x, scalar (the tail of the vector
// loop, and every N:M but 2:4 without AVX-512).
inline float nm_row_tail(const prune::NmMatrix& w, Index r, Index k_begin, const float* x) {
  const Index n = w.n();
  const Index m = w.m();
  float s = 0.0f;
  if (k_begin == 0) {
    w.for_each_in_row(r, [&](Index k, float v, Index pos) { s += v * x[(k / n) * m + pos]; });
  } else {
    for (Index k = k_begin; k < w.values_per_row(); ++k)
      s += w.value(r, k) * x[(k / n) * m + w.code(r, k)];
  }
  return s;
}

#if defined(__AVX512F__)
// 2:4, AVX-512, over the full 32-value chunks of Rows rows of NmMatrix's tiled layout: row i's
// chunk q is at v + q * chunk_stride + 32 i (codes: c + q * chunk_stride / 16 + 2 i). 16 values
// cover 8 groups = 32 inputs and their 16 two-bit codes are one word: the word is broadcast, lane
// j shifted right by 2j, and (code & 3) | 4 * (j / 2) is the lane's index into the 32 inputs held
// in two registers (vpermt2ps). Each chunk's 64 inputs are loaded once for all Rows rows: with
// one row at a time the loop issued two 64-byte x loads per 64-byte value load and ran no faster
// than dense GEMV. `ahead` floats past v remain in the array; values are prefetched 8 KB ahead
// while that stays inside it (the hardware prefetcher alone left the stream short of the memory
// bandwidth dense GEMV reaches: 1.45-1.55x instead of 1.65-1.75x at 4096 x 4096).
template <int Rows>
inline void two_four_chunks_avx512(const float* v, const std::uint32_t* c, Index chunk_stride,
                                   Index chunks, Index ahead, const float* x, float* out) {
  constexpr Index kPrefetch = 2048;
  const __m512i shifts =
      _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i base = _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
  const __m512i three = _mm512_set1_epi32(3);
  const auto index = [&](std::uint32_t word) {
    // 0xEA: (a & b) | c
    return _mm512_ternarylogic_epi32(_mm512_srlv_epi32(_mm512_set1_epi32(int(word)), shifts), three,
                                     base, 0xEA);
  };
  __m512 acc[Rows];
  for (int i = 0; i < Rows; ++i) acc[i] = _mm512_setzero_ps();
  const Index word_stride = chunk_stride / 16;
  for (Index q = 0; q < chunks; ++q) {
    const float* vq = v + q * chunk_stride;
    const std::uint32_t* cq = c + q * word_stride;
    const float* xs = x + 64 * q;
    const bool prefetch = q * chunk_stride + kPrefetch + chunk_stride <= ahead;
    const __m512 x0 = _mm512_loadu_ps(xs);
    const __m512 x1 = _mm512_loadu_ps(xs + 16);
    const __m512 x2 = _mm512_loadu_ps(xs + 32);
    const __m512 x3 = _mm512_loadu_ps(xs + 48);
    for (int i = 0; i < Rows; ++i) {
      const float* vi = vq + 32 * i;
      if (prefetch) {
        _mm_prefetch(reinterpret_cast<const char*>(vi + kPrefetch), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(vi + kPrefetch + 16), _MM_HINT_T0);
      }
      acc[i] = _mm512_fmadd_ps(_mm512_loadu_ps(vi),
                               _mm512_permutex2var_ps(x0, index(cq[2 * i]), x1), acc[i]);
      acc[i] = _mm512_fmadd_ps(_mm512_loadu_ps(vi + 16),
                               _mm512_permutex2var_ps(x2, index(cq[2 * i + 1]), x3), acc[i]);
    }
  }
  for (int i = 0; i < Rows; ++i) out[i] = sum_lanes_ps(acc[i]);
}
#endif

// y[r] for the rows of block b of NmMatrix's layout, fast path.
inline void nm_block(const prune::NmMatrix& w, Index b, const float* x, float* y) {
  constexpr Index kRowBlock = prune::NmMatrix::kRowBlock;
  const Index rb = w.block_rows(b);
  const Index r0 = b * kRowBlock;
#if defined(__AVX512F__)
  if (w.n() == 2 && w.m() == 4) {
    constexpr Index kChunk = prune::NmMatrix::kChunk;
    const Index begin = r0 * w.values_per_row();  // the block's first storage index
    const float* v = w.values() + begin;
    const std::uint32_t* c = w.codes() + begin / 16;  // 16 codes per word; begin is even * 8
    const Index chunks = w.values_per_row() / kChunk;
    const Index ahead = Index(w.value_count()) - begin;
    if (rb == kRowBlock) {
      two_four_chunks_avx512<int(kRowBlock)>(v, c, kChunk * rb, chunks, ahead, x, y + r0);
    } else {
      for (Index i = 0; i < rb; ++i)
        two_four_chunks_avx512<1>(v + kChunk * i, c + 2 * i, kChunk * rb, chunks,
                                  ahead - kChunk * i, x, y + r0 + i);
    }
    for (Index i = 0; i < rb; ++i) y[r0 + i] += nm_row_tail(w, r0 + i, chunks * kChunk, x);
    return;
  }
#endif
  for (Index i = 0; i < rb; ++i) y[r0 + i] = nm_row_tail(w, r0 + i, 0, x);
}

}  // namespace detail

// y = W x, scalar reference (one row at a time, in storage order).
inline void csr_gemv_reference(const prune::CsrMatrix& w, const float* x, float* y) {
  for (Index r = 0; r < w.rows(); ++r) {
    float s = 0.0f;
    for (std::uint32_t k = w.row_offsets()[std::size_t(r)]; k < w.row_offsets()[std::size_t(r) + 1];
         ++k)
      s += w.values()[k] * x[w.column(k)];
    y[r] = s;
  }
}

// y = W x, scalar reference (one row at a time, in storage order).
inline void windowed_gemv_reference(const prune::WindowedCsrMatrix& w, const float* x, float* y) {
  constexpr Index window = prune::WindowedCsrMatrix::kWindow;
  for (Index r = 0; r < w.rows(); ++r) {
    std::size_t k = w.row_offsets()[std::size_t(r)];
    float s = 0.0f;
    for (Index q = 0; q < w.windows_per_row(); ++q) {
      for (unsigned i = 0; i < w.counts()[std::size_t(r * w.windows_per_row() + q)]; ++i, ++k)
        s += w.values()[k] * x[q * window + w.offsets()[k]];
    }
    y[r] = s;
  }
}

inline void nm_gemv_reference(const prune::NmMatrix& w, const float* x, float* y) {
  for (Index r = 0; r < w.rows(); ++r) {
    float s = 0.0f;
    for (Index k = 0; k < w.values_per_row(); ++k)
      s += w.value(r, k) * x[(k / w.n()) * w.m() + w.code(r, k)];
    y[r] = s;
  }
}

// y = W x, fast path.
inline void csr_gemv(const prune::CsrMatrix& w, const float* x, float* y,
                     const SparseKernelOptions& options = {}) {
  const Index rows = w.rows();
  const std::uint32_t* offsets = w.row_offsets().data();
  [[maybe_unused]] const int threads = detail::sparse_threads(options);
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && rows >= 64)
#endif
  for (Index r = 0; r < rows; ++r) {
    y[r] = detail::csr_row_dot(w, offsets[r], offsets[r + 1], x);
  }
}

inline void windowed_gemv(const prune::WindowedCsrMatrix& w, const float* x, float* y,
                          const SparseKernelOptions& options = {}) {
  const Index rows = w.rows();
  [[maybe_unused]] const int threads = detail::sparse_threads(options);
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && rows >= 64)
#endif
  for (Index r = 0; r < rows; ++r) y[r] = detail::windowed_row_dot(w, r, x);
}

inline void nm_gemv(const prune::NmMatrix& w, const float* x, float* y,
                    const SparseKernelOptions& options = {}) {
  const Index blocks = (w.rows() + prune::NmMatrix::kRowBlock - 1) / prune::NmMatrix::kRowBlock;
  [[maybe_unused]] const int threads = detail::sparse_threads(options);
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && blocks >= 8)
#endif
  for (Index b = 0; b < blocks; ++b) detail::nm_block(w, b, x, y);
}

// Eigen-vector overloads with shape checks: y (out) = W x (in).
inline void csr_gemv(const prune::CsrMatrix& w, const Vector& x, Vector& y,
                     const SparseKernelOptions& options = {}) {
  detail::require_gemv_shapes(w, x.size(), w.rows(), "csr_gemv");
  y.resize(w.rows());
  csr_gemv(w, x.data(), y.data(), options);
}
inline void windowed_gemv(const prune::WindowedCsrMatrix& w, const Vector& x, Vector& y,
                          const SparseKernelOptions& options = {}) {
  detail::require_gemv_shapes(w, x.size(), w.rows(), "windowed_gemv");
  y.resize(w.rows());
  windowed_gemv(w, x.data(), y.data(), options);
}
inline void nm_gemv(const prune::NmMatrix& w, const Vector& x, Vector& y,
                    const SparseKernelOptions& options = {}) {
  detail::require_gemv_shapes(w, x.size(), w.rows(), "nm_gemv");
  y.resize(w.rows());
  nm_gemv(w, x.data(), y.data(), options);
}

// Y (tokens x out) = X (tokens x in) W^T, scalar reference.
inline Matrix csr_gemm_reference(const prune::CsrMatrix& w, const Eigen::Ref<const Matrix>& x) {
  require<ShapeError>(x.cols() == w.cols(), "csr_gemm: X has ", x.cols(),
                      " columns; expected in_features ", w.cols());
  Matrix y(x.rows(), w.rows());
  for (Index t = 0; t < x.rows(); ++t) {
    const Vector xt = x.row(t).transpose();
    csr_gemv_reference(w, xt.data(), y.row(t).data());
  }
  return y;
}
inline Matrix windowed_gemm_reference(const prune::WindowedCsrMatrix& w,
                                      const Eigen::Ref<const Matrix>& x) {
  require<ShapeError>(x.cols() == w.cols(), "windowed_gemm: X has ", x.cols(),
                      " columns; expected in_features ", w.cols());
  Matrix y(x.rows(), w.rows());
  for (Index t = 0; t < x.rows(); ++t) {
    const Vector xt = x.row(t).transpose();
    windowed_gemv_reference(w, xt.data(), y.row(t).data());
  }
  return y;
}
inline Matrix nm_gemm_reference(const prune::NmMatrix& w, const Eigen::Ref<const Matrix>& x) {
  require<ShapeError>(x.cols() == w.cols(), "nm_gemm: X has ", x.cols(),
                      " columns; expected in_features ", w.cols());
  Matrix y(x.rows(), w.rows());
  for (Index t = 0; t < x.rows(); ++t) {
    const Vector xt = x.row(t).transpose();
    nm_gemv_reference(w, xt.data(), y.row(t).data());
  }
  return y;
}

// Y = X W^T, fast path: X^T is formed once (in x tokens) and every stored weight adds a scaled
// row of X^T to its output row of Y^T.
inline Matrix csr_gemm(const prune::CsrMatrix& w, const Eigen::Ref<const Matrix>& x,
                       const SparseKernelOptions& options = {}) {
  require<ShapeError>(x.cols() == w.cols(), "csr_gemm: X has ", x.cols(),
                      " columns; expected in_features ", w.cols());
  const Matrix xt = x.transpose();
  Matrix yt(w.rows(), x.rows());
  [[maybe_unused]] const int threads = detail::sparse_threads(options);
  const Index rows = w.rows();
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && rows >= 16)
#endif
  for (Index r = 0; r < rows; ++r) {
    auto out = yt.row(r);
    out.setZero();
    for (std::uint32_t k = w.row_offsets()[std::size_t(r)]; k < w.row_offsets()[std::size_t(r) + 1];
         ++k)
      out.noalias() += w.values()[k] * xt.row(w.column(k));
  }
  return yt.transpose();
}

inline Matrix windowed_gemm(const prune::WindowedCsrMatrix& w, const Eigen::Ref<const Matrix>& x,
                            const SparseKernelOptions& options = {}) {
  require<ShapeError>(x.cols() == w.cols(), "windowed_gemm: X has ", x.cols(),
                      " columns; expected in_features ", w.cols());
  constexpr Index window = prune::WindowedCsrMatrix::kWindow;
  const Matrix xt = x.transpose();
  Matrix yt(w.rows(), x.rows());
  [[maybe_unused]] const int threads = detail::sparse_threads(options);
  const Index rows = w.rows();
  const Index windows = w.windows_per_row();
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && rows >= 16)
#endif
  for (Index r = 0; r < rows; ++r) {
    auto out = yt.row(r);
    out.setZero();
    std::size_t k = w.row_offsets()[std::size_t(r)];
    for (Index q = 0; q < windows; ++q) {
      for (unsigned i = 0; i < w.counts()[std::size_t(r * windows + q)]; ++i, ++k)
        out.noalias() += w.values()[k] * xt.row(q * window + w.offsets()[k]);
    }
  }
  return yt.transpose();
}

inline Matrix nm_gemm(const prune::NmMatrix& w, const Eigen::Ref<const Matrix>& x,
                      const SparseKernelOptions& options = {}) {
  require<ShapeError>(x.cols() == w.cols(), "nm_gemm: X has ", x.cols(),
                      " columns; expected in_features ", w.cols());
  const Matrix xt = x.transpose();
  Matrix yt(w.rows(), x.rows());
  [[maybe_unused]] const int threads = detail::sparse_threads(options);
  const Index rows = w.rows();
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && rows >= 16)
#endif
  for (Index r = 0; r < rows; ++r) {
    auto out = yt.row(r);
    out.setZero();
    const Index n = w.n();
    const Index m = w.m();
    w.for_each_in_row(
        r, [&](Index k, float v, Index pos) { out.noalias() += v * xt.row((k / n) * m + pos); });
  }
  return yt.transpose();
}

}  // namespace slim::kernels

// Sparse matrix-vector and matrix-matrix products y = W x and Y = X W^T for the CSR and N:M
// storage of slim/prune/sparse_storage.hpp. Each product has a portable scalar reference
// (`*_reference`) and a fast path chosen at compile time: AVX-512F (CSR: 16-wide gathers of x by
// the 16-bit column indices; 2:4: the 2-bit positions decoded in registers and x selected with
// vpermt2ps, 16 values per 32 inputs), AVX2+FMA (8-wide gathers), else the scalar loop. GEMM
// transposes X once and accumulates rows of X^T (vectorized by Eigen). OpenMP splits output rows.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/types.hpp>
#include <slim/prune/sparse_storage.hpp>

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

// Dot product of N:M row r with x, fast path (2:4 vectorized, other N:M scalar).
inline float nm_row_dot(const prune::NmMatrix& w, Index r, const float* x) {
  const float* v = w.row_values(r);
  const std::uint32_t* codes = w.row_codes(r);
  const Index values = w.values_per_row();
  const Index n = w.n();
  const Index m = w.m();
  Index k = 0;
  float s = 0.0f;
#if defined(__AVX512F__)
  if (n == 2 && m == 4) {
    // 16 values cover 8 groups = 32 inputs; their 16 two-bit codes are one word.
    const __m512i shifts =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i base =
        _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
    const __m512i three = _mm512_set1_epi32(3);
    __m512 acc0 = _mm512_setzero_ps();
    __m512 acc1 = _mm512_setzero_ps();
    for (; k + 32 <= values; k += 32) {
      const float* xs = x + 2 * k;
      const __m512i c0 = _mm512_and_si512(
          _mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int>(codes[k / 16])), shifts), three);
      const __m512i c1 = _mm512_and_si512(
          _mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int>(codes[k / 16 + 1])), shifts), three);
      const __m512 x0 = _mm512_permutex2var_ps(_mm512_loadu_ps(xs), _mm512_add_epi32(base, c0),
                                               _mm512_loadu_ps(xs + 16));
      const __m512 x1 = _mm512_permutex2var_ps(_mm512_loadu_ps(xs + 32), _mm512_add_epi32(base, c1),
                                               _mm512_loadu_ps(xs + 48));
      acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(v + k), x0, acc0);
      acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(v + k + 16), x1, acc1);
    }
    s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  }
#endif
  const int per_word = w.codes_per_word();
  const int bits = w.index_bits();
  const std::uint32_t code_mask = (1u << bits) - 1u;
  for (; k < values; ++k) {
    const auto pos = Index((codes[k / per_word] >> (bits * (k % per_word))) & code_mask);
    s += v[k] * x[(k / n) * m + pos];
  }
  return s;
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

inline void nm_gemv_reference(const prune::NmMatrix& w, const float* x, float* y) {
  for (Index r = 0; r < w.rows(); ++r) {
    float s = 0.0f;
    const float* v = w.row_values(r);
    for (Index k = 0; k < w.values_per_row(); ++k)
      s += v[k] * x[(k / w.n()) * w.m() + w.code(r, k)];
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

inline void nm_gemv(const prune::NmMatrix& w, const float* x, float* y,
                    const SparseKernelOptions& options = {}) {
  const Index rows = w.rows();
  [[maybe_unused]] const int threads = detail::sparse_threads(options);
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && rows >= 64)
#endif
  for (Index r = 0; r < rows; ++r) y[r] = detail::nm_row_dot(w, r, x);
}

// Eigen-vector overloads with shape checks: y (out) = W x (in).
inline void csr_gemv(const prune::CsrMatrix& w, const Vector& x, Vector& y,
                     const SparseKernelOptions& options = {}) {
  detail::require_gemv_shapes(w, x.size(), w.rows(), "csr_gemv");
  y.resize(w.rows());
  csr_gemv(w, x.data(), y.data(), options);
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
    const float* v = w.row_values(r);
    for (Index k = 0; k < w.values_per_row(); ++k)
      out.noalias() += v[k] * xt.row((k / w.n()) * w.m() + w.code(r, k));
  }
  return yt.transpose();
}

}  // namespace slim::kernels

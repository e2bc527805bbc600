#include <slim/kernels/sparse.hpp>
#include <slim/prune.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <variant>
#include <vector>

namespace {

using slim::Index;
using slim::Matrix;
using slim::MatrixD;
using slim::Vector;
using slim::kernels::SparseKernelOptions;
using slim::prune::CsrMatrix;
using slim::prune::Mask;
using slim::prune::NmMatrix;
using slim::prune::Pattern;
using slim::prune::UnstructuredFormat;
using slim::prune::WindowedCsrMatrix;

// |y - expected| within float accumulation error, relative to sum |w_ij x_j| of each output.
void expect_close_to_dense(const Matrix& y, const Matrix& x, const Matrix& w_masked,
                           const char* what) {
  const MatrixD expected = x.cast<double>() * w_masked.cast<double>().transpose();
  const MatrixD bound =
      x.cast<double>().cwiseAbs() * w_masked.cast<double>().cwiseAbs().transpose();
  ASSERT_EQ(y.rows(), expected.rows());
  ASSERT_EQ(y.cols(), expected.cols());
  for (Index t = 0; t < y.rows(); ++t) {
    for (Index r = 0; r < y.cols(); ++r) {
      EXPECT_NEAR(y(t, r), expected(t, r), 1e-5 * bound(t, r) + 1e-30)
          << what << " " << t << "," << r;
    }
  }
}

TEST(CsrMatrix, RoundTripsAndCountsTheBytesItStores) {
  const Matrix w = slim::random::gaussian(37, 100, 40);
  const Mask mask = slim::prune::magnitude_mask(w, {.pattern = Pattern::unstructured(0.8)});
  const CsrMatrix csr = CsrMatrix::from_mask(w, mask);
  EXPECT_EQ(csr.to_dense(), mask.apply(w));
  EXPECT_TRUE(csr.narrow_indices());
  const std::size_t nnz = std::size_t(mask.kept_count());
  EXPECT_EQ(std::size_t(csr.nonzeros()), nnz);
  EXPECT_EQ(csr.bytes(), nnz * 4 + nnz * 2 + 38 * 4);
  EXPECT_DOUBLE_EQ(csr.bits_per_weight(), 8.0 * double(csr.bytes()) / (37.0 * 100.0));
  EXPECT_EQ(CsrMatrix::from_dense(mask.apply(w)).to_dense(), mask.apply(w));

  Matrix wide = Matrix::Zero(2, 70000);
  wide(0, 69999) = 3.0f;
  wide(1, 5) = -1.0f;
  const CsrMatrix wide_csr = CsrMatrix::from_dense(wide);
  EXPECT_FALSE(wide_csr.narrow_indices());
  EXPECT_EQ(wide_csr.bytes(), 2u * 4 + 2u * 4 + 3u * 4);
  EXPECT_EQ(wide_csr.to_dense(), wide);
  Vector x = Vector::Ones(70000);
  x(69999) = 2.0f;
  Vector y;
  slim::kernels::csr_gemv(wide_csr, x, y);
  EXPECT_EQ(y(0), 6.0f);
  EXPECT_EQ(y(1), -1.0f);
}

TEST(WindowedCsrMatrix, RoundTripsAndCountsTheBytesItStores) {
  const Matrix w = slim::random::gaussian(37, 100, 40);
  const Mask mask = slim::prune::magnitude_mask(w, {.pattern = Pattern::unstructured(0.8)});
  const WindowedCsrMatrix windowed = WindowedCsrMatrix::from_mask(w, mask);
  EXPECT_EQ(windowed.to_dense(), mask.apply(w));
  const std::size_t nnz = std::size_t(mask.kept_count());
  EXPECT_EQ(std::size_t(windowed.nonzeros()), nnz);
  EXPECT_EQ(windowed.windows_per_row(), 4);  // 100 inputs: 3 full windows of 32 and one of 4
  // Per entry 4 + 1 bytes, plus 32 padding entries, one count per row and window, row offsets.
  EXPECT_EQ(windowed.bytes(), (nnz + 32) * 5 + 37 * 4 + 38 * 4);
  EXPECT_DOUBLE_EQ(windowed.bits_per_weight(), 8.0 * double(windowed.bytes()) / (37.0 * 100.0));
  EXPECT_EQ(WindowedCsrMatrix::from_dense(mask.apply(w)).to_dense(), mask.apply(w));

  // An explicitly stored zero is an entry; a pruned weight is not, whatever its value.
  Mask one = Mask(2, 40);
  for (Index c = 0; c < 40; ++c) one.set(0, c, false);
  for (Index c = 0; c < 40; ++c) one.set(1, c, c == 3 || c == 39);
  Matrix zeros = Matrix::Ones(2, 40);
  zeros(1, 3) = 0.0f;
  const WindowedCsrMatrix kept_zero = WindowedCsrMatrix::from_mask(zeros, one);
  EXPECT_EQ(kept_zero.nonzeros(), 2);
  EXPECT_EQ(kept_zero.to_dense(), one.apply(zeros));
}

// Rows that exercise every path of the windowed kernels: empty rows, all-kept rows (32 entries per
// window, two 16-wide steps), a single entry at the last column, random densities.
Mask adversarial_mask(Index rows, Index cols, std::uint64_t seed) {
  Mask mask(rows, cols);
  slim::random::Generator rng(seed);
  for (Index r = 0; r < rows; ++r) {
    const double density = r % 5 == 0 ? 0.0 : r % 5 == 1 ? 1.0 : 0.1 * double(r % 10);
    for (Index c = 0; c < cols; ++c) mask.set(r, c, rng.uniform() < density);
  }
  mask.set(0, cols - 1, true);  // row 0: only the last column
  return mask;
}

TEST(SparseKernels, WindowedGemvAndGemmEqualTheReferenceAndTheDenseMaskedProduct) {
  // Widths below one window, not a multiple of 16 or 32, odd and even window counts.
  for (const Index cols : {Index(7), Index(33), Index(64), Index(100), Index(200)}) {
    for (double sparsity : {0.0, 0.5, 0.8, 0.95, -1.0}) {
      const Matrix w = slim::random::student_t(41, cols, 4, 50 + std::uint64_t(cols));
      const Matrix x = slim::random::gaussian(5, cols, 51);
      const Mask mask = sparsity < 0 ? adversarial_mask(41, cols, 52)
                                     : slim::prune::magnitude_mask(
                                           w, {.pattern = Pattern::unstructured(sparsity)});
      const Matrix masked = mask.apply(w);
      const WindowedCsrMatrix windowed = WindowedCsrMatrix::from_mask(w, mask);
      for (int threads : {1, 2}) {
        Matrix y_fast(5, 41);
        Matrix y_ref(5, 41);
        for (Index t = 0; t < 5; ++t) {
          const Vector xt = x.row(t).transpose();
          Vector y;
          slim::kernels::windowed_gemv(windowed, xt, y, {.threads = threads});
          y_fast.row(t) = y.transpose();
          slim::kernels::windowed_gemv_reference(windowed, xt.data(), y_ref.row(t).data());
        }
        expect_close_to_dense(y_fast, x, masked, "windowed_gemv");
        expect_close_to_dense(y_ref, x, masked, "windowed_gemv_reference");
        // The fast path against its scalar reference, on the same float inputs.
        expect_close_to_dense(y_fast - y_ref + x * masked.transpose(), x, masked,
                              "windowed_gemv vs reference");
        expect_close_to_dense(slim::kernels::windowed_gemm(windowed, x, {.threads = threads}), x,
                              masked, "windowed_gemm");
      }
      expect_close_to_dense(slim::kernels::windowed_gemm_reference(windowed, x), x, masked,
                            "windowed_gemm_reference");
      expect_close_to_dense(slim::kernels::windowed_gemm(windowed, x.topRows(3)), x.topRows(3),
                            masked, "windowed_gemm 3 tokens");
    }
  }
}

TEST(SparseKernels, WindowedGemvIgnoresNonFiniteInputsAtPrunedPositions) {
  // Exact sparsity: a pruned weight never touches its input, so Inf/NaN there does not leak.
  const Index cols = 70;
  const Matrix w = slim::random::gaussian(3, cols, 53);
  Mask mask(3, cols);
  for (Index r = 0; r < 3; ++r) {
    for (Index c = 0; c < cols; ++c) mask.set(r, c, c % 3 != 0);
  }
  const WindowedCsrMatrix windowed = WindowedCsrMatrix::from_mask(w, mask);
  Vector x = slim::random::gaussian(cols, 1, 54);
  Vector x_clean = x;
  for (Index c = 0; c < cols; c += 3) {
    x(c) = c % 2 == 0 ? std::numeric_limits<float>::infinity()
                      : std::numeric_limits<float>::quiet_NaN();
    x_clean(c) = 0.0f;
  }
  Vector y;
  slim::kernels::windowed_gemv(windowed, x, y);
  const Vector expected = mask.apply(w) * x_clean;
  for (Index r = 0; r < 3; ++r) {
    ASSERT_TRUE(std::isfinite(y(r))) << r;
    EXPECT_NEAR(y(r), expected(r), 1e-4f) << r;
  }
}

TEST(NmMatrix, RoundTripsWithTwoBitIndicesAndPadsShortGroups) {
  const Matrix w = slim::random::gaussian(9, 96, 41);
  const Mask mask = slim::prune::magnitude_mask(w, {.pattern = Pattern::n_m(2, 4)});
  const NmMatrix nm = NmMatrix::from_mask(w, mask, 2, 4);
  EXPECT_EQ(nm.index_bits(), 2);
  EXPECT_EQ(nm.to_dense(), mask.apply(w));
  // 48 fp32 values and 48 two-bit codes (3 words) per row: 17 bits per weight.
  EXPECT_EQ(nm.bytes(), 9u * (48 * 4 + 3 * 4));
  EXPECT_DOUBLE_EQ(nm.bits_per_weight(), 17.0);

  Mask short_groups = mask;
  short_groups.set(0, 0, false);
  short_groups.set(0, 1, false);
  short_groups.set(0, 2, false);
  short_groups.set(0, 3, false);
  short_groups.set(3, 7, false);
  EXPECT_EQ(NmMatrix::from_mask(w, short_groups, 2, 4).to_dense(), short_groups.apply(w));

  const Mask mask48 = slim::prune::magnitude_mask(w, {.pattern = Pattern::n_m(4, 8)});
  const NmMatrix nm48 = NmMatrix::from_mask(w, mask48, 4, 8);
  EXPECT_EQ(nm48.index_bits(), 3);
  EXPECT_EQ(nm48.to_dense(), mask48.apply(w));
  EXPECT_EQ(nm48.bytes(), 9u * 48 * 4 + 44 * 4);  // 9 x 48 codes at 10 per word: 44 words
}

TEST(NmMatrix, TilesRowsInBlocksOfEightAndValuesInChunksOf32) {
  // 19 rows = two blocks of 8 and one of 3; 200 inputs = 100 values per row = 3 chunks of 32 and
  // one of 4.
  const Matrix w = slim::random::gaussian(19, 200, 42);
  const Mask mask = slim::prune::magnitude_mask(w, {.pattern = Pattern::n_m(2, 4)});
  const NmMatrix nm = NmMatrix::from_mask(w, mask, 2, 4);
  ASSERT_EQ(nm.values_per_row(), 100);
  // Row-major values and 2-bit positions built from the mask directly.
  std::vector<float> values;
  std::vector<std::uint32_t> words(19 * 7, 0u);  // 100 codes per row at 16 per word
  for (Index r = 0; r < 19; ++r) {
    Index k = 0;
    for (Index c = 0; c < 200; ++c) {
      if (!mask.kept(r, c)) continue;
      values.push_back(w(r, c));
      words[std::size_t(r * 7 + k / 16)] |= std::uint32_t(c % 4) << (2 * (k % 16));
      EXPECT_EQ(nm.value(r, k), w(r, c));
      EXPECT_EQ(nm.code(r, k), c % 4);
      ++k;
    }
    ASSERT_EQ(k, 100);
  }
  EXPECT_EQ(nm.row_major_values(), values);
  EXPECT_EQ(nm.row_major_codes(), words);
  // The documented index: b * 8 * 100 + q * 32 * rows_in_block + i * chunk_length + k - 32 q.
  EXPECT_EQ(nm.index_of(9, 33), 800 + 32 * 8 + 32 + 1);
  EXPECT_EQ(nm.index_of(17, 97), 1600 + 3 * 32 * 3 + 4 + 1);
  EXPECT_EQ(nm.values()[nm.index_of(17, 97)], nm.value(17, 97));
  std::vector<int> hits(19 * 100, 0);
  for (Index r = 0; r < 19; ++r)
    for (Index k = 0; k < 100; ++k) ++hits[std::size_t(nm.index_of(r, k))];
  EXPECT_EQ(std::count(hits.begin(), hits.end(), 1), 19 * 100);
  EXPECT_EQ(nm.bytes(), 19u * 100 * 4 + (19 * 100 / 16 + 1) * 4);  // 1900 codes: 119 words
}

TEST(SparseKernels, CsrGemvAndGemmEqualDenseMaskedProduct) {
  for (double sparsity : {0.0, 0.5, 0.8, 0.95}) {
    const Matrix w = slim::random::gaussian(53, 200, 42);
    const Matrix x = slim::random::gaussian(7, 200, 43);
    const Mask mask = slim::prune::magnitude_mask(w, {.pattern = Pattern::unstructured(sparsity)});
    const Matrix masked = mask.apply(w);
    const CsrMatrix csr = CsrMatrix::from_mask(w, mask);
    for (int threads : {1, 2}) {
      Matrix y_fast(7, 53);
      Matrix y_ref(7, 53);
      for (Index t = 0; t < 7; ++t) {
        const Vector xt = x.row(t).transpose();
        Vector y;
        slim::kernels::csr_gemv(csr, xt, y, {.threads = threads});
        y_fast.row(t) = y.transpose();
        slim::kernels::csr_gemv_reference(csr, xt.data(), y_ref.row(t).data());
      }
      expect_close_to_dense(y_fast, x, masked, "csr_gemv");
      expect_close_to_dense(y_ref, x, masked, "csr_gemv_reference");
      expect_close_to_dense(slim::kernels::csr_gemm(csr, x, {.threads = threads}), x, masked,
                            "csr_gemm");
    }
    expect_close_to_dense(slim::kernels::csr_gemm_reference(csr, x), x, masked,
                          "csr_gemm_reference");
  }
}

TEST(SparseKernels, NmGemvAndGemmEqualDenseMaskedProduct) {
  struct Case {
    Index n, m, rows, cols;
  };
  // 2:4 widths that exercise the 64-input vector loop and its scalar tail; row counts that fill
  // the 8-row blocks of the AVX-512 path, leave a remainder, or have no full block.
  for (const Case& c : {Case{2, 4, 33, 256}, Case{2, 4, 33, 100}, Case{2, 4, 7, 192},
                        Case{2, 4, 80, 64}, Case{4, 8, 33, 96}, Case{1, 4, 33, 64}}) {
    const Matrix w = slim::random::student_t(c.rows, c.cols, 4, 44);
    const Matrix x = slim::random::gaussian(5, c.cols, 45);
    const Mask mask = slim::prune::magnitude_mask(w, {.pattern = Pattern::n_m(c.n, c.m)});
    const Matrix masked = mask.apply(w);
    const NmMatrix nm = NmMatrix::from_mask(w, mask, c.n, c.m);
    for (int threads : {1, 2}) {
      Matrix y_fast(5, c.rows);
      Matrix y_ref(5, c.rows);
      for (Index t = 0; t < 5; ++t) {
        const Vector xt = x.row(t).transpose();
        Vector y;
        slim::kernels::nm_gemv(nm, xt, y, {.threads = threads});
        y_fast.row(t) = y.transpose();
        slim::kernels::nm_gemv_reference(nm, xt.data(), y_ref.row(t).data());
      }
      expect_close_to_dense(y_fast, x, masked, "nm_gemv");
      expect_close_to_dense(y_ref, x, masked, "nm_gemv_reference");
      expect_close_to_dense(slim::kernels::nm_gemm(nm, x, {.threads = threads}), x, masked,
                            "nm_gemm");
    }
    expect_close_to_dense(slim::kernels::nm_gemm_reference(nm, x), x, masked, "nm_gemm_reference");
  }
}

TEST(SparseLinear, ForwardEqualsTheDenseLayerOfTheMaskedWeights) {
  const Matrix w = slim::random::gaussian(24, 64, 47);
  const Matrix x = slim::random::correlated_activations(9, 64, 48);
  const Mask unstructured = slim::prune::magnitude_mask(w, {.pattern = Pattern::unstructured(0.7)});
  const Mask two_four = slim::prune::magnitude_mask(w, {.pattern = Pattern::n_m(2, 4)});
  const slim::prune::SparseLinear csr = slim::prune::SparseLinear::unstructured(w, unstructured);
  const slim::prune::SparseLinear nm = slim::prune::SparseLinear::n_m(w, two_four, 2, 4);
  EXPECT_EQ(csr.in_features(), 64);
  EXPECT_EQ(csr.out_features(), 24);
  EXPECT_EQ(csr.bytes(), CsrMatrix::from_mask(w, unstructured).bytes());
  EXPECT_EQ(nm.bytes(), NmMatrix::from_mask(w, two_four, 2, 4).bytes());
  EXPECT_LT(nm.bytes(), slim::DenseLinear(w).bytes());
  EXPECT_EQ(nm.describe(), "sparse 2:4 fp32");
  expect_close_to_dense(csr(x), x, unstructured.apply(w), "SparseLinear csr");
  expect_close_to_dense(csr(x.topRows(1)), x.topRows(1), unstructured.apply(w), "csr 1 token");
  expect_close_to_dense(nm(x), x, two_four.apply(w), "SparseLinear 2:4");
  const slim::prune::SparseLinear windowed =
      slim::prune::SparseLinear::unstructured(w, unstructured, UnstructuredFormat::windowed);
  ASSERT_NE(std::get_if<WindowedCsrMatrix>(&windowed.storage()), nullptr);
  EXPECT_EQ(windowed.bytes(), WindowedCsrMatrix::from_mask(w, unstructured).bytes());
  EXPECT_EQ(windowed.describe().rfind("sparse windowed CSR fp32", 0), 0u);
  expect_close_to_dense(windowed(x), x, unstructured.apply(w), "SparseLinear windowed");
  expect_close_to_dense(windowed(x.topRows(1)), x.topRows(1), unstructured.apply(w),
                        "windowed 1 token");
  EXPECT_THROW(windowed(Matrix::Ones(1, 63)), slim::ShapeError);
  // `fastest` keeps CSR's gathers for very sparse masks and takes the windowed format otherwise.
  const Mask very_sparse = slim::prune::magnitude_mask(w, {.pattern = Pattern::unstructured(0.95)});
  EXPECT_NE(std::get_if<slim::prune::CsrMatrix>(&slim::prune::SparseLinear::unstructured(
                                                     w, very_sparse, UnstructuredFormat::fastest)
                                                     .storage()),
            nullptr);
  EXPECT_NE(std::get_if<WindowedCsrMatrix>(&slim::prune::SparseLinear::unstructured(
                                                w, unstructured, UnstructuredFormat::fastest)
                                                .storage()),
            nullptr);
  expect_close_to_dense(nm(x.topRows(1)), x.topRows(1), two_four.apply(w), "2:4 1 token");
  EXPECT_THROW(csr(Matrix::Ones(2, 63)), slim::ShapeError);
  EXPECT_THROW(nm(Matrix::Ones(1, 65)), slim::ShapeError);
}

TEST(SparseStorageBadInput, RejectsMismatchedMasksBrokenPatternsAndWrongShapes) {
  Matrix w = slim::random::gaussian(4, 16, 46);
  EXPECT_THROW(CsrMatrix::from_mask(w, Mask(4, 15)), slim::ShapeError);
  EXPECT_THROW(NmMatrix::from_mask(w, Mask(3, 16), 2, 4), slim::ShapeError);
  EXPECT_THROW(NmMatrix::from_mask(w, Mask(4, 16), 2, 4), slim::ArgumentError);  // 4 of 4 kept
  EXPECT_THROW(NmMatrix::from_dense(w, 3, 2), slim::ArgumentError);
  EXPECT_THROW(NmMatrix::from_dense(w, 0, 4), slim::ArgumentError);
  EXPECT_THROW(NmMatrix::from_dense(w, 2, 5), slim::ArgumentError);  // 5 does not divide 16
  EXPECT_THROW(CsrMatrix::from_dense(Matrix(0, 4)), slim::ShapeError);
  EXPECT_THROW(WindowedCsrMatrix::from_mask(w, Mask(4, 15)), slim::ShapeError);
  EXPECT_THROW(WindowedCsrMatrix::from_dense(Matrix(4, 0)), slim::ShapeError);

  const CsrMatrix csr = CsrMatrix::from_dense(w);
  const NmMatrix nm =
      NmMatrix::from_mask(w, slim::prune::magnitude_mask(w, {.pattern = Pattern::n_m(2, 4)}), 2, 4);
  Vector y;
  EXPECT_THROW(slim::kernels::csr_gemv(csr, Vector::Ones(15), y), slim::ShapeError);
  EXPECT_THROW(slim::kernels::nm_gemv(nm, Vector::Ones(17), y), slim::ShapeError);
  EXPECT_THROW(slim::kernels::csr_gemm(csr, Matrix::Ones(3, 15)), slim::ShapeError);
  EXPECT_THROW(slim::kernels::nm_gemm(nm, Matrix::Ones(3, 15)), slim::ShapeError);
  EXPECT_THROW(slim::kernels::csr_gemm_reference(csr, Matrix::Ones(3, 15)), slim::ShapeError);
  const WindowedCsrMatrix windowed = WindowedCsrMatrix::from_dense(w);
  EXPECT_THROW(slim::kernels::windowed_gemv(windowed, Vector::Ones(17), y), slim::ShapeError);
  EXPECT_THROW(slim::kernels::windowed_gemm(windowed, Matrix::Ones(3, 15)), slim::ShapeError);
  EXPECT_THROW(slim::kernels::windowed_gemm_reference(windowed, Matrix::Ones(3, 15)),
               slim::ShapeError);

  w(2, 2) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(CsrMatrix::from_dense(w), slim::NumericalError);
  EXPECT_THROW(NmMatrix::from_dense(w, 2, 4), slim::NumericalError);
  EXPECT_THROW(WindowedCsrMatrix::from_dense(w), slim::NumericalError);
}

}  // namespace

// Dense + sparse factorization W ~ U V + S (the robust-PCA split that DSFormer-style methods
// use): a rank-r part plus a sparse residual S that keeps the `nonzeros` largest-magnitude
// entries of what the low-rank part misses. Solved by alternating exact projections, starting
// from S = 0: U V = best rank-r approximation of W - S (truncated SVD), then S = the top-k
// entries of W - U V. Each step minimises ||W - UV - S||_F over one block with the other fixed,
// so the error never increases from one iteration to the next.
#pragma once

#include <slim/lowrank/svd.hpp>
#include <slim/prune/mask.hpp>

#include <Eigen/SparseCore>

#include <algorithm>
#include <cmath>
#include <vector>

namespace slim::lowrank {

using SparseMatrix = Eigen::SparseMatrix<float, Eigen::RowMajor, int>;

struct DenseSparse {
  Factors factors;
  SparseMatrix sparse;                // out x in, CSR with 32-bit indices
  std::vector<double> error_history;  // ||W - UV - S||_F / ||W||_F after each iteration

  Matrix reconstruct() const { return factors.reconstruct() + Matrix(sparse); }
  // fp32 factors + CSR values, 32-bit column indices and (out + 1) 32-bit row offsets.
  std::size_t bytes() const {
    const auto nnz = static_cast<std::size_t>(sparse.nonZeros());
    return sizeof(float) * static_cast<std::size_t>(factors.params()) +
           nnz * (sizeof(float) + sizeof(int)) +
           sizeof(int) * static_cast<std::size_t>(sparse.rows() + 1);
  }
};

struct DenseSparseOptions {
  int iterations = 3;  // alternating projections
};

namespace detail {

// The `k` entries of r with the largest magnitude, chosen by prune's top-k selection (the `k`
// lowest of -|r|, ties to the lower row-major index), returned in row-major order.
inline SparseMatrix top_k_entries(const Matrix& r, Index k) {
  const float* v = r.data();
  std::vector<Index> order =
      prune::detail::lowest(r.size(), k, [v](Index i) { return -std::abs(v[i]); });
  std::sort(order.begin(), order.end());
  std::vector<Eigen::Triplet<float, int>> entries;
  entries.reserve(order.size());
  for (Index i : order) {
    entries.emplace_back(static_cast<int>(i / r.cols()), static_cast<int>(i % r.cols()), v[i]);
  }
  SparseMatrix s(r.rows(), r.cols());
  s.setFromTriplets(entries.begin(), entries.end());
  return s;
}

}  // namespace detail

// Rank-`rank` factors plus the `nonzeros` largest residual entries.
template <typename Derived>
DenseSparse dense_sparse(const Eigen::MatrixBase<Derived>& w, Index rank, Index nonzeros,
                         const DenseSparseOptions& options = {}) {
  detail::validate_weight(w, rank, "lowrank::dense_sparse");
  require<ArgumentError>(nonzeros >= 0 && nonzeros <= w.size(), "lowrank::dense_sparse: nonzeros ",
                         nonzeros, " is outside 0..", w.size());
  require<ArgumentError>(options.iterations >= 1, "lowrank::dense_sparse: iterations ",
                         options.iterations, " must be at least 1");
  const Matrix target = w.template cast<float>();
  const double norm = std::max(target.cast<double>().norm(), 1e-300);
  DenseSparse out;
  out.sparse = SparseMatrix(target.rows(), target.cols());
  for (int it = 0; it < options.iterations; ++it) {
    const Matrix dense_part = target - Matrix(out.sparse);
    out.factors = truncated_svd(dense_part, rank).factors;
    const Matrix residual = target - out.factors.reconstruct();
    out.sparse = detail::top_k_entries(residual, nonzeros);
    out.error_history.push_back((residual - Matrix(out.sparse)).cast<double>().norm() / norm);
  }
  return out;
}

}  // namespace slim::lowrank

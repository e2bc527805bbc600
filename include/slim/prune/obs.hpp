// Optimal Brain Surgeon with the block-diagonal empirical Fisher of the Optimal BERT Surgeon
// (Kurtic et al. 2022, "The Optimal BERT Surgeon", eqs. 2-5; Hassibi & Stork 1993). The weight
// is flattened row-major (index r * in + c) and cut into consecutive blocks of `block_size`
// (the last may be shorter), as in SparseML's EmpiricalBlockFisherInverse. Per block,
// F = damp * I + (1/m) sum_k g_k g_k^T over the m gradient rows the caller supplies, and F^-1 is
// built by m Woodbury rank-one updates starting from I / damp. Saliency rho_j = w_j^2 /
// (2 [F^-1]_jj); the lowest are pruned (unstructured, per layer or per row, or N:M); then in each
// block the remaining weights take the optimal update for removing the pruned set Q together,
// dw = -F^-1_{:,Q} (F^-1_{QQ})^-1 w_Q (eq. 5 for a set). Defaults: block 50 and damp 1e-7 (the
// oBERT recipes). Memory: ceil(out*in / block_size) blocks x block_size^2 doubles.
#pragma once

#include <slim/core/checks.hpp>
#include <slim/core/error.hpp>
#include <slim/core/types.hpp>
#include <slim/prune/mask.hpp>

#include <Eigen/Cholesky>

#include <cmath>
#include <vector>

namespace slim::prune {

struct ObsOptions {
  Pattern pattern = Pattern::unstructured(0.5);  // unstructured or N:M
  Scope scope = Scope::per_layer;                // unstructured comparison group
  Index block_size = 50;                         // Fisher block length along the flattened rows
  double damp = 1e-7;                            // lambda in F = lambda I + (1/m) sum g g^T
};

struct ObsResult {
  Matrix weight;  // pruned and updated weights
  Mask mask;
  double loss = 0.0;  // predicted increase 0.5 dw^T F dw, summed over blocks
};

namespace detail {

// The inverse of every Fisher block, by Woodbury rank-one updates. `gradients` is m x (out*in).
template <typename Derived>
std::vector<MatrixD> block_fisher_inverse(const Eigen::MatrixBase<Derived>& gradients,
                                          Index block_size, double damp, const char* fn) {
  const Index d = gradients.cols();
  const Index m = gradients.rows();
  const Index blocks = (d + block_size - 1) / block_size;
  std::vector<MatrixD> inverse(static_cast<std::size_t>(blocks));
  VectorD g;
  VectorD h;
  for (Index b = 0; b < blocks; ++b) {
    const Index begin = b * block_size;
    const Index size = std::min(block_size, d - begin);
    MatrixD& f_inv = inverse[std::size_t(b)];
    f_inv = MatrixD::Identity(size, size) / damp;
    for (Index k = 0; k < m; ++k) {
      g = gradients.row(k).segment(begin, size).transpose().template cast<double>();
      h.noalias() = f_inv * g;
      const double denominator = double(m) + g.dot(h);
      require<NumericalError>(std::isfinite(denominator) && denominator > 0.0, fn,
                              ": Fisher block ", b, " is singular after dampening ", damp,
                              " (Woodbury denominator ", denominator, ")");
      f_inv.noalias() -= (h / denominator) * h.transpose();
    }
    require<NumericalError>(f_inv.allFinite(), fn, ": Fisher block ", b,
                            " is singular after dampening ", damp, "; expected damp > 0");
  }
  return inverse;
}

}  // namespace detail

// Prunes W (out x in) with OBS on the block-diagonal empirical Fisher of `gradients`
// (m x out*in: one flattened per-sample gradient of W per row, row-major like W).
template <typename DW, typename DG>
ObsResult obs_prune(const Eigen::MatrixBase<DW>& w_in, const Eigen::MatrixBase<DG>& gradients,
                    const ObsOptions& options = {}) {
  constexpr const char* fn = "obs_prune";
  require_nonempty(w_in, "obs_prune: W");
  require_finite(w_in, "obs_prune: W");
  require_nonempty(gradients, "obs_prune: gradients");
  require_finite(gradients, "obs_prune: gradients");
  const Index rows = w_in.rows();
  const Index cols = w_in.cols();
  const Index d = rows * cols;
  require<ShapeError>(gradients.cols() == d, fn, ": gradient rows have ", gradients.cols(),
                      " entries; expected out_features * in_features = ", d);
  require<ArgumentError>(
      options.pattern.kind == PatternKind::unstructured || options.pattern.kind == PatternKind::n_m,
      fn, ": pattern must be unstructured or N:M");
  detail::validate_pattern(options.pattern, rows, cols, fn);
  require<ArgumentError>(options.block_size >= 1, fn, ": block_size ", options.block_size,
                         " must be positive");
  require<ArgumentError>(options.damp >= 0.0 && std::isfinite(options.damp), fn, ": damp ",
                         options.damp, " must be finite and non-negative");

  const std::vector<MatrixD> f_inv =
      detail::block_fisher_inverse(gradients, options.block_size, options.damp, fn);
  const Matrix w = w_in.template cast<float>();
  Matrix saliency(rows, cols);
  for (Index i = 0; i < d; ++i) {
    const MatrixD& block = f_inv[std::size_t(i / options.block_size)];
    const Index j = i % options.block_size;
    const double v = w.data()[i];
    saliency.data()[i] = static_cast<float>(v * v / (2.0 * block(j, j)));
  }
  ObsResult result;
  result.mask = select_mask(saliency, options.pattern, options.scope);

  MatrixD flat = w.template cast<double>();  // row-major: data() is the flattened weight
  double* wf = flat.data();
  std::vector<Index> pruned;
  for (std::size_t b = 0; b < f_inv.size(); ++b) {
    const Index begin = Index(b) * options.block_size;
    const MatrixD& fi = f_inv[b];
    const Index size = fi.rows();
    pruned.clear();
    for (Index j = 0; j < size; ++j) {
      const Index i = begin + j;
      if (!result.mask.kept(i / cols, i % cols)) pruned.push_back(j);
    }
    if (pruned.empty()) continue;
    const Index q = Index(pruned.size());
    MatrixD f_qq(q, q);
    MatrixD f_q(size, q);
    VectorD w_q(q);
    for (Index a = 0; a < q; ++a) {
      f_q.col(a) = fi.col(pruned[std::size_t(a)]);
      w_q(a) = wf[begin + pruned[std::size_t(a)]];
      for (Index c = 0; c < q; ++c) f_qq(a, c) = fi(pruned[std::size_t(a)], pruned[std::size_t(c)]);
    }
    const Eigen::LDLT<MatrixD> ldlt(f_qq);
    require<NumericalError>(ldlt.info() == Eigen::Success && ldlt.isPositive(), fn,
                            ": the inverse Fisher restricted to the pruned weights of block ", b,
                            " is singular");
    const VectorD lambda = ldlt.solve(w_q);
    require<NumericalError>(lambda.allFinite(), fn,
                            ": the inverse Fisher restricted to the pruned weights of block ", b,
                            " is singular");
    result.loss += 0.5 * w_q.dot(lambda);  // 0.5 w_Q^T (F^-1_QQ)^-1 w_Q
    const VectorD delta = -f_q * lambda;
    for (Index j = 0; j < size; ++j) wf[begin + j] += delta(j);
    for (Index a = 0; a < q; ++a) wf[begin + pruned[std::size_t(a)]] = 0.0;
  }
  result.weight = flat.cast<float>();
  return result;
}

}  // namespace slim::prune

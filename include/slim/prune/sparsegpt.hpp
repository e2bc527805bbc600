// SparseGPT (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately
// Pruned in One-Shot", Algorithm 1), following the reference `sparsegpt.py` (IST-DASLab):
// columns are swept left to right in blocks of 128; at the start of each block the mask is chosen
// by the OBS score w^2 / [U]_jj^2 (U the upper Cholesky factor of the dampened H^-1, eq. 3-5);
// each column's pruning (and optional quantization) error is spread over the not-yet-processed
// columns of its row by the row-wise OBS update, lazily in BLAS-3 batches between blocks. N:M
// selects the mask of each group of m columns when the sweep reaches it. Defaults: blocksize
// 128, percdamp 0.01, 50% unstructured, mask compared over all rows of the block (reference).
#pragma once

#include <slim/calib/hessian.hpp>
#include <slim/calib/inverse.hpp>
#include <slim/core/checks.hpp>
#include <slim/prune/mask.hpp>
#include <slim/quant/quantized_matrix.hpp>
#include <slim/quant/scheme.hpp>

#include <optional>
#include <vector>

namespace slim::prune {

struct SparseGptOptions {
  Pattern pattern = Pattern::unstructured(0.5);  // unstructured or N:M
  // Comparison group of the unstructured mask inside each block: per_layer = all rows of the
  // block compete (reference sparsegpt.py), per_row = each row of the block keeps the same count.
  Scope scope = Scope::per_layer;
  Index block_size = 128;  // columns per block (reference `blocksize`)
  double percdamp = 0.01;  // dampening, fraction of mean(diag H) (reference `percdamp`)
  // Joint sparsify + quantize: survivors are quantized in the same sweep (per-group parameters
  // fitted when the sweep enters a group, on its current weights with known-pruned ones zeroed).
  std::optional<quant::Scheme> scheme = std::nullopt;
};

struct SparseGptResult {
  Matrix weight;  // pruned, updated (and, with a scheme, dequantized) weights
  Mask mask;
  Vector row_losses;  // per row sum of (w - q)^2 / (2 U_jj^2), the reference's `Losses`
  std::optional<quant::QuantizedMatrix> quantized;  // the packed codes when a scheme was given
  double damp = 0.0;                                // dampening added to diag(H)
};

namespace detail {

inline void validate_sparsegpt(const SparseGptOptions& o, Index rows, Index cols) {
  constexpr const char* fn = "sparsegpt";
  require<ArgumentError>(
      o.pattern.kind == PatternKind::unstructured || o.pattern.kind == PatternKind::n_m, fn,
      ": pattern must be unstructured or N:M; structured patterns have their own functions");
  validate_pattern(o.pattern, rows, cols, fn);
  require<ArgumentError>(o.block_size > 0, fn, ": block_size ", o.block_size, " must be positive");
  if (o.pattern.kind == PatternKind::n_m) {
    require<ArgumentError>(o.block_size % o.pattern.m == 0, fn, ": N:M group length m ",
                           o.pattern.m, " does not divide block_size ", o.block_size);
  }
  if (o.scheme) quant::validate(*o.scheme, cols, fn);
}

}  // namespace detail

// Prunes W (out x in) with the layer Hessian H = (2/n) X^T X (in x in).
template <typename DW, typename DH>
SparseGptResult sparsegpt(const Eigen::MatrixBase<DW>& w_in, const Eigen::MatrixBase<DH>& hessian,
                          const SparseGptOptions& options = {}) {
  require_nonempty(w_in, "sparsegpt: W");
  require_finite(w_in, "sparsegpt: W");
  const Index rows = w_in.rows();
  const Index cols = w_in.cols();
  require<ShapeError>(hessian.rows() == cols && hessian.cols() == cols, "sparsegpt: Hessian is ",
                      hessian.rows(), " x ", hessian.cols(),
                      "; expected in_features x in_features ", cols, " x ", cols);
  detail::validate_sparsegpt(options, rows, cols);
  const Pattern& pattern = options.pattern;
  const bool n_m = pattern.kind == PatternKind::n_m;

  // Dead inputs, dampening, U^T U = (H + lambda I)^-1: the factor GPTQ shares (fp32, as the
  // reference).
  const calib::InverseHessianFactor factor = calib::dampened_inverse_cholesky(
      hessian.template cast<float>(), {.percdamp = options.percdamp}, "sparsegpt: Hessian");
  const Matrix& u = factor.upper;

  SparseGptResult result;
  result.damp = factor.damp;
  Matrix w = w_in.template cast<float>();
  for (Index j = 0; j < cols; ++j) {
    if (factor.dead[static_cast<std::size_t>(j)]) w.col(j).setZero();
  }
  Mask mask(rows, cols);
  VectorD losses = VectorD::Zero(rows);

  // Quantization state: the parameters in force for each row.
  const quant::Scheme scheme = options.scheme.value_or(quant::Scheme{});
  std::optional<quant::QuantizedMatrix> qm;
  std::vector<quant::GroupParams> params(static_cast<std::size_t>(rows));
  Index group_size = cols;
  if (options.scheme) {
    qm.emplace(rows, cols, scheme);
    group_size = quant::effective_group_size(scheme, cols);
    if (scheme.granularity == quant::Granularity::per_tensor) {
      const quant::GroupParams p = quant::fit_group(w.data(), w.size(), scheme);
      qm->set_params(0, 0, p);
      std::fill(params.begin(), params.end(), p);
    } else if (scheme.granularity == quant::Granularity::per_channel) {
      for (Index r = 0; r < rows; ++r) {
        params[std::size_t(r)] = quant::fit_group(w.row(r).data(), cols, scheme);
        qm->set_params(r, 0, params[std::size_t(r)]);
      }
    }
  }

  const Index block = std::min(options.block_size, cols);
  Matrix w1t(block, rows);    // the block, transposed: column i of W1 is row i here
  Matrix err_t(block, rows);  // (w - q) / U_jj per column, transposed
  Vector err(rows);
  std::vector<float> group(static_cast<std::size_t>(group_size));
  std::vector<double> scores;

  for (Index i1 = 0; i1 < cols; i1 += block) {
    const Index count = std::min(block, cols - i1);
    w1t.topRows(count) = w.middleCols(i1, count).transpose();
    const auto u1 = u.block(i1, i1, count, count);

    if (!n_m && pattern.sparsity > 0.0) {
      // OBS scores of the whole block, chosen once at its start (reference: mask1 = tmp <= thresh,
      // here an exact count with cumulative rounding so the layer total is exact).
      scores.resize(static_cast<std::size_t>(rows * count));
      for (Index r = 0; r < rows; ++r) {
        for (Index c = 0; c < count; ++c) {
          const double d = u1(c, c);
          const double v = w1t(c, r);
          scores[std::size_t(r * count + c)] = v * v / (d * d);
        }
      }
      if (options.scope == Scope::per_layer) {
        const Index k = detail::pruned_count(pattern.sparsity, rows * (i1 + count)) -
                        detail::pruned_count(pattern.sparsity, rows * i1);
        for (Index i : detail::lowest(rows * count, k, [&](Index j) { return scores[size_t(j)]; }))
          mask.set(i / count, i1 + i % count, false);
      } else {
        const Index k = detail::pruned_count(pattern.sparsity, i1 + count) -
                        detail::pruned_count(pattern.sparsity, i1);
        for (Index r = 0; r < rows; ++r) {
          const double* s = scores.data() + r * count;
          for (Index c : detail::lowest(count, k, [&](Index j) { return s[j]; }))
            mask.set(r, i1 + c, false);
        }
      }
    }

    for (Index i = 0; i < count; ++i) {
      const Index col = i1 + i;
      const float d = u1(i, i);
      if (n_m && i % pattern.m == 0) {
        for (Index r = 0; r < rows; ++r) {
          auto score = [&](Index j) {
            const double dj = u1(i + j, i + j);
            const double v = w1t(i + j, r);
            return v * v / (dj * dj);
          };
          for (Index j : detail::lowest(pattern.m, pattern.m - pattern.n, score))
            mask.set(r, col + j, false);
        }
      }
      if (qm && scheme.granularity == quant::Granularity::per_group && col % group_size == 0) {
        for (Index r = 0; r < rows; ++r) {
          for (Index c = 0; c < group_size; ++c) {
            const Index cc = col + c;
            const float v = cc < i1 + count ? w1t(cc - i1, r) : w(r, cc);
            group[std::size_t(c)] = mask.kept(r, cc) ? v : 0.0f;
          }
          params[std::size_t(r)] = quant::fit_group(group.data(), group_size, scheme);
          qm->set_params(r, col / group_size, params[std::size_t(r)]);
        }
      }
      for (Index r = 0; r < rows; ++r) {
        const float v = w1t(i, r);
        float q = mask.kept(r, col) ? v : 0.0f;
        if (qm) {
          const quant::GroupParams& p = params[std::size_t(r)];
          const int code = quant::quantize_code(q, p, scheme.bits);
          qm->set_code(r, col, static_cast<std::uint32_t>(code));
          q = quant::dequantize_code(code, p);
        }
        const float e = (v - q) / d;
        losses(r) += 0.5 * double(e) * double(e);
        err(r) = e;
        w1t(i, r) = q;
      }
      const Index rest = count - i - 1;
      if (rest > 0) {
        w1t.middleRows(i + 1, rest).noalias() -= u1.row(i).tail(rest).transpose() * err.transpose();
      }
      err_t.row(i) = err.transpose();
    }

    w.middleCols(i1, count) = w1t.topRows(count).transpose();
    const Index right = cols - i1 - count;
    if (right > 0) {
      w.rightCols(right).noalias() -=
          err_t.topRows(count).transpose() * u.block(i1, i1 + count, count, right);
    }
  }

  result.weight = std::move(w);
  result.mask = std::move(mask);
  result.row_losses = losses.cast<float>();
  result.quantized = std::move(qm);
  return result;
}

// Prunes W with the Hessian accumulated from calibration activations.
template <typename DW>
SparseGptResult sparsegpt(const Eigen::MatrixBase<DW>& w, const calib::Hessian& hessian,
                          const SparseGptOptions& options = {}) {
  require<ShapeError>(hessian.in_features() == w.cols(), "sparsegpt: Hessian has in_features ",
                      hessian.in_features(), "; expected W's in_features ", w.cols());
  return sparsegpt(w, hessian.matrix(), options);
}

}  // namespace slim::prune

// GPTQ (Frantar et al., 2022, Algorithm 1): quantizes W column by column in a fixed order and
// spreads each column's rounding error over the not-yet-quantized columns with the upper Cholesky
// factor U of the dampened inverse Hessian (eq. 3 in Cholesky form), in lazy blocks whose error
// reaches the remaining columns in one matrix product. Defaults follow the reference `fasterquant`
// (IST-DASLab/gptq): block 128, percdamp 0.01, no act-order, no static groups.
//
// Group parameters are fitted (scheme.hpp's fit_group) when the column loop enters a group, on the
// weights as updated by every column quantized so far; with static_groups (and always for
// per-channel and per-tensor schemes) they are fitted on the original weights before the sweep.
// With act_order, columns are processed by descending H_jj; the returned matrix is in the ORIGINAL
// column order. Groups must then be static: the reference's dynamic groups under act_order are
// runs of consecutive *permuted* columns (its g_idx), which a QuantizedMatrix (groups of
// consecutive original columns) cannot represent, so act_order with per-group dynamic params
// throws ArgumentError instead of silently storing something else.
#pragma once

#include <slim/calib/hessian.hpp>
#include <slim/calib/inverse.hpp>
#include <slim/core/checks.hpp>
#include <slim/core/error.hpp>
#include <slim/core/types.hpp>
#include <slim/quant/detail/bitpack.hpp>
#include <slim/quant/quantized_matrix.hpp>
#include <slim/quant/scheme.hpp>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace slim::quant {

struct GptqOptions {
  Scheme scheme{};                  // default int4 g128 asymmetric
  Index block_size = 128;           // lazy-batch width B (reference default)
  calib::DampingOptions damping{};  // percdamp 0.01 of mean diag(H), grown 10x on failure
  bool act_order = false;           // process columns by descending H_jj ("desc_act")
  bool static_groups = false;       // fit group params on the original W before the sweep
  bool return_dequantized = false;  // also return the dequantized weights
};

struct GptqResult {
  QuantizedMatrix quantized;  // original column order
  Matrix dequantized;         // quantized.dequantize(), only with return_dequantized
  // Per original column: sum over rows of (w - q)^2 / (2 U_jj^2), the reference's Losses summed
  // over rows (the increase of the layer loss that column's rounding causes, OBS eq. 2).
  Vector column_loss;
  double loss = 0.0;       // column_loss.sum() in double
  IndexVector order;       // order[k] = original column quantized k-th
  std::vector<bool> dead;  // inputs with H_jj = 0 (their weights were quantized as 0)
  double percdamp = 0.0;   // dampening finally used (grown from the option if H was singular)
};

namespace detail {

inline void validate_gptq(const Eigen::Ref<const Matrix>& w, const Matrix& h,
                          const GptqOptions& o) {
  require_nonempty(w, "gptq: W");
  validate(o.scheme, w.cols(), "gptq");
  require<ShapeError>(h.rows() == h.cols(), "gptq: Hessian is ", h.rows(), " x ", h.cols(),
                      "; expected a square in_features x in_features matrix");
  require<ShapeError>(h.rows() == w.cols(), "gptq: Hessian is ", h.rows(), " x ", h.cols(),
                      " but W has in_features ", w.cols(), "; expected ", w.cols(), " x ",
                      w.cols());
  require<ArgumentError>(o.block_size > 0, "gptq: block_size ", o.block_size, " must be positive");
  calib::validate(o.damping, "gptq");
  require<ArgumentError>(
      !(o.act_order && o.scheme.granularity == Granularity::per_group && !o.static_groups),
      "gptq: act_order with per-group scheme ", o.scheme.name(),
      " needs static_groups = true (groups of permuted columns cannot be stored in original"
      " order)");
  require_finite(w, "gptq: W");
  require_finite(h, "gptq: Hessian");
}

}  // namespace detail

// Quantizes W (out x in) with GPTQ against the layer Hessian H = (2/n) X^T X (in x in, symmetric;
// pass std::move(h) to let GPTQ reuse its storage). Throws ShapeError (H not in x in, empty W),
// ArgumentError (scheme, block size, dampening, act_order without static groups), NumericalError
// (non-finite W or H, H still indefinite after the bounded dampening increases).
inline GptqResult gptq(const Eigen::Ref<const Matrix>& w_in, Matrix hessian,
                       const GptqOptions& options = {}) {
  detail::validate_gptq(w_in, hessian, options);
  const Scheme& scheme = options.scheme;
  const Index rows = w_in.rows();
  const Index cols = w_in.cols();
  const int bits = scheme.bits;

  GptqResult result;
  result.quantized = QuantizedMatrix(rows, cols, scheme);
  QuantizedMatrix& q = result.quantized;
  const Index gs = q.group_size();
  const Index groups = q.groups_per_row();
  const bool dynamic_groups =
      scheme.granularity == Granularity::per_group && !options.static_groups;

  Matrix w = w_in;
  result.dead = calib::repair_dead_inputs(hessian);
  for (Index c = 0; c < cols; ++c) {
    if (result.dead[static_cast<std::size_t>(c)]) w.col(c).setZero();
  }

  // Static parameters: per-tensor, per-channel, or per-group with static_groups (original W).
  std::vector<GroupParams> table;
  if (scheme.granularity == Granularity::per_tensor) {
    table.push_back(fit_group(w.data(), w.size(), scheme));
    q.set_params(0, 0, table[0]);
  } else if (!dynamic_groups) {
    table.resize(static_cast<std::size_t>(rows * groups));
    for (Index r = 0; r < rows; ++r) {
      for (Index g = 0; g < groups; ++g) {
        const GroupParams p = fit_group(w.row(r).data() + g * gs, gs, scheme);
        table[static_cast<std::size_t>(r * groups + g)] = p;
        q.set_params(r, g, p);
      }
    }
  }
  auto static_params = [&](Index r, Index original_col) {
    if (scheme.granularity == Granularity::per_tensor) return table[0];
    return table[static_cast<std::size_t>(r * groups + original_col / gs)];
  };

  result.order = IndexVector::LinSpaced(cols, 0, cols - 1);
  if (options.act_order) {
    std::stable_sort(result.order.data(), result.order.data() + cols,
                     [&](Index a, Index b) { return hessian(a, a) > hessian(b, b); });
    const std::vector<Index> perm(result.order.data(), result.order.data() + cols);
    Matrix permuted = w(Eigen::all, perm);
    w.swap(permuted);
    permuted = hessian(perm, perm);
    hessian.swap(permuted);
  }

  calib::InverseHessianFactor factor =
      calib::dampened_inverse_cholesky(std::move(hessian), options.damping, "gptq");
  result.percdamp = factor.percdamp;
  const Matrix& u = factor.upper;

  std::vector<std::uint8_t> codes(static_cast<std::size_t>(rows * cols));
  VectorD loss = VectorD::Zero(cols);
  if (options.return_dequantized) result.dequantized.resize(rows, cols);
  std::vector<GroupParams> current(static_cast<std::size_t>(rows));
  std::vector<float> segment(static_cast<std::size_t>(gs));

  const Index block = std::min(options.block_size, cols);
  Eigen::MatrixXf w1(rows, block);    // column-major: columns of the block are contiguous
  Eigen::MatrixXf err1(rows, block);  // (w - q) / U_jj of the block's columns
  Matrix beyond;                      // a dynamic group's columns past the block end

  for (Index i1 = 0; i1 < cols; i1 += block) {
    const Index i2 = std::min(i1 + block, cols);
    const Index count = i2 - i1;
    w1.leftCols(count) = w.middleCols(i1, count);
    for (Index i = 0; i < count; ++i) {
      const Index c = i1 + i;  // position in processing order
      const Index original = result.order(c);
      if (dynamic_groups && c % gs == 0) {
        // Fit the group [c, c + gs) on fully updated weights: its columns inside the block are in
        // w1; columns past the block still lack this block's error, applied here to a copy.
        const Index inside = std::min(gs, count - i);
        const Index outside = gs - inside;
        if (outside > 0) {
          beyond = w.middleCols(i2, outside);
          if (i > 0) {
            beyond.noalias() -= err1.leftCols(i) * u.block(i1, i2, i, outside);
          }
        }
        for (Index r = 0; r < rows; ++r) {
          for (Index k = 0; k < inside; ++k) segment[static_cast<std::size_t>(k)] = w1(r, i + k);
          for (Index k = 0; k < outside; ++k) {
            segment[static_cast<std::size_t>(inside + k)] = beyond(r, k);
          }
          current[static_cast<std::size_t>(r)] = fit_group(segment.data(), gs, scheme);
          q.set_params(r, c / gs, current[static_cast<std::size_t>(r)]);
        }
      }
      const float d = u(c, c);
      double column_loss = 0.0;
      for (Index r = 0; r < rows; ++r) {
        const GroupParams p =
            dynamic_groups ? current[static_cast<std::size_t>(r)] : static_params(r, original);
        const float value = w1(r, i);
        const int code = quantize_code(value, p, bits);
        const float dequantized = dequantize_code(code, p);
        codes[static_cast<std::size_t>(r * cols + original)] = static_cast<std::uint8_t>(code);
        if (options.return_dequantized) result.dequantized(r, original) = dequantized;
        const float e = (value - dequantized) / d;
        err1(r, i) = e;
        column_loss += static_cast<double>(e) * static_cast<double>(e);
      }
      loss(original) = column_loss / 2.0;
      const Index rest = count - i - 1;
      if (rest > 0) {
        w1.middleCols(i + 1, rest).noalias() -= err1.col(i) * u.row(c).segment(c + 1, rest);
      }
    }
    if (i2 < cols) {
      w.rightCols(cols - i2).noalias() -= err1.leftCols(count) * u.block(i1, i2, count, cols - i2);
    }
  }

  for (Index r = 0; r < rows; ++r) {
    detail::pack_codes(codes.data() + r * cols, static_cast<std::size_t>(cols), bits,
                       q.row_codes(r));
  }
  result.column_loss = loss.cast<float>();
  result.loss = loss.sum();
  return result;
}

// GPTQ against an accumulated calib::Hessian (ArgumentError if it has seen no calibration rows).
inline GptqResult gptq(const Eigen::Ref<const Matrix>& w, const calib::Hessian& hessian,
                       const GptqOptions& options = {}) {
  return gptq(w, hessian.matrix(), options);
}

}  // namespace slim::quant

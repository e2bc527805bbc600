// AWQ, activation-aware weight quantization (Lin et al., 2023, Sec. 3.2-3.3 and the reference
// llm-awq `auto_scale` / `auto_clip`): per-input-channel scales s = mean|x|^alpha (clamped at 1e-4,
// normalised by sqrt(max s * min s)), alpha searched on the grid {0, 1/20, ..., 19/20} for the
// smallest output error ||X W^T - X (Q(W diag s) diag(1/s))^T|| on the calibration activations;
// then an optional per-group clipping search of W diag(s) (ranges shrunk to (1 - i/20) max|w|,
// i < 10, scored by the group's output error on 512 sampled tokens). Defaults are the reference's.
//
// alpha = 0 gives s = 1, i.e. plain RTN, so the scale search is never worse than RTN on the
// calibration data. The reference's clipping is chosen group by group and ignores the cross terms
// between groups, so it can raise the layer's error; here the clipped weights are kept only if they
// lower the layer's output error on the calibration activations (a guard the reference lacks).
#pragma once

#include <slim/calib/activation_stats.hpp>
#include <slim/core/checks.hpp>
#include <slim/core/error.hpp>
#include <slim/core/types.hpp>
#include <slim/quant/quantized_matrix.hpp>
#include <slim/quant/rtn.hpp>
#include <slim/quant/scheme.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

namespace slim::quant {

struct AwqOptions {
  Scheme scheme{};               // default int4 g128 asymmetric (AWQ's w4 g128 with zero point)
  int grid = 20;                 // alpha in {0, 1/grid, ..., (grid - 1)/grid}
  bool clip_search = true;       // llm-awq's auto_clip after the scale search
  int clip_grid = 20;            // clipping ranges (1 - i/clip_grid) * max|w| ...
  double clip_max_shrink = 0.5;  // ... for i < clip_max_shrink * clip_grid
  Index clip_tokens = 512;       // calibration tokens (evenly strided) the clipping search uses
};

struct AwqResult {
  // s (in_features): fold 1/s into the producer of X (the preceding norm or linear layer); the
  // quantized layer then computes (X diag(1/s)) Q^T.
  Vector scales;
  QuantizedMatrix quantized;      // Q: the quantization of W diag(s), clipped if that helped
  double alpha = 0.0;             // the exponent chosen
  bool clipped = false;           // whether the clipping search result was kept
  double output_error = 0.0;      // ||X W^T - X E^T||_F / ||X W^T||_F, E = effective_weights()
  double rtn_output_error = 0.0;  // the same for plain RTN (alpha = 0, no clipping)

  // Q diag(1/s): the weights the layer effectively applies to the original activations X.
  Matrix effective_weights() const {
    Matrix w = quantized.dequantize();
    w.array().rowwise() /= scales.transpose().array();
    return w;
  }
};

namespace detail {

inline void validate_awq(const Eigen::Ref<const Matrix>& w, const Eigen::Ref<const Matrix>& x,
                         const AwqOptions& o) {
  require_nonempty(w, "awq: W");
  require<ShapeError>(x.rows() > 0, "awq: calibration activations have 0 rows",
                      "; expected at least one token");
  require<ShapeError>(x.cols() == w.cols(), "awq: calibration activations have ", x.cols(),
                      " columns but W has in_features ", w.cols(), "; expected equal");
  validate(o.scheme, w.cols(), "awq");
  require<ArgumentError>(o.grid >= 1, "awq: grid ", o.grid, " must be at least 1");
  if (o.clip_search) {
    require<ArgumentError>(o.clip_grid >= 1, "awq: clip_grid ", o.clip_grid, " must be at least 1");
    require<ArgumentError>(o.clip_max_shrink >= 0.0 && o.clip_max_shrink < 1.0,
                           "awq: clip_max_shrink ", o.clip_max_shrink, " must be in [0, 1)");
    require<ArgumentError>(o.clip_tokens >= 1, "awq: clip_tokens ", o.clip_tokens,
                           " must be at least 1");
  }
  require_finite(w, "awq: W");
  require_finite(x, "awq: calibration activations");
}

// Squared output error ||X (W - E)^T||_F^2 in double, the numerator of metrics::output_error.
inline double squared_output_error(const MatrixD& x, const Eigen::Ref<const Matrix>& w,
                                   const Matrix& effective) {
  const MatrixD diff = w.cast<double>() - effective.cast<double>();
  return (x * diff.transpose()).squaredNorm();
}

// llm-awq auto_clip on W_s = W diag(s) against X_s = X diag(1/s): for each row and group, the
// symmetric range max|w| * (1 - i/grid) whose quantization minimises the group's mean squared
// output error over the sampled tokens. Returns the clipped W_s.
inline Matrix clip_search(const Matrix& w_scaled, const Matrix& x_scaled, const AwqOptions& o) {
  const Scheme& s = o.scheme;
  const Index rows = w_scaled.rows();
  const Index cols = w_scaled.cols();
  const Index gs = effective_group_size(s, cols);
  const Index step = std::max<Index>(1, x_scaled.rows() / o.clip_tokens);
  const Index tokens = (x_scaled.rows() + step - 1) / step;
  MatrixD sample(tokens, cols);
  for (Index t = 0; t < tokens; ++t) sample.row(t) = x_scaled.row(t * step).cast<double>();
  const int candidates = std::max(1, static_cast<int>(o.clip_max_shrink * o.clip_grid));

  Matrix clipped = w_scaled;
  MatrixD diff(rows, gs);
  Eigen::VectorXd best_error(rows);
  Eigen::VectorXf best_max(rows);
  std::vector<float> segment(static_cast<std::size_t>(gs));
  for (Index g = 0; g < cols / gs; ++g) {
    const MatrixD x_group = sample.middleCols(g * gs, gs);
    // Mean squared output error of each row: diag(D G D^T) with G the group's Gram matrix, or
    // rowwise |D X_g^T|^2 when there are fewer tokens than group inputs.
    const bool use_gram = tokens > gs;
    const MatrixD gram =
        use_gram ? MatrixD(x_group.transpose() * x_group / static_cast<double>(tokens)) : MatrixD();
    const Eigen::VectorXf amax = w_scaled.middleCols(g * gs, gs).cwiseAbs().rowwise().maxCoeff();
    best_error.setConstant(std::numeric_limits<double>::infinity());
    best_max = amax;
    for (int i = 0; i < candidates; ++i) {
      const float shrink = 1.0f - static_cast<float>(i) / static_cast<float>(o.clip_grid);
      for (Index r = 0; r < rows; ++r) {
        const float limit = amax(r) * shrink;
        const float* original = w_scaled.row(r).data() + g * gs;
        for (Index k = 0; k < gs; ++k) {
          segment[static_cast<std::size_t>(k)] = std::clamp(original[k], -limit, limit);
        }
        const GroupParams p = fit_group(segment.data(), gs, s);
        for (Index k = 0; k < gs; ++k) {
          const float q =
              dequantize_code(quantize_code(segment[static_cast<std::size_t>(k)], p, s.bits), p);
          diff(r, k) = static_cast<double>(q) - static_cast<double>(original[k]);
        }
      }
      const Eigen::VectorXd error =
          use_gram ? Eigen::VectorXd((diff * gram).cwiseProduct(diff).rowwise().sum())
                   : Eigen::VectorXd((diff * x_group.transpose()).rowwise().squaredNorm() /
                                     static_cast<double>(tokens));
      for (Index r = 0; r < rows; ++r) {
        if (error(r) < best_error(r)) {
          best_error(r) = error(r);
          best_max(r) = amax(r) * shrink;
        }
      }
    }
    for (Index r = 0; r < rows; ++r) {
      clipped.row(r).segment(g * gs, gs) =
          clipped.row(r).segment(g * gs, gs).cwiseMax(-best_max(r)).cwiseMin(best_max(r));
    }
  }
  return clipped;
}

}  // namespace detail

// AWQ-quantizes W (out x in) using calibration activations X (tokens x in) that the layer sees.
// Throws ShapeError (X's width differs from W's in_features, empty W or X), ArgumentError (scheme,
// grid or clipping options), NumericalError (non-finite W or X).
inline AwqResult awq(const Eigen::Ref<const Matrix>& w, const Eigen::Ref<const Matrix>& x,
                     const AwqOptions& options = {}) {
  detail::validate_awq(w, x, options);
  calib::ActivationStats stats(x.cols());
  stats.add(x);
  const Vector mean_abs = stats.mean_abs();
  const MatrixD x_double = x.cast<double>();
  const double reference = (x_double * w.cast<double>().transpose()).squaredNorm();
  auto relative = [&](double squared) {
    if (reference == 0.0) return squared == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
    return std::sqrt(squared / reference);
  };

  AwqResult result;
  double best = std::numeric_limits<double>::infinity();
  Vector scales(w.cols());
  for (int k = 0; k < options.grid; ++k) {
    const double alpha = static_cast<double>(k) / options.grid;
    for (Index j = 0; j < w.cols(); ++j) {
      scales(j) = std::max(std::pow(mean_abs(j), static_cast<float>(alpha)), 1e-4f);
    }
    scales /= std::sqrt(scales.maxCoeff() * scales.minCoeff());
    Matrix scaled = w;
    scaled.array().rowwise() *= scales.transpose().array();
    Matrix effective = fake_quantize(scaled, options.scheme);
    effective.array().rowwise() /= scales.transpose().array();
    const double error = detail::squared_output_error(x_double, w, effective);
    if (k == 0) result.rtn_output_error = relative(error);
    if (error < best) {
      best = error;
      result.alpha = alpha;
      result.scales = scales;
    }
  }

  Matrix scaled = w;
  scaled.array().rowwise() *= result.scales.transpose().array();
  result.quantized = quantize(scaled, options.scheme);
  if (options.clip_search && options.scheme.granularity != Granularity::per_tensor) {
    Matrix x_scaled = x;
    x_scaled.array().rowwise() /= result.scales.transpose().array();
    const Matrix clipped = detail::clip_search(scaled, x_scaled, options);
    QuantizedMatrix candidate = quantize(clipped, options.scheme);
    Matrix effective = candidate.dequantize();
    effective.array().rowwise() /= result.scales.transpose().array();
    const double error = detail::squared_output_error(x_double, w, effective);
    if (error < best) {
      best = error;
      result.quantized = std::move(candidate);
      result.clipped = true;
    }
  }
  result.output_error = relative(best);
  return result;
}

}  // namespace slim::quant

// SmoothQuant (Xiao et al., 2022, eq. 4): per-input-channel smoothing factors
// s_j = max|X_j|^alpha / max|W_j|^(1 - alpha) migrate activation outliers into the weights, so
// that X diag(1/s) and W diag(s) are both easy to quantize to 8 bits while the product is
// unchanged. Default migration strength alpha = 0.5 and the 1e-5 clamps follow the reference
// `smooth_ln_fcs`.
#pragma once

#include <slim/calib/activation_stats.hpp>
#include <slim/core/checks.hpp>
#include <slim/core/error.hpp>
#include <slim/core/types.hpp>

#include <algorithm>
#include <cmath>

namespace slim::quant {

struct SmoothQuantOptions {
  double alpha = 0.5;  // migration strength in [0, 1] (paper default 0.5)
};

struct SmoothQuantResult {
  Matrix weights;  // W diag(s): quantize these (e.g. int8 per channel)
  Vector scales;   // s (in_features): divide the activations by s (fold into the preceding op)
};

// Smooths W (out x in) given the per-input-channel max |x| of its calibration activations.
// Throws ShapeError (activation_max_abs has the wrong length, empty W), ArgumentError (alpha
// outside [0, 1], a negative activation maximum) and NumericalError (non-finite input).
inline SmoothQuantResult smoothquant(const Eigen::Ref<const Matrix>& w,
                                     const Eigen::Ref<const Vector>& activation_max_abs,
                                     const SmoothQuantOptions& options = {}) {
  require_nonempty(w, "smoothquant: W");
  require<ShapeError>(activation_max_abs.size() == w.cols(), "smoothquant: activation_max_abs has ",
                      activation_max_abs.size(), " entries but W has in_features ", w.cols(),
                      "; expected equal");
  require<ArgumentError>(
      std::isfinite(options.alpha) && options.alpha >= 0.0 && options.alpha <= 1.0,
      "smoothquant: alpha ", options.alpha, " must be in [0, 1]");
  require_finite(w, "smoothquant: W");
  require_finite(activation_max_abs, "smoothquant: activation_max_abs");
  for (Index j = 0; j < activation_max_abs.size(); ++j) {
    require<ArgumentError>(activation_max_abs(j) >= 0.0f, "smoothquant: activation_max_abs(", j,
                           ") is ", activation_max_abs(j), "; expected a maximum |x| >= 0");
  }

  SmoothQuantResult result;
  const Eigen::VectorXf weight_max = w.cwiseAbs().colwise().maxCoeff().transpose();
  result.scales.resize(w.cols());
  for (Index j = 0; j < w.cols(); ++j) {
    const double act = activation_max_abs(j);
    const double wmax = std::max(static_cast<double>(weight_max(j)), 1e-5);
    const double s = std::pow(act, options.alpha) / std::pow(wmax, 1.0 - options.alpha);
    result.scales(j) = static_cast<float>(std::max(s, 1e-5));
  }
  result.weights = w;
  result.weights.array().rowwise() *= result.scales.transpose().array();
  return result;
}

// The same, with the per-channel maxima taken from accumulated calibration statistics.
inline SmoothQuantResult smoothquant(const Eigen::Ref<const Matrix>& w,
                                     const calib::ActivationStats& stats,
                                     const SmoothQuantOptions& options = {}) {
  return smoothquant(w, stats.max_abs(), options);
}

}  // namespace slim::quant

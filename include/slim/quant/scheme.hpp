// Uniform integer quantization schemes and the arithmetic of one group, shared by RTN, GPTQ,
// AWQ and the kernels. The formulas follow GPTQ's reference quantizer (Frantar et al., 2022):
//
//   asymmetric, b bits, maxq = 2^b - 1:
//     lo = min(0, min w), hi = max(0, max w)        (zero is always representable)
//     scale = (hi - lo) / maxq, zero = round(-lo / scale) in [0, maxq]
//     q = clamp(round(w / scale) + zero, 0, maxq),   w~ = scale * (q - zero)
//   symmetric, b bits, qmax = 2^(b-1) - 1:
//     scale = max|w| / qmax, zero = 2^(b-1) (implicit, not stored)
//     q = clamp(round(w / scale), -2^(b-1), qmax) + 2^(b-1),  w~ = scale * (q - 2^(b-1))
//
// round() is round-half-to-even (torch.round). Scales are stored in fp16, as GPTQ, AWQ and ggml
// store them, and codes are always computed with the fp16-rounded scale, so that the stored
// matrix dequantizes to exactly the values the quantizer chose. A group that is all zero gets
// the range [-1, 1] (as in the reference) and dequantizes to exact zeros.
//
// Optional clipping search (GPTQ's `mse` option, defaults grid 100, maxshrink 0.8, norm 2.4):
// the range is shrunk by p = 1 - i/grid for i < maxshrink*grid and the p minimising
// sum |w~ - w|^norm over the group is kept; p = 1 (no clipping) is always a candidate.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/half.hpp>
#include <slim/core/types.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

namespace slim::quant {

enum class Granularity {
  per_tensor,   // one scale (and zero) for the whole matrix
  per_channel,  // one per output row
  per_group,    // one per `group_size` consecutive inputs of each row
};

struct Scheme {
  int bits = 4;            // 2..8
  Index group_size = 128;  // inputs per group (per_group only)
  bool symmetric = false;  // symmetric: implicit zero 2^(b-1)
  Granularity granularity = Granularity::per_group;
  bool clip_search = false;      // GPTQ's MSE grid search of the range
  int clip_grid = 100;           // grid points of the search
  double clip_max_shrink = 0.8;  // largest shrink tried is 1 - max_shrink
  double clip_norm = 2.4;        // error exponent the search minimises

  int maxq() const { return (1 << bits) - 1; }

  // "int4 g128 asym", "int8 per-channel sym", ...
  std::string name() const {
    std::string s = "int" + std::to_string(bits) + " ";
    if (granularity == Granularity::per_group) s += "g" + std::to_string(group_size);
    if (granularity == Granularity::per_channel) s += "per-channel";
    if (granularity == Granularity::per_tensor) s += "per-tensor";
    return s + (symmetric ? " sym" : " asym");
  }
};

// Scheme shorthands that read well at call sites.
inline Scheme int8_per_channel() {
  return Scheme{
      .bits = 8, .group_size = 0, .symmetric = true, .granularity = Granularity::per_channel};
}
inline Scheme int4_group(Index group_size, bool symmetric = false) {
  return Scheme{.bits = 4, .group_size = group_size, .symmetric = symmetric};
}

// Throws ArgumentError unless the scheme is valid for matrices with `cols` inputs.
inline void validate(const Scheme& s, Index cols, const char* fn) {
  require<ArgumentError>(s.bits >= 2 && s.bits <= 8, fn, ": bits ", s.bits,
                         " is outside the supported range 2..8");
  if (s.granularity == Granularity::per_group) {
    require<ArgumentError>(s.group_size > 0, fn, ": group_size ", s.group_size,
                           " must be positive");
    require<ArgumentError>(cols % s.group_size == 0, fn, ": group_size ", s.group_size,
                           " does not divide in_features ", cols);
  }
  if (s.clip_search) {
    require<ArgumentError>(s.clip_grid > 0, fn, ": clip_grid ", s.clip_grid, " must be positive");
    require<ArgumentError>(s.clip_max_shrink >= 0.0 && s.clip_max_shrink < 1.0, fn,
                           ": clip_max_shrink ", s.clip_max_shrink, " must be in [0, 1)");
    require<ArgumentError>(s.clip_norm > 0.0, fn, ": clip_norm ", s.clip_norm, " must be positive");
  }
}

// Inputs per group under scheme `s` for a matrix of `cols` inputs (cols for per-channel and
// per-tensor).
inline Index effective_group_size(const Scheme& s, Index cols) {
  return s.granularity == Granularity::per_group ? s.group_size : cols;
}

// The quantization parameters of one group. `scale` is already fp16-exact.
struct GroupParams {
  float scale = 1.0f;
  int zero = 0;
};

inline int quantize_code(float w, GroupParams p, int bits) {
  const int maxq = (1 << bits) - 1;
  if (p.scale == 0.0f) return p.zero;
  const float q = std::nearbyint(w / p.scale) + static_cast<float>(p.zero);
  return static_cast<int>(std::clamp(q, 0.0f, static_cast<float>(maxq)));
}

inline float dequantize_code(int q, GroupParams p) {
  return p.scale * static_cast<float>(q - p.zero);
}

// quantize_code over a contiguous group, written so that the compiler vectorizes it.
inline void quantize_group(const float* w, Index n, GroupParams p, int bits, std::uint8_t* codes) {
  const float maxq = static_cast<float>((1 << bits) - 1);
  const float zero = static_cast<float>(p.zero);
  if (p.scale == 0.0f) {
    for (Index i = 0; i < n; ++i) codes[i] = static_cast<std::uint8_t>(p.zero);
    return;
  }
  const float scale = p.scale;
  for (Index i = 0; i < n; ++i) {
    const float q = std::nearbyint(w[i] / scale) + zero;
    codes[i] = static_cast<std::uint8_t>(static_cast<int>(std::min(std::max(q, 0.0f), maxq)));
  }
}

namespace detail {

// Parameters for the range [lo, hi] (lo <= 0 <= hi), scale rounded to fp16.
inline GroupParams params_for_range(float lo, float hi, const Scheme& s) {
  GroupParams p;
  if (s.symmetric) {
    const int qmax = (1 << (s.bits - 1)) - 1;
    float amax = std::max(-lo, hi);
    if (amax == 0.0f) amax = 1.0f;
    p.scale = round_to_fp16(amax / static_cast<float>(qmax));
    p.zero = 1 << (s.bits - 1);
  } else {
    if (lo == 0.0f && hi == 0.0f) {
      lo = -1.0f;
      hi = 1.0f;
    }
    const int maxq = s.maxq();
    p.scale = round_to_fp16((hi - lo) / static_cast<float>(maxq));
    const float z = p.scale > 0.0f ? std::nearbyint(-lo / p.scale) : 0.0f;
    p.zero = static_cast<int>(std::clamp(z, 0.0f, static_cast<float>(maxq)));
  }
  return p;
}

inline double group_error(const float* w, Index n, GroupParams p, int bits, double norm) {
  double err = 0.0;
  for (Index i = 0; i < n; ++i) {
    const double d = dequantize_code(quantize_code(w[i], p, bits), p) - w[i];
    err += norm == 2.0 ? d * d : std::pow(std::abs(d), norm);
  }
  return err;
}

}  // namespace detail

// Fits the parameters of one group of `n` weights (contiguous) under scheme `s`.
inline GroupParams fit_group(const float* w, Index n, const Scheme& s) {
  const Eigen::Map<const Eigen::ArrayXf> values(w, n);
  const float lo = std::min(0.0f, values.minCoeff());
  const float hi = std::max(0.0f, values.maxCoeff());
  GroupParams best = detail::params_for_range(lo, hi, s);
  if (!s.clip_search) return best;
  double best_err = detail::group_error(w, n, best, s.bits, s.clip_norm);
  const int steps = static_cast<int>(s.clip_max_shrink * s.clip_grid);
  for (int i = 1; i < steps; ++i) {
    const float shrink = 1.0f - static_cast<float>(i) / static_cast<float>(s.clip_grid);
    const GroupParams p = detail::params_for_range(shrink * lo, shrink * hi, s);
    const double err = detail::group_error(w, n, p, s.bits, s.clip_norm);
    if (err < best_err) {
      best_err = err;
      best = p;
    }
  }
  return best;
}

}  // namespace slim::quant

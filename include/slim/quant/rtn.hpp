// Round-to-nearest (RTN) quantization: every group's parameters are fitted to its own weights
// (see scheme.hpp for the exact formulas) and each weight is rounded to the nearest code. The
// baseline every calibration-aware method (GPTQ, AWQ) is compared against.
#pragma once

#include <slim/core/checks.hpp>
#include <slim/quant/quantized_matrix.hpp>
#include <slim/quant/scheme.hpp>

#include <vector>

namespace slim::quant {

// Quantizes W (out x in, row-major) under `scheme`. Throws ArgumentError for an invalid scheme,
// ShapeError for an empty W and NumericalError for non-finite weights.
inline QuantizedMatrix quantize(const Eigen::Ref<const Matrix>& w, const Scheme& scheme) {
  require_nonempty(w, "quantize: W");
  validate(scheme, w.cols(), "quantize");
  require_finite(w, "quantize: W");
  QuantizedMatrix q(w.rows(), w.cols(), scheme);
  const Index gs = q.group_size();
  GroupParams tensor_params;
  if (scheme.granularity == Granularity::per_tensor) {
    const Matrix contiguous = w;  // a Ref may have an outer stride; per-tensor fits all at once
    tensor_params = fit_group(contiguous.data(), contiguous.size(), scheme);
    q.set_params(0, 0, tensor_params);
  }
  std::vector<std::uint8_t> row_codes(static_cast<std::size_t>(w.cols()));
  for (Index r = 0; r < w.rows(); ++r) {
    const float* row = w.row(r).data();
    for (Index g = 0; g < q.groups_per_row(); ++g) {
      const float* group = row + g * gs;
      GroupParams p = tensor_params;
      if (scheme.granularity != Granularity::per_tensor) {
        p = fit_group(group, gs, scheme);
        q.set_params(r, g, p);
      }
      std::uint8_t* out = row_codes.data() + g * gs;
      for (Index i = 0; i < gs; ++i)
        out[i] = static_cast<std::uint8_t>(quantize_code(group[i], p, scheme.bits));
    }
    detail::pack_codes(row_codes.data(), row_codes.size(), scheme.bits, q.row_codes(r));
  }
  return q;
}

// quantize(w, scheme).dequantize(): the weights the quantized layer really computes with.
inline Matrix fake_quantize(const Eigen::Ref<const Matrix>& w, const Scheme& scheme) {
  return quantize(w, scheme).dequantize();
}

}  // namespace slim::quant

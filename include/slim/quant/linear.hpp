// quant::Linear: an inference-ready linear layer over a QuantizedMatrix (4-bit groups of 32, 64,
// 128..., or 8-bit per-channel; symmetric or asymmetric). It repacks the weights once into the
// kernels' layout (kernels/packed_weights.hpp) and computes Y = X W^T either with dynamic
// per-token int8 activations and integer dot products (kernels/int8_matmul.hpp; W8A8 when the
// weights are 8-bit, as in SmoothQuant, whose smoothing is folded into W and X upstream) or
// with fp32 activations and on-the-fly dequantization (kernels/dequant_matmul.hpp).
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/linear.hpp>
#include <slim/kernels/dequant_matmul.hpp>
#include <slim/kernels/int8_matmul.hpp>
#include <slim/kernels/packed_weights.hpp>
#include <slim/quant/quantized_matrix.hpp>

#include <string>

namespace slim::quant {

enum class ActivationPath {
  int8,  // dynamic per-token absmax int8, integer dot products (llama.cpp's Q8 activations)
  fp32,  // activations as given, weights dequantized on the fly
};

struct LinearOptions {
  ActivationPath activations = ActivationPath::int8;
  int threads = 1;  // OpenMP threads; results are identical for any count
};

class Linear final : public LinearLayer {
 public:
  // Throws ArgumentError for a format the kernels do not take (bits other than 4 and 8, group
  // sizes other than 32, a multiple of 64 or one group per row), for threads < 1, and on the
  // int8 path for groups whose int32 accumulator could overflow.
  explicit Linear(const QuantizedMatrix& weight, LinearOptions options = {})
      : quantized_(weight), options_(options), scheme_name_(weight.scheme().name()) {
    kernels::require_threads(options.threads, "quant::Linear");
    packed_ = kernels::pack(weight);
    if (options.activations == ActivationPath::int8)
      kernels::require_int32_safe(packed_, "quant::Linear");
  }

  Index in_features() const override { return packed_.cols; }
  Index out_features() const override { return packed_.rows; }

  // Throws ShapeError for a wrong width or an empty x, NumericalError on the int8 path for a
  // non-finite activation (on the fp32 path NaN/Inf propagate as in a dense layer).
  void forward(const Eigen::Ref<const Matrix>& x, Matrix& y) const override {
    check_input(x);
    require<ShapeError>(x.rows() > 0, describe(), ": input has no rows; expected at least one");
    if (options_.activations == ActivationPath::fp32) {
      kernels::matmul_fp32(packed_, x, y, options_.threads);
      return;
    }
    // Per-thread scratch, reused across calls so that a decode step allocates nothing.
    thread_local kernels::QuantizedActivations a;
    kernels::quantize_activations(x, packed_, a, "quant::Linear::forward");
    y.resize(x.rows(), packed_.rows);
    kernels::matmul_int8(packed_, a, y.data(), packed_.rows, options_.threads);
  }

  // The repacked weights: codes, fp16 scales and zero-points, with padding.
  std::size_t bytes() const override { return packed_.bytes(); }

  std::string describe() const override {
    return scheme_name_ + (options_.activations == ActivationPath::int8 ? " x int8 activations"
                                                                        : " x fp32 activations");
  }

  const kernels::PackedWeights& packed() const { return packed_; }
  // The matrix the layer was built from (kept so that it can be saved bit-exactly; packing is
  // deterministic, so Linear(quantized(), options()) runs identically).
  const QuantizedMatrix& quantized() const { return quantized_; }
  const LinearOptions& options() const { return options_; }
  void set_threads(int threads) {
    kernels::require_threads(threads, "quant::Linear::set_threads");
    options_.threads = threads;
  }

 private:
  QuantizedMatrix quantized_;
  kernels::PackedWeights packed_;
  LinearOptions options_;
  std::string scheme_name_;
};

}  // namespace slim::quant

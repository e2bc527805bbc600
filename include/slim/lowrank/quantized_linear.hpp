// Low-rank factors stored quantized: U (out x r) and V (r x in) each become a
// quant::QuantizedMatrix (RTN, or GPTQ against the layer's input Hessian), and
// lowrank::QuantizedLinear computes Y = (X V~^T) U~^T as two quant::Linear products on the
// packed-weight kernels (int8 or fp32 activations, threads).
//
// Which ranks a scheme takes. The rank r is the row width of U, so U's groups run along r:
//   - per-channel and per-tensor schemes: any rank;
//   - per-group schemes with group size g: r must be a multiple of g, and g must be one the
//     kernels read (32 or a multiple of 64, unless one group spans each row of U and of V);
//     quantizable_rank() rounds a rank down to the nearest allowed one.
// V's groups run along in_features, which the scheme's group size must divide as for any
// quant::Linear. Both products take 4- or 8-bit codes only. A rank the scheme does not take
// throws ArgumentError (no silent zero padding of U's rows and V's columns).
//
// GPTQ of factors (gptq_factors) quantizes V with H = (2/n) X^T X, then U with the Hessian of
// its own inputs, the hidden activations X V~^T: H_U = V~ H V~^T (r x r), so U's rounding
// errors are compensated against what the already quantized V really produces.
#pragma once

#include <slim/calib/hessian.hpp>
#include <slim/core/checks.hpp>
#include <slim/core/error.hpp>
#include <slim/core/linear.hpp>
#include <slim/lowrank/factors.hpp>
#include <slim/quant/gptq.hpp>
#include <slim/quant/linear.hpp>
#include <slim/quant/quantized_matrix.hpp>
#include <slim/quant/rtn.hpp>
#include <slim/quant/scheme.hpp>

#include <cstddef>
#include <string>
#include <utility>

namespace slim::lowrank {

// Quantized factors: dequantize() gives the factors the layer really multiplies with.
struct QuantizedFactors {
  quant::QuantizedMatrix U;  // out x r
  quant::QuantizedMatrix V;  // r x in

  Index rank() const { return V.rows(); }
  Index out_features() const { return U.rows(); }
  Index in_features() const { return V.cols(); }
  Factors dequantize() const { return Factors{U.dequantize(), V.dequantize()}; }
  // Codes, fp16 scales and packed zero-points of both factors.
  std::size_t bytes() const { return U.bytes() + V.bytes(); }
};

namespace detail {

// Throws ArgumentError unless quant::Linear can run U (out x rank) and V (rank x in) under `s`.
inline void require_factor_scheme(const quant::Scheme& s, Index rank, Index in, const char* fn) {
  require<ArgumentError>(s.bits == 4 || s.bits == 8, fn, ": scheme ", s.name(), " has bits ",
                         s.bits, "; expected 4 or 8 (the quantized kernels' formats)");
  if (s.granularity == quant::Granularity::per_group) {
    require<ArgumentError>(s.group_size > 0, fn, ": group_size ", s.group_size,
                           " must be positive");
    require<ArgumentError>(rank % s.group_size == 0, fn, ": rank ", rank,
                           " is not a multiple of group_size ", s.group_size,
                           " (U's groups run along the rank); expected a multiple of ",
                           s.group_size, " or a per-channel scheme");
    const bool kernel_group = s.group_size == 32 || s.group_size % 64 == 0;
    require<ArgumentError>(kernel_group || (s.group_size == rank && s.group_size == in), fn,
                           ": group_size ", s.group_size, " is not one the kernels read for rank ",
                           rank, " and in_features ", in,
                           "; expected 32, a multiple of 64, or one group per row of U and V");
  }
  quant::validate(s, rank, fn);
  quant::validate(s, in, fn);
}

inline void require_factor_shapes(const Factors& f, const char* fn) {
  require<ShapeError>(f.U.cols() == f.V.rows() && f.rank() > 0 && f.U.rows() > 0 && f.V.cols() > 0,
                      fn, ": U is ", f.U.rows(), " x ", f.U.cols(), " and V is ", f.V.rows(), " x ",
                      f.V.cols(), "; expected U out x r and V r x in with r > 0");
  require_finite(f.U, (std::string(fn) + ": factor U").c_str());
  require_finite(f.V, (std::string(fn) + ": factor V").c_str());
}

}  // namespace detail

// The largest rank <= `rank` that `scheme` can quantize (see the header comment): `rank` itself
// for per-channel and per-tensor schemes, else rank rounded down to a multiple of the group size.
// Throws ArgumentError if rank < 1 or rank is below one group.
inline Index quantizable_rank(Index rank, const quant::Scheme& scheme) {
  require<ArgumentError>(rank >= 1, "lowrank::quantizable_rank: rank ", rank,
                         " must be at least 1");
  if (scheme.granularity != quant::Granularity::per_group) return rank;
  require<ArgumentError>(scheme.group_size > 0 && rank >= scheme.group_size,
                         "lowrank::quantizable_rank: rank ", rank, " is below group_size ",
                         scheme.group_size, " of scheme ", scheme.name());
  return rank / scheme.group_size * scheme.group_size;
}

// Round-to-nearest quantization of both factors under `scheme`. Throws ArgumentError for a
// scheme or rank the kernels do not take, ShapeError for mismatched factors and NumericalError
// for non-finite ones.
inline QuantizedFactors quantize_factors(const Factors& factors, const quant::Scheme& scheme) {
  detail::require_factor_shapes(factors, "lowrank::quantize_factors");
  detail::require_factor_scheme(scheme, factors.rank(), factors.in_features(),
                                "lowrank::quantize_factors");
  return QuantizedFactors{quant::quantize(factors.U, scheme), quant::quantize(factors.V, scheme)};
}

// GPTQ of both factors (header comment): V against `hessian` (in x in), then U against
// V~ H V~^T. options.scheme applies to both. Throws as quantize_factors and quant::gptq do.
inline QuantizedFactors gptq_factors(const Factors& factors, const calib::Hessian& hessian,
                                     const quant::GptqOptions& options = {}) {
  detail::require_factor_shapes(factors, "lowrank::gptq_factors");
  detail::require_factor_scheme(options.scheme, factors.rank(), factors.in_features(),
                                "lowrank::gptq_factors");
  require<ShapeError>(hessian.in_features() == factors.in_features(),
                      "lowrank::gptq_factors: Hessian is ", hessian.in_features(), " x ",
                      hessian.in_features(), "; expected in_features ", factors.in_features());
  QuantizedFactors out;
  out.V = quant::gptq(factors.V, hessian, options).quantized;
  const Eigen::MatrixXd v = out.V.dequantize().cast<double>();
  const Eigen::MatrixXd h_hidden = v * hessian.matrix_double() * v.transpose();
  out.U = quant::gptq(factors.U, Matrix(h_hidden.cast<float>()), options).quantized;
  return out;
}

// Y = (X V~^T) U~^T with both products on quant::Linear's kernels. With int8 activations, X is
// quantized per token for the first product and the hidden activations X V~^T for the second.
class QuantizedLinear final : public LinearLayer {
 public:
  // Throws ArgumentError for a scheme, rank or thread count the kernels do not take,
  // ShapeError for mismatched factors.
  explicit QuantizedLinear(const QuantizedFactors& factors, quant::LinearOptions options = {})
      : rank_(checked_rank(factors)),
        scheme_name_(scheme_name(factors)),
        v_(factors.V, options),
        u_(factors.U, options) {}

  // RTN-quantizes the fp32 factors under `scheme` (quantize_factors) and packs them.
  QuantizedLinear(const Factors& factors, const quant::Scheme& scheme,
                  quant::LinearOptions options = {})
      : QuantizedLinear(quantize_factors(factors, scheme), options) {}

  Index in_features() const override { return v_.in_features(); }
  Index out_features() const override { return u_.out_features(); }
  Index rank() const { return rank_; }

  // Throws ShapeError for a wrong width or an empty x, NumericalError on the int8 path for a
  // non-finite activation.
  void forward(const Eigen::Ref<const Matrix>& x, Matrix& y) const override {
    check_input(x);
    thread_local Matrix hidden;  // per-thread scratch, reused so a decode step allocates nothing
    v_.forward(x, hidden);
    u_.forward(hidden, y);
  }

  // Both factors' packed codes, fp16 scales and zero-points, as the kernels read them (with the
  // kernels' padding of rows to blocks of 4 and of widths to multiples of 64).
  std::size_t bytes() const override { return v_.bytes() + u_.bytes(); }

  std::string describe() const override {
    return "low-rank r" + std::to_string(rank_) + " " + scheme_name_ + " factors" +
           (options().activations == quant::ActivationPath::int8 ? " x int8 activations"
                                                                 : " x fp32 activations");
  }

  const quant::LinearOptions& options() const { return u_.options(); }
  const quant::Linear& v_layer() const { return v_; }  // X -> X V~^T
  const quant::Linear& u_layer() const { return u_; }  // hidden -> hidden U~^T
  void set_threads(int threads) {
    v_.set_threads(threads);
    u_.set_threads(threads);
  }

 private:
  static std::string scheme_name(const QuantizedFactors& f) {
    const std::string u = f.U.scheme().name();
    const std::string v = f.V.scheme().name();
    return u == v ? u : "U " + u + ", V " + v;
  }
  static Index checked_rank(const QuantizedFactors& f) {
    require<ShapeError>(f.U.cols() == f.V.rows() && f.V.rows() > 0,
                        "lowrank::QuantizedLinear: U is ", f.U.rows(), " x ", f.U.cols(),
                        " and V is ", f.V.rows(), " x ", f.V.cols(),
                        "; expected U out x r and V r x in with r > 0");
    detail::require_factor_scheme(f.U.scheme(), f.rank(), f.U.cols(), "lowrank::QuantizedLinear");
    require<ArgumentError>(f.V.bits() == 4 || f.V.bits() == 8,
                           "lowrank::QuantizedLinear: V's scheme ", f.V.scheme().name(),
                           " has bits ", f.V.bits(), "; expected 4 or 8");
    return f.rank();
  }

  Index rank_;
  std::string scheme_name_;
  quant::Linear v_;
  quant::Linear u_;
};

}  // namespace slim::lowrank

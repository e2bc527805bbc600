// The standard compression methods as pipeline compressors, each returning the inference-ready
// layer that runs on slim's fast kernels (quant::Linear's int8-activation path for 4- and 8-bit
// weights, prune::SparseLinear's CSR / N:M kernels, lowrank::Linear), or — for formats with no
// kernel (3-bit, NF4) — a dense fp32 layer of the dequantized weights, flagged `has_kernel =
// false` so that no one mistakes its latency for a compressed one.
#pragma once

#include <slim/calib/activation_stats.hpp>
#include <slim/calib/hessian.hpp>
#include <slim/lowrank/activation_aware.hpp>
#include <slim/lowrank/linear.hpp>
#include <slim/lowrank/quantized_linear.hpp>
#include <slim/pipeline/sequential.hpp>
#include <slim/prune/magnitude.hpp>
#include <slim/prune/sparse_linear.hpp>
#include <slim/prune/sparsegpt.hpp>
#include <slim/prune/wanda.hpp>
#include <slim/quant/awq.hpp>
#include <slim/quant/gptq.hpp>
#include <slim/quant/linear.hpp>
#include <slim/quant/nf4.hpp>
#include <slim/quant/rtn.hpp>

#include <memory>
#include <string>
#include <vector>

namespace slim::pipeline {

// A named method of the comparison table.
struct Method {
  std::string name;
  std::string family;      // "baseline", "quantization", "pruning", "low-rank"
  bool has_kernel = true;  // false: latency is the dequantized fp32 path, reported as such
  Compressor compress;
};

// Applies 1/s to the input, then the wrapped layer: AWQ's scaled layer when the scale is not
// folded into the preceding normalisation (in a deployed model it would be, for free).
class InputScaledLinear final : public LinearLayer {
 public:
  InputScaledLinear(Vector inverse_scales, std::shared_ptr<const LinearLayer> inner)
      : inverse_scales_(std::move(inverse_scales)), inner_(std::move(inner)) {}
  Index in_features() const override { return inner_->in_features(); }
  Index out_features() const override { return inner_->out_features(); }
  void forward(const Eigen::Ref<const Matrix>& x, Matrix& y) const override {
    check_input(x);
    const Matrix scaled = x * inverse_scales_.asDiagonal();
    inner_->forward(scaled, y);
  }
  std::size_t bytes() const override {
    return inner_->bytes() + sizeof(float) * static_cast<std::size_t>(inverse_scales_.size());
  }
  std::string describe() const override { return inner_->describe() + " (AWQ-scaled input)"; }
  const Vector& inverse_scales() const { return inverse_scales_; }
  const std::shared_ptr<const LinearLayer>& inner() const { return inner_; }

 private:
  Vector inverse_scales_;
  std::shared_ptr<const LinearLayer> inner_;
};

struct MethodOptions {
  int threads = 1;        // kernel threads of the compressed layers
  Index group_size = 32;  // quantization group (divides every width of the reference models)
};

namespace detail {

inline calib::Hessian hessian_of(const Matrix& x) {
  calib::Hessian h(x.cols());
  h.add(x);
  return h;
}

inline CompressedLayer quantized_layer(const quant::QuantizedMatrix& q, const MethodOptions& o) {
  CompressedLayer out;
  out.effective_weight = q.dequantize();
  const bool kernel = q.bits() == 4 || q.bits() == 8;
  if (kernel) {
    out.layer = std::make_shared<quant::Linear>(
        q, quant::LinearOptions{.activations = quant::ActivationPath::int8, .threads = o.threads});
  } else {
    out.layer = std::make_shared<DenseLinear>(out.effective_weight);
    out.stored_bytes = q.bytes();
  }
  const Index group = q.scheme().granularity == quant::Granularity::per_group ? q.group_size() : 0;
  out.form =
      cost::LayerForm::quantized(q.bits(), group, !q.scheme().symmetric,
                                 kernel ? cost::ActivationPath::int8 : cost::ActivationPath::fp32);
  return out;
}

inline CompressedLayer sparse_layer(const Matrix& w, const prune::Mask& mask,
                                    const prune::Pattern& pattern) {
  CompressedLayer out;
  out.effective_weight = mask.apply(w);
  const double kept = static_cast<double>(mask.kept_count()) / static_cast<double>(w.size());
  out.sparsity = 1.0 - kept;
  if (pattern.kind == prune::PatternKind::n_m) {
    out.layer = std::make_shared<prune::SparseLinear>(
        prune::SparseLinear::n_m(out.effective_weight, mask, pattern.n, pattern.m));
    out.form =
        cost::LayerForm::sparse_n_m(static_cast<int>(pattern.n), static_cast<int>(pattern.m));
  } else {
    out.layer = std::make_shared<prune::SparseLinear>(prune::SparseLinear::unstructured(
        out.effective_weight, mask, prune::UnstructuredFormat::fastest));
    out.form = cost::LayerForm::sparse_csr(out.sparsity, w.cols() <= 65536 ? 16 : 32);
  }
  return out;
}

inline CompressedLayer lowrank_layer(lowrank::Factors factors) {
  CompressedLayer out;
  out.effective_weight = factors.reconstruct();
  out.form = cost::LayerForm::low_rank(factors.rank());
  out.layer = std::make_shared<lowrank::Linear>(std::move(factors));
  return out;
}

}  // namespace detail

inline Method rtn_method(int bits, const MethodOptions& o = {}) {
  const quant::Scheme scheme = bits == 8 ? quant::int8_per_channel()
                                         : quant::Scheme{.bits = bits, .group_size = o.group_size};
  return {"RTN " + scheme.name(), "quantization", bits == 4 || bits == 8,
          [scheme, o](const LayerInput& in) {
            return detail::quantized_layer(quant::quantize(in.weight, scheme), o);
          }};
}

inline Method gptq_method(int bits, const MethodOptions& o = {}) {
  const quant::Scheme scheme{.bits = bits, .group_size = o.group_size};
  return {"GPTQ " + scheme.name(), "quantization", bits == 4 || bits == 8,
          [scheme, o](const LayerInput& in) {
            quant::GptqOptions options;
            options.scheme = scheme;
            const auto result = quant::gptq(in.weight, detail::hessian_of(in.activations), options);
            return detail::quantized_layer(result.quantized, o);
          }};
}

inline Method awq_method(int bits, const MethodOptions& o = {}) {
  const quant::Scheme scheme{.bits = bits, .group_size = o.group_size};
  return {"AWQ " + scheme.name(), "quantization", bits == 4 || bits == 8,
          [scheme, o](const LayerInput& in) {
            quant::AwqOptions options;
            options.scheme = scheme;
            const auto result = quant::awq(in.weight, in.activations, options);
            CompressedLayer out = detail::quantized_layer(result.quantized, o);
            out.effective_weight = result.effective_weights();
            out.layer =
                std::make_shared<InputScaledLinear>(result.scales.cwiseInverse(), out.layer);
            return out;
          }};
}

inline Method nf4_method() {
  return {"NF4 b64", "quantization", false, [](const LayerInput& in) {
            const auto q = quant::quantize_nf4(in.weight, quant::Nf4Options{});
            CompressedLayer out;
            out.effective_weight = q.dequantize();
            out.layer = std::make_shared<DenseLinear>(out.effective_weight);
            out.stored_bytes = q.bytes();
            out.form = cost::LayerForm::quantized(4, 64, false, cost::ActivationPath::fp32);
            out.form.scale_bits = 32;
            return out;
          }};
}

inline std::string pattern_name(const prune::Pattern& p) {
  if (p.kind == prune::PatternKind::n_m) return std::to_string(p.n) + ":" + std::to_string(p.m);
  return std::to_string(static_cast<int>(p.sparsity * 100 + 0.5)) + "%";
}

// Magnitude pruning; the comparison group is the whole layer by default (per_row: each output
// row loses the same count, Wanda's comparison group).
inline Method magnitude_method(const prune::Pattern& pattern,
                               prune::Scope scope = prune::Scope::per_layer) {
  const std::string suffix =
      scope == prune::Scope::per_row && pattern.kind != prune::PatternKind::n_m ? " (per row)" : "";
  return {"magnitude " + pattern_name(pattern) + suffix, "pruning", true,
          [pattern, scope](const LayerInput& in) {
            prune::MagnitudeOptions options;
            options.pattern = pattern;
            options.scope = scope;
            return detail::sparse_layer(in.weight, prune::magnitude_mask(in.weight, options),
                                        pattern);
          }};
}

inline Method wanda_method(const prune::Pattern& pattern) {
  return {"Wanda " + pattern_name(pattern), "pruning", true, [pattern](const LayerInput& in) {
            calib::ActivationStats stats(in.weight.cols());
            stats.add(in.activations);
            prune::WandaOptions options;
            options.pattern = pattern;
            const auto result = prune::wanda(in.weight, stats, options);
            return detail::sparse_layer(in.weight, result.mask, pattern);
          }};
}

inline Method sparsegpt_method(const prune::Pattern& pattern) {
  return {"SparseGPT " + pattern_name(pattern), "pruning", true, [pattern](const LayerInput& in) {
            prune::SparseGptOptions options;
            options.pattern = pattern;
            const auto result =
                prune::sparsegpt(in.weight, detail::hessian_of(in.activations).matrix(), options);
            // The kernels store the updated surviving weights under the mask.
            return detail::sparse_layer(result.weight, result.mask, pattern);
          }};
}

// Low-rank at the rank that keeps `budget` of the layer's parameters.
inline Method svd_method(double budget) {
  return {"SVD " + std::to_string(static_cast<int>(budget * 100 + 0.5)) + "% params", "low-rank",
          true, [budget](const LayerInput& in) {
            const Index r = lowrank::rank_for_budget(in.weight.rows(), in.weight.cols(), budget);
            return detail::lowrank_layer(lowrank::truncated_svd(in.weight, r).factors);
          }};
}

inline Method svd_llm_method(double budget) {
  return {"SVD-LLM " + std::to_string(static_cast<int>(budget * 100 + 0.5)) + "% params",
          "low-rank", true, [budget](const LayerInput& in) {
            const Index r = lowrank::rank_for_budget(in.weight.rows(), in.weight.cols(), budget);
            return detail::lowrank_layer(
                lowrank::svd_llm(in.weight, detail::hessian_of(in.activations), r).factors);
          }};
}

// Low-rank then quantize the factors: SVD-LLM (or plain SVD) at the rank that keeps `budget` of
// the parameters, rounded down to a multiple of the group for grouped schemes, then GPTQ of V
// and U (lowrank::gptq_factors), both products on quant::Linear's int8-activation kernels.
inline Method quantized_lowrank_method(double budget, const quant::Scheme& scheme, bool whitened,
                                       const MethodOptions& o = {}) {
  return {std::string(whitened ? "SVD-LLM " : "SVD ") +
              std::to_string(static_cast<int>(budget * 100 + 0.5)) + "% params, " + scheme.name() +
              " factors",
          "low-rank", true, [=](const LayerInput& in) {
            const calib::Hessian h = detail::hessian_of(in.activations);
            const Index r = lowrank::quantizable_rank(
                lowrank::rank_for_budget(in.weight.rows(), in.weight.cols(), budget), scheme);
            const lowrank::Factors f = whitened ? lowrank::svd_llm(in.weight, h, r).factors
                                                : lowrank::truncated_svd(in.weight, r).factors;
            quant::GptqOptions options;
            options.scheme = scheme;
            const lowrank::QuantizedFactors q = lowrank::gptq_factors(f, h, options);
            CompressedLayer out;
            out.effective_weight = q.dequantize().reconstruct();
            out.form = cost::LayerForm::low_rank(r);
            out.form.value_bits = scheme.bits;
            out.layer = std::make_shared<lowrank::QuantizedLinear>(
                q, quant::LinearOptions{.activations = quant::ActivationPath::int8,
                                        .threads = o.threads});
            return out;
          }};
}

// Prune then quantize the survivors in the same sweep (SparseGPT's joint mode). There is no
// kernel for quantized sparse values: the layer runs the fp32 sparse kernel on the dequantized
// survivors (`has_kernel = false`), and its size is that of the packed format — the survivors'
// codes, their positions (16-bit column indices, or 2 bits each for 2:4) and the group scales.
inline Method sparsegpt_quantized_method(const prune::Pattern& pattern,
                                         const quant::Scheme& scheme) {
  return {"SparseGPT " + pattern_name(pattern) + " + " + scheme.name(), "pruning", false,
          [pattern, scheme](const LayerInput& in) {
            prune::SparseGptOptions options;
            options.pattern = pattern;
            options.scheme = scheme;
            const auto result =
                prune::sparsegpt(in.weight, detail::hessian_of(in.activations).matrix(), options);
            CompressedLayer out = detail::sparse_layer(result.weight, result.mask, pattern);
            const auto kept = static_cast<std::size_t>(result.mask.kept_count());
            const std::size_t codes = (kept * static_cast<std::size_t>(scheme.bits) + 7) / 8;
            const std::size_t positions =
                pattern.kind == prune::PatternKind::n_m ? (kept * 2 + 7) / 8 : kept * 2;
            const quant::QuantizedMatrix& q = *result.quantized;
            const std::size_t params =
                q.bytes() - static_cast<std::size_t>(q.rows()) * q.row_stride_bytes();
            out.stored_bytes = codes + positions + params;
            return out;
          }};
}

// The methods `slim compare` runs, in table order before sorting.
inline std::vector<Method> standard_methods(const MethodOptions& o = {}) {
  return {rtn_method(8, o),
          rtn_method(4, o),
          gptq_method(4, o),
          awq_method(4, o),
          nf4_method(),
          rtn_method(3, o),
          gptq_method(3, o),
          magnitude_method(prune::Pattern::unstructured(0.5)),
          wanda_method(prune::Pattern::unstructured(0.5)),
          sparsegpt_method(prune::Pattern::unstructured(0.5)),
          magnitude_method(prune::Pattern::n_m(2, 4)),
          wanda_method(prune::Pattern::n_m(2, 4)),
          sparsegpt_method(prune::Pattern::n_m(2, 4)),
          svd_method(0.5),
          svd_llm_method(0.5)};
}

}  // namespace slim::pipeline

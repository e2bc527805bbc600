// Mixed precision under a bits-per-weight budget, what llama.cpp's quantize offers as a target
// bpw, generalised: every selected layer is quantized with each candidate scheme on its own
// calibration activations, its measured squared relative output error ||X (W - Q)^T||^2 /
// ||X W^T||^2 and stored bytes recorded, and one scheme per layer is chosen to minimise the sum of
// those errors with the total bytes within the budget — a multiple-choice knapsack, solved exactly
// by dynamic programming over bytes (in units of at most 2^16 steps of the budget, rounding every
// layer's bytes up so the allocation can only undershoot the budget). Bytes are those the
// comparison reports: the kernel layer's repacked size (rows padded to the kernel's tile) for 4 and
// 8 bits, the packed format's for widths without a kernel. The chosen schemes are then
// applied with sequential calibration (compress_sequential) by GPTQ or RTN.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/metrics.hpp>
#include <slim/pipeline/methods.hpp>
#include <slim/pipeline/model_methods.hpp>
#include <slim/pipeline/sequential.hpp>

#include <algorithm>
#include <cstddef>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace slim::pipeline {

struct Allocation {
  std::vector<int> choice;  // per layer: index of the chosen candidate
  double error = 0.0;       // sum of the chosen candidates' errors
  std::size_t bytes = 0;    // sum of the chosen candidates' bytes
};

// Minimises sum_l error[l][choice[l]] subject to sum_l bytes[l][choice[l]] <= budget. Exact when
// the budget is at most `units` bytes; otherwise bytes are counted in units of
// ceil(budget / units), rounded up per layer. Ties go to the lower candidate index. Throws
// ArgumentError for empty or ragged inputs, a non-finite error, or a budget below the smallest
// possible total.
inline Allocation allocate_under_budget(const std::vector<std::vector<double>>& error,
                                        const std::vector<std::vector<std::size_t>>& bytes,
                                        std::size_t budget,
                                        std::size_t units = std::size_t{1} << 16) {
  constexpr const char* fn = "pipeline::allocate_under_budget: ";
  require<ArgumentError>(!error.empty() && error.size() == bytes.size(), fn, "error has ",
                         error.size(), " layers and bytes ", bytes.size(),
                         "; expected the same positive count");
  std::size_t smallest = 0;
  for (std::size_t l = 0; l < error.size(); ++l) {
    require<ArgumentError>(!error[l].empty() && error[l].size() == bytes[l].size(), fn, "layer ", l,
                           " has ", error[l].size(), " errors and ", bytes[l].size(),
                           " sizes; expected the same positive count");
    for (double e : error[l]) {
      require<ArgumentError>(std::isfinite(e), fn, "layer ", l, " has a non-finite error ", e);
    }
    smallest += *std::min_element(bytes[l].begin(), bytes[l].end());
  }
  require<ArgumentError>(budget >= smallest, fn, "budget ", budget,
                         " bytes is below the smallest possible allocation, ", smallest, " bytes");
  require<ArgumentError>(units >= 1, fn, "units must be positive");
  const std::size_t unit = std::max<std::size_t>(1, (budget + units - 1) / units);
  const std::size_t capacity = budget / unit;
  const double inf = std::numeric_limits<double>::infinity();
  // best[c]: least error of the layers so far within c units; pick[l][c]: layer l's choice there.
  std::vector<double> best(capacity + 1, 0.0), next(capacity + 1);
  std::vector<std::vector<int>> pick(error.size(), std::vector<int>(capacity + 1, -1));
  for (std::size_t l = 0; l < error.size(); ++l) {
    std::fill(next.begin(), next.end(), inf);
    for (std::size_t c = 0; c <= capacity; ++c) {
      for (std::size_t k = 0; k < error[l].size(); ++k) {
        const std::size_t cost = (bytes[l][k] + unit - 1) / unit;
        if (cost > c || best[c - cost] == inf) continue;
        const double e = best[c - cost] + error[l][k];
        if (e < next[c]) {
          next[c] = e;
          pick[l][c] = static_cast<int>(k);
        }
      }
    }
    best.swap(next);
  }
  require<ArgumentError>(best[capacity] < inf, fn, "budget ", budget, " bytes in units of ", unit,
                         " cannot hold the smallest allocation (", smallest,
                         " bytes) once rounded up; raise the budget or `units`");
  Allocation out;
  out.choice.assign(error.size(), 0);
  std::size_t c = capacity;
  for (std::size_t l = error.size(); l-- > 0;) {
    const int k = pick[l][c];
    out.choice[l] = k;
    out.error += error[l][static_cast<std::size_t>(k)];
    out.bytes += bytes[l][static_cast<std::size_t>(k)];
    c -= (bytes[l][static_cast<std::size_t>(k)] + unit - 1) / unit;
  }
  return out;
}

struct MixedPrecisionOptions {
  double bits_per_weight = 4.25;      // target over the selected layers, everything stored counted
  std::vector<int> bits = {3, 4, 8};  // candidates: 2-7 bits in groups, 8 bits per channel
  Index group_size = 32;
  bool gptq = true;  // GPTQ (else RTN) both to measure the candidates and to apply the choice
  int threads = 1;   // kernel threads of the quantized layers
};

namespace detail {

inline quant::Scheme mixed_scheme(int bits, Index group_size) {
  if (bits == 8) return quant::int8_per_channel();
  return quant::Scheme{.bits = bits, .group_size = group_size};
}

inline quant::QuantizedMatrix mixed_quantize(const Matrix& w, const Matrix& x, int bits,
                                             const MixedPrecisionOptions& o) {
  const quant::Scheme scheme = mixed_scheme(bits, o.group_size);
  if (!o.gptq) return quant::quantize(w, scheme);
  quant::GptqOptions options;
  options.scheme = scheme;
  return quant::gptq(w, hessian_of(x), options).quantized;
}

}  // namespace detail

struct MixedPrecisionPlan {
  std::vector<std::string> layers;
  std::vector<int> bits;  // chosen per layer
  Allocation allocation;
  std::vector<std::vector<double>> error;  // per layer and candidate, as allocated
  std::vector<std::vector<std::size_t>> bytes;
};

// Measures every candidate on every selected layer of `model` (inputs captured in one forward
// pass over `calibration`) and allocates under the budget.
inline MixedPrecisionPlan plan_mixed_precision(const model::Transformer& model,
                                               const model::TokenBatch& calibration,
                                               const MixedPrecisionOptions& o,
                                               const LayerSelector& select = all_but_classifier) {
  constexpr const char* fn = "pipeline::mixed_precision: ";
  require<ArgumentError>(!o.bits.empty(), fn, "no candidate bit widths");
  for (int b : o.bits) {
    require<ArgumentError>(b >= 2 && b <= 8, fn, "candidate bits ", b, " is outside 2..8");
  }
  require<ArgumentError>(o.bits_per_weight > 0.0 && std::isfinite(o.bits_per_weight), fn,
                         "bits_per_weight ", o.bits_per_weight, " must be positive");
  std::map<std::string, Matrix> inputs;
  model::Transformer probe = model;
  probe.set_hook([&](const std::string& name, const Eigen::Ref<const Matrix>& x) {
    if (select(name)) inputs[name] = x;
  });
  probe.forward(calibration);
  probe.clear_hook();
  MixedPrecisionPlan plan;
  double weights = 0.0;
  for (const std::string& name : model.linear_names()) {
    if (!select(name)) continue;
    const Matrix& w = model.linear_weight(name);
    const Matrix& x = inputs.at(name);
    plan.layers.push_back(name);
    weights += static_cast<double>(w.size());
    std::vector<double> errors;
    std::vector<std::size_t> sizes;
    for (int b : o.bits) {
      const quant::QuantizedMatrix q = detail::mixed_quantize(w, x, b, o);
      const double e = metrics::output_error(x, w, q.dequantize());
      errors.push_back(e * e);
      // The bytes the comparison reports: the kernel layer's repacked size where there is one.
      const CompressedLayer layer =
          detail::quantized_layer(q, MethodOptions{.threads = 1, .group_size = o.group_size});
      sizes.push_back(layer.stored_bytes > 0 ? layer.stored_bytes : layer.layer->bytes());
    }
    plan.error.push_back(std::move(errors));
    plan.bytes.push_back(std::move(sizes));
  }
  require<ArgumentError>(!plan.layers.empty(), fn, "the layer selection matches no linear layer");
  const auto budget = static_cast<std::size_t>(o.bits_per_weight * weights / 8.0);
  plan.allocation = allocate_under_budget(plan.error, plan.bytes, budget);
  for (int k : plan.allocation.choice) plan.bits.push_back(o.bits[static_cast<std::size_t>(k)]);
  return plan;
}

// The whole-model method: plan, then compress sequentially with the chosen width per layer.
inline ModelMethod mixed_precision_method(const MixedPrecisionOptions& o = {}) {
  std::string candidates;
  for (int b : o.bits) candidates += (candidates.empty() ? "" : "/") + std::to_string(b);
  char target[32];
  std::snprintf(target, sizeof target, "%.2f", o.bits_per_weight);
  return {
      std::string(o.gptq ? "GPTQ" : "RTN") + " mixed " + candidates + "-bit <= " + target + " b/w",
      "quantization", [o](const model::Transformer& original, const ModelContext& ctx) {
        const MixedPrecisionPlan plan =
            plan_mixed_precision(original, ctx.calibration, o, ctx.select);
        std::map<std::string, int> chosen;
        bool kernel = true;
        for (std::size_t i = 0; i < plan.layers.size(); ++i) {
          chosen[plan.layers[i]] = plan.bits[i];
          kernel = kernel && (plan.bits[i] == 4 || plan.bits[i] == 8);
        }
        model::Transformer m = original;
        const MethodOptions layer_options{.threads = o.threads, .group_size = o.group_size};
        CompressionReport report = compress_sequential(
            m, ctx.calibration,
            [&](const LayerInput& in) {
              return detail::quantized_layer(
                  detail::mixed_quantize(in.weight, in.activations, chosen.at(in.name), o),
                  layer_options);
            },
            [&](const std::string& name) { return chosen.count(name) > 0; });
        return TransformedModel{std::move(m), std::move(report), kernel};
      }};
}

}  // namespace slim::pipeline

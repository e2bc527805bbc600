// The side-by-side comparison `slim compare` prints: every method applied to the same model with
// sequential calibration, judged on accuracy (validation perplexity, KL divergence from the
// original's next-token distribution and top-1 agreement, as llama.cpp's perplexity tool reports
// for quantized models), size, measured decode latency per token through the compressed layers'
// own kernels, the cost model's energy per token for the linear layers (45 nm table), and
// cost::score over those four ratios to the uncompressed model.
#pragma once

#include <slim/cost/energy.hpp>
#include <slim/cost/layer_cost.hpp>
#include <slim/cost/score.hpp>
#include <slim/model/corpus.hpp>
#include <slim/model/evaluate.hpp>
#include <slim/pipeline/methods.hpp>
#include <slim/pipeline/model_methods.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace slim::pipeline {

struct CompareOptions {
  Index calibration_windows = 16;  // training windows of seq_len tokens for calibration
  Index eval_windows = 32;         // validation windows for perplexity, KL and top-1
  Index latency_tokens = 64;       // decode steps timed per repetition
  int latency_repetitions = 3;     // the fastest repetition is reported
  cost::ScoreWeights weights = cost::ScoreWeights::balanced();
  LayerSelector select = all_but_classifier;
  std::function<void(const std::string&)> progress;  // called before each method
  int threads = 0;  // OpenMP threads of whole-model training stages (0 = OpenMP's default)
};

struct MethodResult {
  std::string name;
  std::string family;
  bool has_kernel = true;
  double bits_per_weight = 32.0;  // over the compressed layers, everything stored counted
  double size_mb = 0.0;           // the whole model: compressed layers + everything else fp32
  double sparsity = 0.0;          // over the compressed layers
  double bits_per_byte = 0.0;     // validation cross-entropy (the tokenizer is byte-level)
  double perplexity = 0.0;
  double mean_kl = 0.0;  // KL(original || compressed), nats per token
  double top1_agreement = 1.0;
  double latency_ms = 0.0;  // per decoded token, this CPU, compressed kernels
  double energy_uj = 0.0;   // per token, linear layers, cost model
  double score = 1.0;       // cost::score of the ratios to the uncompressed model
  double compress_seconds = 0.0;
  CompressionReport report;
};

namespace detail {

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

inline double decode_latency_ms(const model::Transformer& m,
                                const std::vector<std::int32_t>& stream, const CompareOptions& o) {
  const Index steps = std::min<Index>(o.latency_tokens, m.config().seq_len);
  double best = std::numeric_limits<double>::infinity();
  for (int rep = 0; rep < std::max(1, o.latency_repetitions); ++rep) {
    model::DecodeState state = m.start();
    const auto start = std::chrono::steady_clock::now();
    for (Index t = 0; t < steps; ++t) {
      const Vector logits = m.decode(state, stream[static_cast<std::size_t>(t) % stream.size()]);
      if (!std::isfinite(logits(0))) return std::numeric_limits<double>::quiet_NaN();
    }
    best = std::min(best, seconds_since(start) * 1e3 / static_cast<double>(steps));
  }
  return best;
}

inline std::size_t parameter_bytes(const model::Transformer& m) {
  std::size_t total = 0;
  m.weights().for_each_parameter([&](const std::string&, const auto& p) {
    total += sizeof(float) * static_cast<std::size_t>(p.size());
  });
  return total;
}

// Linear-layer energy per token: compressed layers by their form, the rest dense fp32.
inline double energy_per_token_uj(const model::Transformer& m, const CompressionReport& report) {
  double pj = 0.0;
  for (const std::string& name : m.linear_names()) {
    const Matrix& w = m.linear_weight(name);
    cost::LayerForm form = cost::LayerForm::dense();
    for (const LayerReport& r : report.layers) {
      if (r.name == name) form = r.form;
    }
    pj += cost::energy(cost::layer_cost({w.rows(), w.cols(), 1}, form)).total_pj;
  }
  return pj * 1e-6;
}

}  // namespace detail

// Runs the uncompressed baseline, every layer-wise method and every whole-model method on copies
// of `original`; returns one row per method, the baseline first, the rest sorted by score (lower
// is better). A whole-model method's bits per weight are those of the selected layers of its
// result (32 x the fraction of their weights it kept, for structured pruning).
inline std::vector<MethodResult> compare(const model::Transformer& original,
                                         const model::Corpus& corpus,
                                         const std::vector<Method>& methods,
                                         const CompareOptions& o = {},
                                         const std::vector<ModelMethod>& model_methods = {}) {
  require<ArgumentError>(o.calibration_windows > 0 && o.eval_windows > 0 && o.latency_tokens > 0,
                         "pipeline::compare: calibration_windows, eval_windows and latency_tokens "
                         "must be positive");
  const Index seq = original.config().seq_len;
  const model::TokenPairs calibration =
      model::consecutive_windows(corpus.train_tokens, seq, o.calibration_windows);
  model::EvalOptions eval;
  eval.max_windows = o.eval_windows;
  const std::size_t dense_bytes = detail::parameter_bytes(original);

  auto measure = [&](const model::Transformer& m, MethodResult& r) {
    const model::Perplexity p = model::evaluate(m, corpus.validation_tokens, eval);
    r.bits_per_byte = p.bits_per_token;
    r.perplexity = p.perplexity;
    if (&m != &original) {
      const model::Agreement a = model::compare(original, m, corpus.validation_tokens, eval);
      r.mean_kl = a.mean_kl;
      r.top1_agreement = a.top1_agreement;
    }
    r.latency_ms = detail::decode_latency_ms(m, corpus.validation_tokens, o);
    r.energy_uj = detail::energy_per_token_uj(m, r.report);
  };

  // Bits per weight and sparsity over the compressed layers; size of the whole model.
  auto summarize = [](MethodResult& r, std::size_t dense_bytes) {
    std::size_t compressed_bytes = 0;
    std::size_t replaced_dense_bytes = 0;
    double zeros = 0.0;
    double weights = 0.0;
    for (const LayerReport& l : r.report.layers) {
      compressed_bytes += l.bytes;
      replaced_dense_bytes += l.dense_bytes;
      const double n = static_cast<double>(l.out_features * l.in_features);
      zeros += l.sparsity * n;
      weights += n;
    }
    r.bits_per_weight = weights > 0 ? 8.0 * static_cast<double>(compressed_bytes) / weights : 32.0;
    r.sparsity = weights > 0 ? zeros / weights : 0.0;
    r.size_mb = static_cast<double>(dense_bytes - replaced_dense_bytes + compressed_bytes) / 1e6;
  };

  std::vector<MethodResult> rows;
  MethodResult base;
  base.name = "fp32 (original)";
  base.family = "baseline";
  base.size_mb = static_cast<double>(dense_bytes) / 1e6;
  measure(original, base);
  rows.push_back(base);
  const cost::Measurement baseline{base.perplexity, base.latency_ms, base.energy_uj, base.size_mb};

  for (const Method& method : methods) {
    if (o.progress) o.progress(method.name);
    model::Transformer m = original;
    MethodResult r;
    r.name = method.name;
    r.family = method.family;
    r.has_kernel = method.has_kernel;
    const auto start = std::chrono::steady_clock::now();
    r.report = compress_sequential(m, calibration.inputs, method.compress, o.select);
    r.compress_seconds = detail::seconds_since(start);
    summarize(r, dense_bytes);
    measure(m, r);
    r.score = cost::score(cost::Measurement{r.perplexity, r.latency_ms, r.energy_uj, r.size_mb},
                          baseline, o.weights);
    rows.push_back(std::move(r));
  }
  for (const ModelMethod& method : model_methods) {
    if (o.progress) o.progress(method.name);
    MethodResult r;
    r.name = method.name;
    r.family = method.family;
    const auto start = std::chrono::steady_clock::now();
    TransformedModel result = method.transform(
        original, ModelContext{calibration.inputs, corpus.train_tokens, o.threads, o.select});
    r.compress_seconds = detail::seconds_since(start);
    r.has_kernel = result.has_kernel;
    const model::Transformer& m = result.model;
    if (result.report) {
      r.report = std::move(*result.report);
      summarize(r, dense_bytes);
    } else {
      double kept = 0.0;
      double weights = 0.0;
      for (const std::string& name : original.linear_names()) {
        if (!o.select(name)) continue;
        const Matrix& before = original.linear_weight(name);
        const Matrix& after = m.linear_weight(name);
        LayerReport l;
        l.name = name;
        l.out_features = after.rows();
        l.in_features = after.cols();
        l.dense_bytes = sizeof(float) * static_cast<std::size_t>(before.size());
        l.bytes = sizeof(float) * static_cast<std::size_t>(after.size());
        r.report.layers.push_back(l);
        kept += static_cast<double>(after.size());
        weights += static_cast<double>(before.size());
      }
      r.bits_per_weight = weights > 0 ? 32.0 * kept / weights : 32.0;
      r.size_mb = static_cast<double>(detail::parameter_bytes(m)) / 1e6;
    }
    measure(m, r);
    r.score = cost::score(cost::Measurement{r.perplexity, r.latency_ms, r.energy_uj, r.size_mb},
                          baseline, o.weights);
    rows.push_back(std::move(r));
  }
  std::stable_sort(rows.begin() + 1, rows.end(),
                   [](const MethodResult& a, const MethodResult& b) { return a.score < b.score; });
  return rows;
}

}  // namespace slim::pipeline

// Judging a model on text: validation cross-entropy (nats per token, bits per token = bits per
// byte for the byte tokenizer, perplexity) and the distribution-level comparison llama.cpp's
// perplexity tool reports for quantized models (--kl-divergence): mean KL(P_reference || P_model)
// of the next-token distributions and the fraction of positions whose top-1 token agrees.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/types.hpp>
#include <slim/model/corpus.hpp>
#include <slim/model/transformer.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace slim::model {

struct EvalOptions {
  Index tokens = 0;             // tokens per window; 0 = the model's seq_len
  Index max_windows = 64;       // windows taken from the start of the stream (0 = all)
  Index windows_per_batch = 8;  // rows per forward call
  int threads = 0;              // OpenMP threads over batches of windows; 0 = OpenMP's default
};

struct Perplexity {
  double nats_per_token = 0.0;
  double bits_per_token = 0.0;  // = bits per byte for the byte tokenizer
  double perplexity = 0.0;
  Index tokens = 0;
};

struct Agreement {
  double mean_kl = 0.0;  // mean over positions of KL(P_reference || P_model), nats
  double max_kl = 0.0;
  double top1_agreement = 0.0;  // fraction of positions with the same argmax
  Index tokens = 0;
};

namespace detail {

inline Index eval_tokens(const Transformer& m, const EvalOptions& o) {
  require<ArgumentError>(o.tokens >= 0 && o.tokens <= m.config().seq_len,
                         "model::evaluate: tokens ", o.tokens, " must be in [0, seq_len ",
                         m.config().seq_len, "]");
  require<ArgumentError>(o.windows_per_batch > 0, "model::evaluate: windows_per_batch ",
                         o.windows_per_batch, " must be positive");
  return o.tokens > 0 ? o.tokens : m.config().seq_len;
}

// Runs f(first_window, rows) for consecutive batches of windows, in parallel over OpenMP threads
// unless a model has a hook (hooks are called in order, from one thread). Each batch runs
// single-threaded inside the parallel loop, so the result does not depend on the thread count.
template <typename F>
void for_each_window_batch(Index windows, const EvalOptions& o, bool serial, F&& f) {
  const Index batches = (windows + o.windows_per_batch - 1) / o.windows_per_batch;
  int threads = 1;
#ifdef _OPENMP
  threads = serial ? 1 : (o.threads > 0 ? o.threads : omp_get_max_threads());
#endif
  (void)threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic) num_threads(threads) if (threads > 1)
#endif
  for (Index i = 0; i < batches; ++i) {
    const Index first = i * o.windows_per_batch;
    f(i, first, std::min(o.windows_per_batch, windows - first));
  }
}

}  // namespace detail

// Mean next-token cross-entropy of `model` (with its current replacements) over the fixed
// evaluation windows of `stream`.
inline Perplexity evaluate(const Transformer& model, const std::vector<std::int32_t>& stream,
                           const EvalOptions& options = {}) {
  const Index tokens = detail::eval_tokens(model, options);
  const TokenPairs all = consecutive_windows(stream, tokens, options.max_windows);
  const Index windows = all.inputs.rows();
  std::vector<double> batch_nats(static_cast<std::size_t>(
      (windows + options.windows_per_batch - 1) / options.windows_per_batch));
  detail::for_each_window_batch(
      windows, options, model.has_hook(), [&](Index i, Index first, Index rows) {
        batch_nats[static_cast<std::size_t>(i)] =
            model.loss(all.inputs.middleRows(first, rows), all.targets.middleRows(first, rows)) *
            static_cast<double>(rows * tokens);
      });
  double nats = 0.0;
  for (const double n : batch_nats) nats += n;
  Perplexity p;
  p.tokens = all.inputs.size();
  p.nats_per_token = nats / static_cast<double>(p.tokens);
  p.bits_per_token = p.nats_per_token / std::log(2.0);
  p.perplexity = std::exp(p.nats_per_token);
  return p;
}

// KL(softmax(reference) || softmax(candidate)) per row and top-1 agreement of two logit matrices
// of the same shape (positions x vocab).
inline Agreement compare_logits(const Matrix& reference, const Matrix& candidate) {
  require<ShapeError>(reference.rows() == candidate.rows() && reference.cols() == candidate.cols(),
                      "model::compare_logits: candidate is ", candidate.rows(), " x ",
                      candidate.cols(), "; expected the reference's ", reference.rows(), " x ",
                      reference.cols());
  require<ShapeError>(reference.rows() > 0 && reference.cols() > 0,
                      "model::compare_logits: logits are empty");
  Agreement a;
  double kl_sum = 0.0;
  Index agree = 0;
  // Scalar double loops (log-softmax of both rows, then sum p (log p - log q)).
  const Index vocab = reference.cols();
  std::vector<double> lr(static_cast<std::size_t>(vocab)), lc(lr.size());
  auto log_softmax = [vocab](const auto& row, std::vector<double>& out) {
    double mx = row(0);
    for (Index v = 1; v < vocab; ++v) mx = std::max(mx, static_cast<double>(row(v)));
    double sum = 0.0;
    for (Index v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row(v)) - mx);
    const double log_z = mx + std::log(sum);
    for (Index v = 0; v < vocab; ++v) out[static_cast<std::size_t>(v)] = row(v) - log_z;
  };
  for (Index n = 0; n < reference.rows(); ++n) {
    log_softmax(reference.row(n), lr);
    log_softmax(candidate.row(n), lc);
    double kl = 0.0;
    for (std::size_t v = 0; v < lr.size(); ++v) kl += std::exp(lr[v]) * (lr[v] - lc[v]);
    kl = std::max(0.0, kl);
    kl_sum += kl;
    a.max_kl = std::max(a.max_kl, kl);
    Index ir = 0, ic = 0;
    reference.row(n).maxCoeff(&ir);
    candidate.row(n).maxCoeff(&ic);
    agree += ir == ic ? 1 : 0;
  }
  a.tokens = reference.rows();
  a.mean_kl = kl_sum / static_cast<double>(a.tokens);
  a.top1_agreement = static_cast<double>(agree) / static_cast<double>(a.tokens);
  return a;
}

// Next-token agreement of `model` (e.g. with compressed layers) with `reference` (the original)
// over the fixed evaluation windows of `stream`. The models may differ in shape (a structurally
// pruned student against its teacher) but must share the vocabulary and seq_len.
inline Agreement compare(const Transformer& reference, const Transformer& model,
                         const std::vector<std::int32_t>& stream, const EvalOptions& options = {}) {
  require<ArgumentError>(reference.config().vocab_size == model.config().vocab_size &&
                             reference.config().seq_len == model.config().seq_len,
                         "model::compare: the models' vocab_size (", reference.config().vocab_size,
                         " vs ", model.config().vocab_size, ") or seq_len (",
                         reference.config().seq_len, " vs ", model.config().seq_len,
                         ") differ; expected equal");
  const Index tokens = detail::eval_tokens(model, options);
  const TokenPairs all = consecutive_windows(stream, tokens, options.max_windows);
  Matrix ref(all.inputs.size(), model.config().vocab_size);
  Matrix cand(all.inputs.size(), model.config().vocab_size);
  detail::for_each_window_batch(all.inputs.rows(), options,
                                reference.has_hook() || model.has_hook(),
                                [&](Index, Index first, Index rows) {
                                  ref.middleRows(first * tokens, rows * tokens) =
                                      reference.forward(all.inputs.middleRows(first, rows));
                                  cand.middleRows(first * tokens, rows * tokens) =
                                      model.forward(all.inputs.middleRows(first, rows));
                                });
  return compare_logits(ref, cand);
}

}  // namespace slim::model

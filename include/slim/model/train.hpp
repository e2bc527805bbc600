// Next-token training of the reference decoder: mean cross-entropy over random windows of a token
// stream, AdamW with decoupled weight decay on matrices only (none on norm gains), global-norm
// gradient clipping and a cosine schedule with linear warmup to min_lr. Defaults follow llama2.c's
// train.py (beta2 0.95, weight decay 0.1, clip 1.0, min_lr = lr / 10), with a higher learning rate
// and shorter warmup suited to the small models trained here.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/random.hpp>
#include <slim/core/types.hpp>
#include <slim/distill/optimizer.hpp>
#include <slim/model/corpus.hpp>
#include <slim/model/transformer.hpp>
#include <slim/model/weights.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace slim::model {

struct TrainProgress {
  Index step = 0;              // steps done
  Index steps = 0;             // steps planned
  double loss = 0.0;           // loss of the last batch (nats per token)
  double smoothed_loss = 0.0;  // exponential moving average of the batch loss
  double learning_rate = 0.0;
  double elapsed_seconds = 0.0;
  double remaining_seconds = 0.0;  // elapsed / step * (steps - step)
};

struct TrainOptions {
  Index steps = 1000;
  Index batch_size = 16;        // sequences per step
  Index tokens = 0;             // tokens per sequence; 0 = config.seq_len
  double learning_rate = 3e-3;  // peak, after warmup
  double min_learning_rate = 3e-4;
  Index warmup_steps = 100;
  double weight_decay = 0.1;  // on matrices (embedding, linear weights), not on norm gains
  double beta1 = 0.9;
  double beta2 = 0.95;
  double clip_norm = 1.0;
  std::uint64_t seed = 1;     // window positions
  int threads = 0;            // OpenMP threads over the batch; 0 = OpenMP's default
  Index progress_every = 10;  // steps between progress calls
  std::function<void(const TrainProgress&)> progress;
};

struct TrainResult {
  Index steps = 0;
  double final_loss = 0.0;  // smoothed training loss at the end (nats per token)
  double seconds = 0.0;
};

namespace detail {

// The optimisation loop train() and distill() share: `batch_loss(batch, grad)` draws the step's
// windows (`batch`), adds the loss gradient into `grad` (zeroed by the loop) and returns the loss;
// `after_step()` runs after each update (distillation re-applies pruning masks there).
template <typename BatchLoss, typename AfterStep>
TrainResult optimize(Transformer& model, const std::vector<std::int32_t>& stream,
                     const TrainOptions& options, const char* fn, const BatchLoss& batch_loss,
                     const AfterStep& after_step) {
  require<ArgumentError>(options.steps > 0, fn, "steps ", options.steps, " must be positive");
  require<ArgumentError>(options.batch_size > 0, fn, "batch_size ", options.batch_size,
                         " must be positive");
  require<ArgumentError>(options.learning_rate > 0, fn, "learning_rate ", options.learning_rate,
                         " must be positive");
  require<ArgumentError>(options.warmup_steps >= 0 && options.warmup_steps <= options.steps, fn,
                         "warmup_steps ", options.warmup_steps, " must be in [0, steps ",
                         options.steps, "]");
  require<ArgumentError>(!model.any_replaced(), fn,
                         "a linear layer of the model is replaced; training needs dense layers");
  const Index tokens = options.tokens > 0 ? options.tokens : model.config().seq_len;
  require<ArgumentError>(tokens <= model.config().seq_len, fn, "tokens ", tokens,
                         " exceeds seq_len ", model.config().seq_len);

  Weights& w = model.weights();
  Weights grad = Weights::zeros(model.config());
  // Matrices are optimized in place; norm gains (Vectors) through 1 x dim copies.
  std::vector<distill::Parameter> matrices;
  std::vector<Vector*> gains, gain_grads;
  auto collect = [&](Matrix& p, Matrix& g) { matrices.push_back({&p, &g}); };
  collect(w.token_embedding, grad.token_embedding);
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    LayerWeights& L = w.layers[l];
    LayerWeights& G = grad.layers[l];
    for (auto [p, g] : {std::pair{&L.wq, &G.wq},
                        {&L.wk, &G.wk},
                        {&L.wv, &G.wv},
                        {&L.wo, &G.wo},
                        {&L.w1, &G.w1},
                        {&L.w2, &G.w2},
                        {&L.w3, &G.w3}}) {
      collect(*p, *g);
    }
    gains.push_back(&L.rms_att);
    gain_grads.push_back(&G.rms_att);
    gains.push_back(&L.rms_ffn);
    gain_grads.push_back(&G.rms_ffn);
  }
  gains.push_back(&w.rms_final);
  gain_grads.push_back(&grad.rms_final);
  if (!model.config().shared_classifier) collect(w.wcls, grad.wcls);
  std::vector<Matrix> gain_values(gains.size()), gain_gradients(gains.size());
  std::vector<distill::Parameter> norms;
  for (std::size_t i = 0; i < gains.size(); ++i) {
    norms.push_back({&gain_values[i], &gain_gradients[i]});
  }
  std::vector<distill::Parameter> all = matrices;
  all.insert(all.end(), norms.begin(), norms.end());

  distill::AdamW decayed({.lr = options.learning_rate,
                          .beta1 = options.beta1,
                          .beta2 = options.beta2,
                          .eps = 1e-8,
                          .weight_decay = options.weight_decay});
  distill::AdamW plain({.lr = options.learning_rate,
                        .beta1 = options.beta1,
                        .beta2 = options.beta2,
                        .eps = 1e-8,
                        .weight_decay = 0.0});
  const distill::CosineSchedule schedule{.base_lr = options.learning_rate,
                                         .total_steps = options.steps,
                                         .warmup_steps = options.warmup_steps,
                                         .min_lr = options.min_learning_rate};
  random::Generator gen(options.seed);
  const auto start = std::chrono::steady_clock::now();
  TrainProgress progress;
  progress.steps = options.steps;
  for (Index step = 0; step < options.steps; ++step) {
    const TokenPairs batch = random_windows(stream, options.batch_size, tokens, gen);
    grad.for_each_parameter([](const std::string&, auto p) { p.setZero(); });
    const double loss = batch_loss(batch, grad);
    for (std::size_t i = 0; i < gains.size(); ++i) {
      gain_values[i] = gains[i]->transpose();
      gain_gradients[i] = gain_grads[i]->transpose();
    }
    if (options.clip_norm > 0) distill::clip_gradient_norm(all, options.clip_norm);
    // Step `step` (0-based) uses the schedule at step + 1 so the first update is not lr 0.
    const double lr = schedule(step + 1);
    decayed.step(matrices, lr);
    plain.step(norms, lr);
    for (std::size_t i = 0; i < gains.size(); ++i) *gains[i] = gain_values[i].transpose();
    after_step();

    progress.step = step + 1;
    progress.loss = loss;
    progress.smoothed_loss = step == 0 ? loss : 0.95 * progress.smoothed_loss + 0.05 * loss;
    progress.learning_rate = lr;
    progress.elapsed_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    progress.remaining_seconds = progress.elapsed_seconds / static_cast<double>(step + 1) *
                                 static_cast<double>(options.steps - step - 1);
    if (options.progress && (progress.step % std::max<Index>(1, options.progress_every) == 0 ||
                             progress.step == options.steps)) {
      options.progress(progress);
    }
  }
  return {options.steps, progress.smoothed_loss, progress.elapsed_seconds};
}

}  // namespace detail

// Trains `model` in place on random windows of `stream`. Deterministic for a given seed, whatever
// the thread count (see Transformer::loss_and_gradient). Throws ArgumentError for non-positive
// steps / batch / learning rate, or when a layer of the model is replaced.
inline TrainResult train(Transformer& model, const std::vector<std::int32_t>& stream,
                         const TrainOptions& options) {
  return detail::optimize(
      model, stream, options, "model::train: ",
      [&](const TokenPairs& batch, Weights& grad) {
        return model.loss_and_gradient(batch.inputs, batch.targets, grad, options.threads);
      },
      [] {});
}

}  // namespace slim::model

// The reference decoder: llama2.c's forward pass (Karpathy, llama2.c run.c `forward`) in Eigen —
// token embedding, RMSNorm (eps 1e-5), rotary attention (base 10000, adjacent pairs) with grouped
// KV heads, SwiGLU MLP, tied or untied classifier — plus its exact backward pass, a KV-cache
// decode step, per-linear-layer hooks and replacement by any slim::LinearLayer.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/linear.hpp>
#include <slim/core/types.hpp>
#include <slim/model/config.hpp>
#include <slim/model/weights.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace slim::model {

// Token ids, one sequence per row (batch x tokens).
using TokenBatch = Eigen::Matrix<std::int32_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Called before a linear layer runs with its name (e.g. "layers.3.attention.wq", "output") and
// its input activations (tokens x in_features; for a batch, the sequences' rows stacked).
using LinearHook =
    std::function<void(const std::string& name, const Eigen::Ref<const Matrix>& input)>;

// Keys and values of the positions seen so far, for token-by-token generation.
struct DecodeState {
  Index position = 0;          // the position the next decode() call fills
  std::vector<Matrix> keys;    // per layer: seq_len x kv_dim (rotated keys)
  std::vector<Matrix> values;  // per layer: seq_len x kv_dim
};

namespace detail {

constexpr float kRmsEps = 1e-5f;

// Activations of one block of `batch` sequences of `tokens` tokens, kept for the backward pass.
struct LayerCache {
  Matrix x_in, xn1, q, k, v, att, x_mid, xn2, h1, h3, g;
  Vector inv1, inv2;
  std::vector<Matrix> probs;  // (sequence, head) -> tokens x tokens attention probabilities
};

struct ForwardCache {
  Index batch = 0, tokens = 0;
  std::vector<LayerCache> layers;
  Matrix x_final, xnf;
  Vector invf;
};

// y = x / rms(x) * w, row by row; inv receives 1 / rms per row.
inline void rmsnorm(const Matrix& x, const Vector& w, Matrix& y, Vector& inv) {
  y.resize(x.rows(), x.cols());
  inv.resize(x.rows());
  for (Index r = 0; r < x.rows(); ++r) {
    const float ss = x.row(r).squaredNorm() / static_cast<float>(x.cols()) + kRmsEps;
    inv(r) = 1.0f / std::sqrt(ss);
    y.row(r) = (x.row(r) * inv(r)).cwiseProduct(w.transpose());
  }
}

// Backward of rmsnorm: accumulates dw, returns dx.
inline Matrix rmsnorm_backward(const Matrix& x, const Vector& inv, const Vector& w,
                               const Matrix& dy, Vector& dw) {
  Matrix dx(x.rows(), x.cols());
  const float n = static_cast<float>(x.cols());
  for (Index r = 0; r < x.rows(); ++r) {
    const float s = inv(r);
    dw += (dy.row(r).cwiseProduct(x.row(r)) * s).transpose();
    const RowVector a = dy.row(r).cwiseProduct(w.transpose());
    const float dot = a.dot(x.row(r));
    dx.row(r) = a * s - x.row(r) * (s * s * s * dot / n);
  }
  return dx;
}

inline float silu(float a) { return a / (1.0f + std::exp(-a)); }

}  // namespace detail

class Transformer {
 public:
  // Shards of a batch whose gradients are summed separately (see loss_and_gradient).
  static constexpr Index kGradientShards = 8;

  explicit Transformer(Weights weights) : w_(std::move(weights)) {
    w_.validate();
    const Config& c = w_.config;
    const Index half = c.head_size() / 2;
    // llama2.c's table: freq = 1 / 10000^(2j / head_size) for the pair j = (i % head_size) / 2.
    rope_cos_.resize(c.seq_len, half);
    rope_sin_.resize(c.seq_len, half);
    for (Index pos = 0; pos < c.seq_len; ++pos) {
      for (Index j = 0; j < half; ++j) {
        const float freq = 1.0f / std::pow(10000.0f, static_cast<float>(2 * j) /
                                                         static_cast<float>(c.head_size()));
        const float val = static_cast<float>(pos) * freq;
        rope_cos_(pos, j) = std::cos(val);
        rope_sin_(pos, j) = std::sin(val);
      }
    }
    for (Index l = 0; l < c.n_layers; ++l) {
      const std::string p = "layers." + std::to_string(l) + ".";
      for (const char* n : {"attention.wq", "attention.wk", "attention.wv", "attention.wo",
                            "feed_forward.w1", "feed_forward.w3", "feed_forward.w2"}) {
        names_.push_back(p + n);
      }
    }
    names_.push_back("output");
    replaced_.resize(names_.size());
  }

  const Config& config() const { return w_.config; }
  const Weights& weights() const { return w_; }
  // Mutable parameters (training updates them in place). Replacements keep their own copies.
  Weights& weights() { return w_; }

  // Names of the linear layers hooks see and replace() accepts, in execution order:
  // "layers.<i>.attention.{wq,wk,wv,wo}", "layers.<i>.feed_forward.{w1,w3,w2}", "output".
  const std::vector<std::string>& linear_names() const { return names_; }

  // The dense weight of a named linear layer (the classifier is token_embedding when tied).
  const Matrix& linear_weight(const std::string& name) const { return dense(index_of(name)); }

  // Routes the named linear layer through `layer` (same in/out features) from now on.
  void replace(const std::string& name, std::shared_ptr<const LinearLayer> layer) {
    const std::size_t i = index_of(name);
    require<ArgumentError>(layer != nullptr, "Transformer::replace: layer for '", name,
                           "' is null");
    const Matrix& w = dense(i);
    require<ShapeError>(layer->in_features() == w.cols() && layer->out_features() == w.rows(),
                        "Transformer::replace: '", name, "' is ", layer->out_features(), " x ",
                        layer->in_features(), " (out x in); expected ", w.rows(), " x ", w.cols());
    replaced_[i] = std::move(layer);
  }
  // Back to the dense weight for one layer / for every layer.
  void restore(const std::string& name) { replaced_[index_of(name)].reset(); }
  void restore_all() {
    for (auto& r : replaced_) r.reset();
  }
  // The replacement of a layer, or nullptr when it runs dense.
  std::shared_ptr<const LinearLayer> replacement(const std::string& name) const {
    return replaced_[index_of(name)];
  }
  bool any_replaced() const {
    return std::any_of(replaced_.begin(), replaced_.end(),
                       [](const auto& r) { return r != nullptr; });
  }

  // The hook runs before every linear layer in forward() and decode(), not in training.
  void set_hook(LinearHook hook) { hook_ = std::move(hook); }
  void clear_hook() { hook_ = nullptr; }
  bool has_hook() const { return static_cast<bool>(hook_); }

  // Causal forward over each row of `tokens` (batch x T, T <= seq_len) independently, positions
  // starting at 0. Returns logits, (batch * T) x vocab_size, row b * T + t for token t of row b.
  Matrix forward(const TokenBatch& tokens) const {
    check_tokens(tokens, "Transformer::forward: tokens");
    detail::ForwardCache cache;
    return run(tokens, cache, true);
  }
  Matrix forward(const std::vector<std::int32_t>& tokens) const {
    return forward(as_batch(tokens, "Transformer::forward"));
  }

  // Empty caches for decode().
  DecodeState start() const {
    DecodeState s;
    for (Index l = 0; l < config().n_layers; ++l) {
      s.keys.push_back(Matrix::Zero(config().seq_len, config().kv_dim()));
      s.values.push_back(Matrix::Zero(config().seq_len, config().kv_dim()));
    }
    return s;
  }

  // One generation step (llama2.c's forward(token, pos)): feeds `token` at state.position,
  // appends its keys/values, advances the position, returns next-token logits (vocab_size).
  Vector decode(DecodeState& state, std::int32_t token) const {
    const Config& c = config();
    require<ArgumentError>(token >= 0 && token < c.vocab_size, "Transformer::decode: token ", token,
                           " is outside [0, vocab_size ", c.vocab_size, ")");
    require<ArgumentError>(state.position >= 0 && state.position < c.seq_len,
                           "Transformer::decode: position ", state.position,
                           " is outside [0, seq_len ", c.seq_len, ")");
    require<ShapeError>(state.keys.size() == static_cast<std::size_t>(c.n_layers) &&
                            state.values.size() == state.keys.size(),
                        "Transformer::decode: state holds ", state.keys.size(),
                        " layers of keys; expected n_layers ", c.n_layers, " (use start())");
    const Index pos = state.position;
    const Index hs = c.head_size(), kvd = c.kv_dim();
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
    Matrix x = w_.token_embedding.row(token);
    Matrix xn, q, k, v, att(1, c.dim), o, h1, h3;
    Vector inv;
    for (Index l = 0; l < c.n_layers; ++l) {
      const LayerWeights& L = w_.layers[static_cast<std::size_t>(l)];
      require<ShapeError>(state.keys[l].rows() == c.seq_len && state.keys[l].cols() == kvd,
                          "Transformer::decode: state keys of layer ", l, " are ",
                          state.keys[l].rows(), " x ", state.keys[l].cols(), "; expected ",
                          c.seq_len, " x ", kvd);
      detail::rmsnorm(x, L.rms_att, xn, inv);
      linear(l * 7 + 0, xn, q, true);
      linear(l * 7 + 1, xn, k, true);
      linear(l * 7 + 2, xn, v, true);
      rope(q, 1, pos, 1.0f);
      rope(k, 1, pos, 1.0f);
      state.keys[l].row(pos) = k.row(0);
      state.values[l].row(pos) = v.row(0);
      for (Index h = 0; h < c.n_heads; ++h) {
        const Index kvh = h / c.kv_group();
        const auto keys = state.keys[l].block(0, kvh * hs, pos + 1, hs);
        const auto vals = state.values[l].block(0, kvh * hs, pos + 1, hs);
        RowVector s = (q.block(0, h * hs, 1, hs) * keys.transpose()) * scale;
        s = (s.array() - s.maxCoeff()).exp().matrix();
        s /= s.sum();
        att.block(0, h * hs, 1, hs) = s * vals;
      }
      linear(l * 7 + 3, att, o, true);
      x += o;
      detail::rmsnorm(x, L.rms_ffn, xn, inv);
      linear(l * 7 + 4, xn, h1, true);
      linear(l * 7 + 5, xn, h3, true);
      for (Index i = 0; i < h1.size(); ++i)
        h1.data()[i] = detail::silu(h1.data()[i]) * h3.data()[i];
      linear(l * 7 + 6, h1, o, true);
      x += o;
    }
    detail::rmsnorm(x, w_.rms_final, xn, inv);
    Matrix logits;
    linear(names_.size() - 1, xn, logits, true);
    ++state.position;
    return logits.row(0).transpose();
  }

  // Mean next-token cross-entropy (nats) of predicting targets(b, t) from inputs(b, 0..t), with
  // the current replacements. inputs and targets are both batch x T.
  double loss(const TokenBatch& inputs, const TokenBatch& targets) const {
    check_pair(inputs, targets, "Transformer::loss");
    detail::ForwardCache cache;
    const Matrix logits = run(inputs, cache, true);
    return cross_entropy(logits, targets, nullptr) / static_cast<double>(inputs.size());
  }

  // Mean next-token cross-entropy (nats) and its gradient with respect to every parameter, added
  // into `gradient` (shaped like weights(); Weights::zeros(config()) to start). Sequences are
  // cut into min(batch, kGradientShards) fixed shards, OpenMP threads (`threads`, 0 = OpenMP's
  // default) take whole shards and the shard sums are added in shard order, so the result is
  // bitwise the same for every thread count: a model trained on 1 core and on 16 is one model.
  // Dense layers only: throws ArgumentError if a layer is replaced.
  double loss_and_gradient(const TokenBatch& inputs, const TokenBatch& targets, Weights& gradient,
                           int threads = 0) const {
    check_pair(inputs, targets, "Transformer::loss_and_gradient");
    const double weight = 1.0 / static_cast<double>(inputs.size());
    return logit_loss_and_gradient(
        inputs,
        [&](Index b, const Matrix& logits, Matrix& dlogits) {
          const TokenBatch target = targets.row(b);
          const double sum = cross_entropy(logits, target, &dlogits);
          dlogits *= static_cast<float>(weight);
          return sum * weight;
        },
        gradient, threads);
  }

  // Any loss of the logits: `loss(b, logits, dlogits)` is given sequence b's logits (tokens x
  // vocab), returns its share of the loss and writes d(that share)/d(logits) into dlogits (the
  // caller's normalisation, e.g. 1 / (batch * tokens) for a mean). Returns the summed shares and
  // adds the parameter gradient into `gradient`; threading and determinism as loss_and_gradient.
  // Distillation uses it with a KD loss against a teacher's logits. Dense layers only.
  template <typename LogitLoss>
  double logit_loss_and_gradient(const TokenBatch& inputs, const LogitLoss& loss, Weights& gradient,
                                 int threads = 0) const {
    check_tokens(inputs, "Transformer::logit_loss_and_gradient: inputs");
    require<ArgumentError>(!any_replaced(),
                           "Transformer::loss_and_gradient: a linear layer is "
                           "replaced; the backward pass needs dense layers "
                           "(restore_all() first)");
    check_gradient_shape(gradient, "Transformer::loss_and_gradient");
    const Index batch = inputs.rows();
#ifdef _OPENMP
    if (threads <= 0) threads = omp_get_max_threads();
#else
    threads = 1;
#endif
    const Index shards = std::min<Index>(batch, kGradientShards);
    threads = static_cast<int>(std::min<Index>(threads, shards));
    std::vector<Weights> partial(static_cast<std::size_t>(shards));
    std::vector<double> losses(static_cast<std::size_t>(shards), 0.0);
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
    {
#ifdef _OPENMP
      // Each shard's products run on the thread that owns the shard. (With one thread Eigen
      // would split them itself, and its depth blocking depends on how many threads it uses, so
      // the sums would differ in the last bits.) Sets only this region's own ICV.
      omp_set_num_threads(1);
#pragma omp for schedule(static)
#endif
      for (Index t = 0; t < shards; ++t) {
        const Index begin = batch * t / shards, end = batch * (t + 1) / shards;
        Weights& g = partial[static_cast<std::size_t>(t)];
        g = Weights::zeros(config());
        double sum = 0.0;
        for (Index b = begin; b < end; ++b) {
          const TokenBatch in = inputs.row(b);
          detail::ForwardCache cache;
          const Matrix logits = run(in, cache, false);
          Matrix dlogits = Matrix::Zero(logits.rows(), logits.cols());
          sum += loss(b, logits, dlogits);
          backward(in, cache, dlogits, g);
        }
        losses[static_cast<std::size_t>(t)] = sum;
      }
    }
    double total = 0.0;
    for (Index t = 0; t < shards; ++t) {
      total += losses[static_cast<std::size_t>(t)];
      add_into(gradient, partial[static_cast<std::size_t>(t)]);
    }
    return total;
  }

  // Per-sample gradients of one parameter (a name from Weights::for_each_parameter, e.g.
  // "layers.0.feed_forward.w1"): row b is the gradient of sequence b's mean next-token loss,
  // flattened row-major (out x in), as the empirical Fisher of oBERT needs. batch x size.
  Matrix per_sample_gradients(const TokenBatch& inputs, const TokenBatch& targets,
                              const std::string& parameter) const {
    check_pair(inputs, targets, "Transformer::per_sample_gradients");
    require<ArgumentError>(!any_replaced(),
                           "Transformer::per_sample_gradients: a linear layer "
                           "is replaced; the backward pass needs dense layers");
    Index size = -1;
    w_.for_each_parameter([&](const std::string& name, const auto& p) {
      if (name == parameter) size = p.size();
    });
    require<ArgumentError>(size >= 0, "Transformer::per_sample_gradients: no parameter named '",
                           parameter, "'");
    const Index batch = inputs.rows();
    Matrix out(batch, size);
    const double weight = 1.0 / static_cast<double>(inputs.cols());
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (Index b = 0; b < batch; ++b) {
      Weights g = Weights::zeros(config());
      sequence_gradient(inputs.row(b), targets.row(b), weight, g);
      g.for_each_parameter([&](const std::string& name, const auto& p) {
        if (name == parameter) out.row(b) = Eigen::Map<const RowVector>(p.data(), p.size());
      });
    }
    return out;
  }

  // Throws ArgumentError / ShapeError unless every token is in [0, vocab_size) and the rows are
  // 1..seq_len long.
  void check_tokens(const TokenBatch& tokens, const std::string& what) const {
    require<ShapeError>(tokens.rows() > 0 && tokens.cols() > 0, what, " is ", tokens.rows(), " x ",
                        tokens.cols(), "; expected at least one sequence of at least one token");
    require<ShapeError>(tokens.cols() <= config().seq_len, what, " has sequences of ",
                        tokens.cols(), " tokens; expected at most seq_len ", config().seq_len);
    for (Index i = 0; i < tokens.size(); ++i) {
      const std::int32_t t = tokens.data()[i];
      require<ArgumentError>(t >= 0 && t < config().vocab_size, what, " holds token ", t, " at (",
                             i / tokens.cols(), ", ", i % tokens.cols(),
                             "), outside [0, vocab_size ", config().vocab_size, ")");
    }
  }

  static TokenBatch as_batch(const std::vector<std::int32_t>& tokens, const char* what) {
    require<ShapeError>(!tokens.empty(), what, ": tokens is empty; expected at least one token");
    TokenBatch b(1, static_cast<Index>(tokens.size()));
    for (std::size_t i = 0; i < tokens.size(); ++i) b(0, static_cast<Index>(i)) = tokens[i];
    return b;
  }

 private:
  std::size_t index_of(const std::string& name) const {
    for (std::size_t i = 0; i < names_.size(); ++i) {
      if (names_[i] == name) return i;
    }
    throw ArgumentError(slim::detail::concat("Transformer: no linear layer named '", name,
                                             "'; expected e.g. 'layers.0.attention.wq' or "
                                             "'output'"));
  }

  const Matrix& dense(std::size_t i) const {
    if (i + 1 == names_.size()) return w_.classifier();
    const LayerWeights& L = w_.layers[i / 7];
    switch (i % 7) {
      case 0:
        return L.wq;
      case 1:
        return L.wk;
      case 2:
        return L.wv;
      case 3:
        return L.wo;
      case 4:
        return L.w1;
      case 5:
        return L.w3;
      default:
        return L.w2;
    }
  }

  // y = x W^T through the hook and the replacement when `inference`, dense otherwise.
  void linear(std::size_t i, const Matrix& x, Matrix& y, bool inference) const {
    if (inference) {
      if (hook_) hook_(names_[i], x);
      if (replaced_[i]) {
        replaced_[i]->forward(x, y);
        require<ShapeError>(y.rows() == x.rows() && y.cols() == dense(i).rows(),
                            "Transformer: replacement of '", names_[i], "' returned ", y.rows(),
                            " x ", y.cols(), "; expected ", x.rows(), " x ", dense(i).rows());
        return;
      }
    }
    y.noalias() = x * dense(i).transpose();
  }

  // Rotates pairs (2j, 2j+1) of every head in the rows of m (rows = sequences of `tokens`, row r
  // at position start + r % tokens) by sign * angle; sign -1 undoes the rotation (its transpose).
  void rope(Matrix& m, Index tokens, Index start, float sign) const {
    const Index hs = config().head_size();
    for (Index r = 0; r < m.rows(); ++r) {
      const Index pos = start + r % tokens;
      float* row = m.row(r).data();
      for (Index c = 0; c < m.cols(); c += 2) {
        const Index j = (c % hs) / 2;
        const float fc = rope_cos_(pos, j), fs = sign * rope_sin_(pos, j);
        const float v0 = row[c], v1 = row[c + 1];
        row[c] = v0 * fc - v1 * fs;
        row[c + 1] = v0 * fs + v1 * fc;
      }
    }
  }

  // Forward over all rows of `tokens`, filling `cache`; returns logits.
  Matrix run(const TokenBatch& tokens, detail::ForwardCache& cache, bool inference) const {
    const Config& c = config();
    const Index B = tokens.rows(), T = tokens.cols(), N = B * T;
    const Index hs = c.head_size();
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
    cache.batch = B;
    cache.tokens = T;
    cache.layers.resize(static_cast<std::size_t>(c.n_layers));
    Matrix x(N, c.dim);
    for (Index n = 0; n < N; ++n) x.row(n) = w_.token_embedding.row(tokens.data()[n]);
    Matrix tmp;
    for (Index l = 0; l < c.n_layers; ++l) {
      const LayerWeights& L = w_.layers[static_cast<std::size_t>(l)];
      detail::LayerCache& lc = cache.layers[static_cast<std::size_t>(l)];
      lc.x_in = x;
      detail::rmsnorm(x, L.rms_att, lc.xn1, lc.inv1);
      linear(l * 7 + 0, lc.xn1, lc.q, inference);
      linear(l * 7 + 1, lc.xn1, lc.k, inference);
      linear(l * 7 + 2, lc.xn1, lc.v, inference);
      rope(lc.q, T, 0, 1.0f);
      rope(lc.k, T, 0, 1.0f);
      lc.att.resize(N, c.dim);
      lc.probs.resize(static_cast<std::size_t>(B * c.n_heads));
      for (Index b = 0; b < B; ++b) {
        for (Index h = 0; h < c.n_heads; ++h) {
          const Index kvh = h / c.kv_group();
          Matrix& p = lc.probs[static_cast<std::size_t>(b * c.n_heads + h)];
          p.noalias() =
              (lc.q.block(b * T, h * hs, T, hs) * lc.k.block(b * T, kvh * hs, T, hs).transpose()) *
              scale;
          for (Index i = 0; i < T; ++i) {
            auto row = p.row(i);
            const float mx = row.head(i + 1).maxCoeff();
            row.head(i + 1) = (row.head(i + 1).array() - mx).exp().matrix();
            row.head(i + 1) /= row.head(i + 1).sum();
            row.tail(T - i - 1).setZero();
          }
          lc.att.block(b * T, h * hs, T, hs).noalias() = p * lc.v.block(b * T, kvh * hs, T, hs);
        }
      }
      linear(l * 7 + 3, lc.att, tmp, inference);
      x += tmp;
      lc.x_mid = x;
      detail::rmsnorm(x, L.rms_ffn, lc.xn2, lc.inv2);
      linear(l * 7 + 4, lc.xn2, lc.h1, inference);
      linear(l * 7 + 5, lc.xn2, lc.h3, inference);
      lc.g.resize(N, c.hidden_dim);
      for (Index i = 0; i < lc.g.size(); ++i) {
        lc.g.data()[i] = detail::silu(lc.h1.data()[i]) * lc.h3.data()[i];
      }
      linear(l * 7 + 6, lc.g, tmp, inference);
      x += tmp;
    }
    cache.x_final = x;
    detail::rmsnorm(x, w_.rms_final, cache.xnf, cache.invf);
    Matrix logits;
    linear(names_.size() - 1, cache.xnf, logits, inference);
    return logits;
  }

  // Sum over rows of -log softmax(logits)[target]. When dlogits is given it receives
  // softmax - onehot per row.
  static double cross_entropy(const Matrix& logits, const TokenBatch& targets, Matrix* dlogits) {
    double total = 0.0;
    if (dlogits != nullptr) dlogits->resize(logits.rows(), logits.cols());
    for (Index n = 0; n < logits.rows(); ++n) {
      const float mx = logits.row(n).maxCoeff();
      const double sum = (logits.row(n).array() - mx).exp().cast<double>().sum();
      const std::int32_t t = targets.data()[n];
      total += std::log(sum) - static_cast<double>(logits(n, t) - mx);
      if (dlogits != nullptr) {
        dlogits->row(n) = ((logits.row(n).array() - mx).exp() / static_cast<float>(sum)).matrix();
        (*dlogits)(n, t) -= 1.0f;
      }
    }
    return total;
  }

  // Forward and backward of one sequence; adds weight * d(sum of token losses) into g and
  // returns weight * (sum of token losses).
  template <typename RowA, typename RowB>
  double sequence_gradient(const RowA& input, const RowB& target, double weight, Weights& g) const {
    const TokenBatch in = input;
    const TokenBatch tg = target;
    detail::ForwardCache cache;
    const Matrix logits = run(in, cache, false);
    Matrix dlogits;
    const double sum = cross_entropy(logits, tg, &dlogits);
    dlogits *= static_cast<float>(weight);
    backward(in, cache, dlogits, g);
    return sum * weight;
  }

  void backward(const TokenBatch& tokens, const detail::ForwardCache& cache, const Matrix& dlogits,
                Weights& g) const {
    const Config& c = config();
    const Index B = cache.batch, T = cache.tokens;
    const Index hs = c.head_size();
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
    Matrix& dcls = c.shared_classifier ? g.token_embedding : g.wcls;
    dcls.noalias() += dlogits.transpose() * cache.xnf;
    Matrix dxn = dlogits * w_.classifier();
    Matrix dx = detail::rmsnorm_backward(cache.x_final, cache.invf, w_.rms_final, dxn, g.rms_final);
    Matrix dg, dh1, dh3, datt, dq, dk, dv, dp, ds;
    for (Index l = c.n_layers - 1; l >= 0; --l) {
      const LayerWeights& L = w_.layers[static_cast<std::size_t>(l)];
      LayerWeights& G = g.layers[static_cast<std::size_t>(l)];
      const detail::LayerCache& lc = cache.layers[static_cast<std::size_t>(l)];
      // MLP: x_out = x_mid + (silu(h1) * h3) w2^T.
      G.w2.noalias() += dx.transpose() * lc.g;
      dg.noalias() = dx * L.w2;
      dh1.resize(dg.rows(), dg.cols());
      dh3.resize(dg.rows(), dg.cols());
      for (Index i = 0; i < dg.size(); ++i) {
        const float a = lc.h1.data()[i];
        const float sig = 1.0f / (1.0f + std::exp(-a));
        dh3.data()[i] = dg.data()[i] * a * sig;
        dh1.data()[i] = dg.data()[i] * lc.h3.data()[i] * sig * (1.0f + a * (1.0f - sig));
      }
      G.w1.noalias() += dh1.transpose() * lc.xn2;
      G.w3.noalias() += dh3.transpose() * lc.xn2;
      dxn.noalias() = dh1 * L.w1;
      dxn.noalias() += dh3 * L.w3;
      dx += detail::rmsnorm_backward(lc.x_mid, lc.inv2, L.rms_ffn, dxn, G.rms_ffn);
      // Attention: x_mid = x_in + att wo^T.
      G.wo.noalias() += dx.transpose() * lc.att;
      datt.noalias() = dx * L.wo;
      dq.setZero(B * T, c.dim);
      dk.setZero(B * T, c.kv_dim());
      dv.setZero(B * T, c.kv_dim());
      for (Index b = 0; b < B; ++b) {
        for (Index h = 0; h < c.n_heads; ++h) {
          const Index kvh = h / c.kv_group();
          const Matrix& p = lc.probs[static_cast<std::size_t>(b * c.n_heads + h)];
          const auto d_o = datt.block(b * T, h * hs, T, hs);
          dv.block(b * T, kvh * hs, T, hs).noalias() += p.transpose() * d_o;
          dp.noalias() = d_o * lc.v.block(b * T, kvh * hs, T, hs).transpose();
          ds = p.cwiseProduct(dp);
          const Vector rowsum = ds.rowwise().sum();
          ds -= p.cwiseProduct(rowsum.replicate(1, T));
          ds *= scale;
          dq.block(b * T, h * hs, T, hs).noalias() = ds * lc.k.block(b * T, kvh * hs, T, hs);
          dk.block(b * T, kvh * hs, T, hs).noalias() +=
              ds.transpose() * lc.q.block(b * T, h * hs, T, hs);
        }
      }
      rope(dq, T, 0, -1.0f);
      rope(dk, T, 0, -1.0f);
      G.wq.noalias() += dq.transpose() * lc.xn1;
      G.wk.noalias() += dk.transpose() * lc.xn1;
      G.wv.noalias() += dv.transpose() * lc.xn1;
      dxn.noalias() = dq * L.wq;
      dxn.noalias() += dk * L.wk;
      dxn.noalias() += dv * L.wv;
      dx += detail::rmsnorm_backward(lc.x_in, lc.inv1, L.rms_att, dxn, G.rms_att);
    }
    for (Index n = 0; n < B * T; ++n) g.token_embedding.row(tokens.data()[n]) += dx.row(n);
  }

  void check_pair(const TokenBatch& inputs, const TokenBatch& targets, const char* fn) const {
    check_tokens(inputs, std::string(fn) + ": inputs");
    require<ShapeError>(inputs.rows() == targets.rows() && inputs.cols() == targets.cols(), fn,
                        ": targets are ", targets.rows(), " x ", targets.cols(),
                        "; expected the inputs' shape ", inputs.rows(), " x ", inputs.cols());
    check_tokens(targets, std::string(fn) + ": targets");
  }

  void check_gradient_shape(const Weights& g, const char* fn) const {
    require<ShapeError>(g.config == config(), fn,
                        ": gradient is shaped for another config; expected "
                        "Weights::zeros(config())");
    g.validate();
  }

  static void add_into(Weights& into, const Weights& from) {
    std::vector<const float*> src;
    std::vector<Index> sizes;
    from.for_each_parameter([&](const std::string&, const auto& p) {
      src.push_back(p.data());
      sizes.push_back(p.size());
    });
    std::size_t k = 0;
    into.for_each_parameter([&](const std::string&, auto p) {
      Eigen::Map<RowVector>(p.data(), p.size()) += Eigen::Map<const RowVector>(src[k], sizes[k]);
      ++k;
    });
  }

  Weights w_;
  Matrix rope_cos_, rope_sin_;  // seq_len x head_size / 2
  std::vector<std::string> names_;
  std::vector<std::shared_ptr<const LinearLayer>> replaced_;
  LinearHook hook_;
};

}  // namespace slim::model

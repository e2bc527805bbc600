// First-order optimizers over a list of Eigen matrices for any C++ training loop: AdamW
// (Loshchilov & Hutter 2019, Algorithm 2: decoupled weight decay, bias-corrected moments; defaults
// are PyTorch's torch.optim.AdamW) and SGD with momentum (torch.optim.SGD's recurrence),
// global-norm gradient clipping (torch.nn.utils.clip_grad_norm_), and cosine / linear learning-rate
// schedules with linear warmup (HuggingFace get_cosine_schedule_with_warmup /
// get_linear_schedule_with_warmup).
//
// Use:
//   slim::distill::AdamW adam({.lr = 1e-3});
//   std::vector<slim::distill::Parameter> params{{&W, &dW}, {&b, &db}};
//   for (step...) { compute dW, db; clip_gradient_norm(params, 1.0); adam.step(params); }
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/types.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace slim::distill {

// One trainable matrix and its gradient (same shape). The optimizer reads *gradient and updates
// *value in place; clip_gradient_norm rescales *gradient. Neither pointer is owned.
struct Parameter {
  Matrix* value = nullptr;
  Matrix* gradient = nullptr;
};

namespace detail {

inline void check_parameters(const std::vector<Parameter>& params, const char* fn) {
  for (std::size_t i = 0; i < params.size(); ++i) {
    require<ArgumentError>(params[i].value != nullptr && params[i].gradient != nullptr, fn,
                           ": parameter ", i, " has a null value or gradient pointer");
    const Matrix& v = *params[i].value;
    const Matrix& g = *params[i].gradient;
    require<ShapeError>(v.rows() == g.rows() && v.cols() == g.cols(), fn, ": parameter ", i, " is ",
                        v.rows(), " x ", v.cols(), " but its gradient is ", g.rows(), " x ",
                        g.cols(), "; expected equal shapes");
  }
}

// (Re)creates zero state matching the parameters on the first step; afterwards the list must keep
// its length and shapes.
inline void match_state(std::vector<Matrix>& state, const std::vector<Parameter>& params,
                        bool initialised, const char* fn) {
  if (!initialised) {
    state.clear();
    for (const Parameter& p : params)
      state.push_back(Matrix::Zero(p.value->rows(), p.value->cols()));
    return;
  }
  require<ShapeError>(state.size() == params.size(), fn, ": called with ", params.size(),
                      " parameters but the optimizer state holds ", state.size(),
                      "; expected the same list on every step (call reset() to start over)");
  for (std::size_t i = 0; i < params.size(); ++i) {
    require<ShapeError>(
        state[i].rows() == params[i].value->rows() && state[i].cols() == params[i].value->cols(),
        fn, ": parameter ", i, " is ", params[i].value->rows(), " x ", params[i].value->cols(),
        " but its optimizer state is ", state[i].rows(), " x ", state[i].cols(),
        "; expected the same shapes on every step");
  }
}

}  // namespace detail

// torch.optim.AdamW defaults.
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
};

// AdamW, step t = 1, 2, ... (PyTorch's arithmetic):
//   p <- p * (1 - lr * weight_decay)                       (decoupled decay)
//   m <- beta1 m + (1 - beta1) g,   v <- beta2 v + (1 - beta2) g^2
//   p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v / (1 - beta2^t)) + eps)
class AdamW {
 public:
  explicit AdamW(AdamWOptions options = {}) : options_(options) {
    require<ArgumentError>(options.lr >= 0.0, "AdamW: lr ", options.lr, " must be non-negative");
    require<ArgumentError>(options.beta1 >= 0.0 && options.beta1 < 1.0, "AdamW: beta1 ",
                           options.beta1, " must be in [0, 1)");
    require<ArgumentError>(options.beta2 >= 0.0 && options.beta2 < 1.0, "AdamW: beta2 ",
                           options.beta2, " must be in [0, 1)");
    require<ArgumentError>(options.eps > 0.0, "AdamW: eps ", options.eps, " must be positive");
    require<ArgumentError>(options.weight_decay >= 0.0, "AdamW: weight_decay ",
                           options.weight_decay, " must be non-negative");
  }

  // One update with the configured learning rate.
  void step(const std::vector<Parameter>& params) { step(params, options_.lr); }

  // One update with learning rate `lr` (e.g. schedule(step) * base).
  void step(const std::vector<Parameter>& params, double lr) {
    require<ArgumentError>(lr >= 0.0 && std::isfinite(lr), "AdamW::step: lr ", lr,
                           " must be finite and non-negative");
    detail::check_parameters(params, "AdamW::step");
    detail::match_state(m_, params, steps_ > 0, "AdamW::step");
    detail::match_state(v_, params, steps_ > 0, "AdamW::step");
    ++steps_;
    const double t = static_cast<double>(steps_);
    const double bias1 = 1.0 - std::pow(options_.beta1, t);
    const double bias2 = 1.0 - std::pow(options_.beta2, t);
    const float b1 = static_cast<float>(options_.beta1);
    const float b2 = static_cast<float>(options_.beta2);
    const float step_size = static_cast<float>(lr / bias1);
    const float inv_sqrt_bias2 = static_cast<float>(1.0 / std::sqrt(bias2));
    const float eps = static_cast<float>(options_.eps);
    const float decay = static_cast<float>(1.0 - lr * options_.weight_decay);
    for (std::size_t i = 0; i < params.size(); ++i) {
      auto p = params[i].value->array();
      const auto g = params[i].gradient->array();
      auto m = m_[i].array();
      auto v = v_[i].array();
      p *= decay;
      m = b1 * m + (1.0f - b1) * g;
      v = b2 * v + (1.0f - b2) * g.square();
      p -= step_size * m / (v.sqrt() * inv_sqrt_bias2 + eps);
    }
  }

  std::int64_t steps() const { return steps_; }
  const AdamWOptions& options() const { return options_; }
  // First and second moment estimates of parameter i (empty before the first step).
  const std::vector<Matrix>& first_moments() const { return m_; }
  const std::vector<Matrix>& second_moments() const { return v_; }
  // Forgets all state: the next step is step 1 again.
  void reset() {
    steps_ = 0;
    m_.clear();
    v_.clear();
  }

 private:
  AdamWOptions options_;
  std::int64_t steps_ = 0;
  std::vector<Matrix> m_;
  std::vector<Matrix> v_;
};

// torch.optim.SGD semantics; lr has no PyTorch default, 0.01 is the common choice, and momentum
// 0.9 is the usual setting for "SGD with momentum".
struct SgdOptions {
  double lr = 0.01;
  double momentum = 0.9;
  double dampening = 0.0;
  double weight_decay = 0.0;  // coupled L2: g <- g + weight_decay * p
  bool nesterov = false;
};

// SGD with momentum (PyTorch's recurrence):
//   g <- g + weight_decay p
//   b <- g on the first step, else momentum b + (1 - dampening) g
//   d <- g + momentum b if nesterov, else b
//   p <- p - lr d
// With momentum 0, plain SGD.
class Sgd {
 public:
  explicit Sgd(SgdOptions options = {}) : options_(options) {
    require<ArgumentError>(options.lr >= 0.0, "Sgd: lr ", options.lr, " must be non-negative");
    require<ArgumentError>(options.momentum >= 0.0, "Sgd: momentum ", options.momentum,
                           " must be non-negative");
    require<ArgumentError>(options.weight_decay >= 0.0, "Sgd: weight_decay ", options.weight_decay,
                           " must be non-negative");
    require<ArgumentError>(
        !options.nesterov || (options.momentum > 0.0 && options.dampening == 0.0),
        "Sgd: nesterov needs momentum > 0 and dampening 0; got momentum ", options.momentum,
        ", dampening ", options.dampening);
  }

  void step(const std::vector<Parameter>& params) { step(params, options_.lr); }

  void step(const std::vector<Parameter>& params, double lr) {
    require<ArgumentError>(lr >= 0.0 && std::isfinite(lr), "Sgd::step: lr ", lr,
                           " must be finite and non-negative");
    detail::check_parameters(params, "Sgd::step");
    const bool first = steps_ == 0;
    detail::match_state(buffer_, params, !first, "Sgd::step");
    ++steps_;
    const float mu = static_cast<float>(options_.momentum);
    const float damp = static_cast<float>(1.0 - options_.dampening);
    const float wd = static_cast<float>(options_.weight_decay);
    const float rate = static_cast<float>(lr);
    for (std::size_t i = 0; i < params.size(); ++i) {
      Matrix& p = *params[i].value;
      Matrix g = *params[i].gradient;
      if (wd != 0.0f) g += wd * p;
      if (mu == 0.0f) {
        p -= rate * g;
        continue;
      }
      Matrix& b = buffer_[i];
      if (first) {
        b = g;
      } else {
        b = mu * b + damp * g;
      }
      if (options_.nesterov) {
        p -= rate * (g + mu * b);
      } else {
        p -= rate * b;
      }
    }
  }

  std::int64_t steps() const { return steps_; }
  const SgdOptions& options() const { return options_; }
  const std::vector<Matrix>& momentum_buffers() const { return buffer_; }
  void reset() {
    steps_ = 0;
    buffer_.clear();
  }

 private:
  SgdOptions options_;
  std::int64_t steps_ = 0;
  std::vector<Matrix> buffer_;
};

// Scales all gradients together so that their global L2 norm is at most max_norm
// (torch.nn.utils.clip_grad_norm_: factor max_norm / (norm + 1e-6) when below 1). Returns the
// global norm before clipping. Throws NumericalError if the norm is not finite.
inline double clip_gradient_norm(const std::vector<Parameter>& params, double max_norm) {
  require<ArgumentError>(max_norm > 0.0, "clip_gradient_norm: max_norm ", max_norm,
                         " must be positive");
  double sum = 0.0;
  for (std::size_t i = 0; i < params.size(); ++i) {
    require<ArgumentError>(params[i].gradient != nullptr, "clip_gradient_norm: parameter ", i,
                           " has a null gradient pointer");
    sum += params[i].gradient->cast<double>().squaredNorm();
  }
  const double norm = std::sqrt(sum);
  require<NumericalError>(std::isfinite(norm), "clip_gradient_norm: the gradient norm is ", norm,
                          "; expected a finite number");
  const double factor = max_norm / (norm + 1e-6);
  if (factor < 1.0) {
    for (const Parameter& p : params) *p.gradient *= static_cast<float>(factor);
  }
  return norm;
}

// Learning rate at `step` (0-based): linear warmup from 0 to base_lr over warmup_steps, then a
// half-cosine from base_lr down to min_lr at total_steps (held at min_lr afterwards).
struct CosineSchedule {
  double base_lr = 1e-3;
  std::int64_t total_steps = 1000;
  std::int64_t warmup_steps = 0;
  double min_lr = 0.0;

  double operator()(std::int64_t step) const {
    require<ArgumentError>(total_steps > 0 && warmup_steps >= 0 && warmup_steps <= total_steps,
                           "CosineSchedule: need 0 <= warmup_steps <= total_steps and "
                           "total_steps > 0; got warmup_steps ",
                           warmup_steps, ", total_steps ", total_steps);
    require<ArgumentError>(step >= 0, "CosineSchedule: step ", step, " must be non-negative");
    if (step < warmup_steps) {
      return base_lr * static_cast<double>(step) / static_cast<double>(warmup_steps);
    }
    if (step >= total_steps) return min_lr;
    const double progress =
        static_cast<double>(step - warmup_steps) / static_cast<double>(total_steps - warmup_steps);
    const double pi = 3.14159265358979323846;
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + std::cos(pi * progress));
  }
};

// Learning rate at `step` (0-based): linear warmup from 0 to base_lr over warmup_steps, then
// constant when total_steps is 0, else linear decay to 0 at total_steps.
struct LinearWarmupSchedule {
  double base_lr = 1e-3;
  std::int64_t warmup_steps = 0;
  std::int64_t total_steps = 0;  // 0: no decay after warmup

  double operator()(std::int64_t step) const {
    require<ArgumentError>(
        warmup_steps >= 0 && total_steps >= 0 && (total_steps == 0 || total_steps >= warmup_steps),
        "LinearWarmupSchedule: need warmup_steps >= 0 and total_steps 0 or >= "
        "warmup_steps; got warmup_steps ",
        warmup_steps, ", total_steps ", total_steps);
    require<ArgumentError>(step >= 0, "LinearWarmupSchedule: step ", step, " must be non-negative");
    if (step < warmup_steps) {
      return base_lr * static_cast<double>(step) / static_cast<double>(warmup_steps);
    }
    if (total_steps == 0) return base_lr;
    if (step >= total_steps) return 0.0;
    if (total_steps == warmup_steps) return 0.0;
    return base_lr * static_cast<double>(total_steps - step) /
           static_cast<double>(total_steps - warmup_steps);
  }
};

}  // namespace slim::distill

// Layer-wise distillation without autograd: given a teacher layer's inputs X (tokens x in) and
// outputs Y (tokens x out), fit a compressed replacement by minimising the output MSE
// mean((X W~^T - Y)^2) with AdamW (or SGD) — the local reconstruction objective that PELA and
// DSFormer distil factorised layers with and that Minitron-style recipes recover pruning with. The
// trainable part is the low-rank factors U (out x r), V (r x in) with W~ = U V; the surviving
// weights of a pruned layer under a fixed mask; or the per-group scales of a quantized layer with
// its codes and zero-points fixed. Defaults: AdamW with PyTorch's betas and eps, weight decay 0
// (a regression to the teacher should not be pulled towards zero), a cosine decay over `steps`;
// no paper fixes lr and steps for this local objective, so 1e-2 and 1000 are the values that reach
// the closed-form optimum on tests/distill/trainer.cpp's low-rank check.
// The result is never worse than the starting point: the best iterate is kept, and the starting
// point is restored if nothing beat it.
#pragma once

#include <slim/core/checks.hpp>
#include <slim/core/error.hpp>
#include <slim/core/random.hpp>
#include <slim/core/types.hpp>
#include <slim/distill/optimizer.hpp>
#include <slim/quant/quantized_matrix.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <utility>
#include <vector>

namespace slim::distill {

enum class OptimizerKind { adamw, sgd };

struct LayerwiseOptions {
  std::int64_t steps = 1000;
  double lr = 1e-2;  // peak learning rate
  OptimizerKind optimizer = OptimizerKind::adamw;
  double weight_decay = 0.0;  // AdamW decoupled decay
  double momentum = 0.9;      // SGD only
  std::int64_t warmup_steps = 0;
  bool cosine_decay = true;        // false: constant learning rate after warmup
  double max_gradient_norm = 0.0;  // > 0: clip the global gradient norm to it
  Index batch_size = 0;            // rows per step; 0: all rows (deterministic full batch)
  std::uint64_t seed = 0;          // row order of mini-batches
};

struct LayerwiseResult {
  double initial_mse = 0.0;     // output MSE of the starting point, all rows
  double final_mse = 0.0;       // output MSE of the returned parameters, all rows
  std::int64_t steps = 0;       // optimizer steps taken
  bool improved = false;        // final_mse < initial_mse (otherwise the start was restored)
  std::vector<double> history;  // loss seen at each step (batch MSE before the update)
};

class LayerwiseTrainer {
 public:
  // inputs: tokens x in_features, teacher_outputs: tokens x out_features (X W_teacher^T).
  LayerwiseTrainer(const Eigen::Ref<const Matrix>& inputs,
                   const Eigen::Ref<const Matrix>& teacher_outputs, LayerwiseOptions options = {})
      : x_(inputs), y_(teacher_outputs), options_(options) {
    const char* fn = "distill::LayerwiseTrainer";
    require_nonempty(x_, "distill::LayerwiseTrainer: inputs");
    require_nonempty(y_, "distill::LayerwiseTrainer: teacher_outputs");
    require<ShapeError>(x_.rows() == y_.rows(), fn, ": inputs have ", x_.rows(),
                        " rows but teacher_outputs have ", y_.rows(), "; expected equal");
    require_finite(x_, "distill::LayerwiseTrainer: inputs");
    require_finite(y_, "distill::LayerwiseTrainer: teacher_outputs");
    require<ArgumentError>(options.steps >= 0, fn, ": steps ", options.steps,
                           " must be non-negative");
    require<ArgumentError>(options.lr > 0.0 && std::isfinite(options.lr), fn, ": lr ", options.lr,
                           " must be positive");
    require<ArgumentError>(options.warmup_steps >= 0 && options.warmup_steps <= options.steps, fn,
                           ": warmup_steps ", options.warmup_steps, " must be in [0, steps ",
                           options.steps, "]");
    require<ArgumentError>(options.batch_size >= 0, fn, ": batch_size ", options.batch_size,
                           " must be non-negative");
    require<ArgumentError>(options.max_gradient_norm >= 0.0, fn, ": max_gradient_norm ",
                           options.max_gradient_norm, " must be non-negative");
  }

  Index in_features() const { return x_.cols(); }
  Index out_features() const { return y_.cols(); }
  Index tokens() const { return x_.rows(); }
  const LayerwiseOptions& options() const { return options_; }

  // Output MSE of a dense weight (out x in) over all rows: mean((X W^T - Y)^2).
  double output_mse(const Eigen::Ref<const Matrix>& weight) const {
    require<ShapeError>(weight.rows() == out_features() && weight.cols() == in_features(),
                        "distill::LayerwiseTrainer::output_mse: weight is ", weight.rows(), " x ",
                        weight.cols(), "; expected ", out_features(), " x ", in_features());
    return mse(x_ * weight.transpose(), y_);
  }

  // Low-rank student W~ = U V with U out x r and V r x in, both updated in place.
  // dL/dU = G^T (X V^T), dL/dV = U^T G^T X with G = dL/d(X W~^T).
  LayerwiseResult fit_low_rank(Matrix& u, Matrix& v) const {
    const char* fn = "distill::LayerwiseTrainer::fit_low_rank";
    require<ShapeError>(u.rows() == out_features() && v.cols() == in_features() &&
                            u.cols() == v.rows() && u.cols() > 0,
                        fn, ": U is ", u.rows(), " x ", u.cols(), " and V is ", v.rows(), " x ",
                        v.cols(), "; expected ", out_features(), " x r and r x ", in_features(),
                        " with r > 0");
    require_finite(u, "distill::LayerwiseTrainer::fit_low_rank: U");
    require_finite(v, "distill::LayerwiseTrainer::fit_low_rank: V");
    Matrix du(u.rows(), u.cols()), dv(v.rows(), v.cols());
    Matrix projected, output, residual;
    auto loss_and_gradient = [&](const Matrix& x, const Matrix& y) {
      projected.noalias() = x * v.transpose();
      output.noalias() = projected * u.transpose();
      const double loss = mse_and_gradient(output, y, residual);
      du.noalias() = residual.transpose() * projected;
      const Matrix gu = residual * u;  // tokens x r
      dv.noalias() = gu.transpose() * x;
      return loss;
    };
    auto full_mse = [&] { return mse((x_ * v.transpose()) * u.transpose(), y_); };
    return train({{&u, &du}, {&v, &dv}}, loss_and_gradient, full_mse);
  }

  // Pruned student: the weights where `mask` is non-zero are trained, the others are held at 0
  // (they are zeroed on entry). dL/dW = (G^T X) .* mask.
  template <typename DerivedMask>
  LayerwiseResult fit_masked(Matrix& weight, const Eigen::MatrixBase<DerivedMask>& mask) const {
    const char* fn = "distill::LayerwiseTrainer::fit_masked";
    require<ShapeError>(weight.rows() == out_features() && weight.cols() == in_features(), fn,
                        ": weight is ", weight.rows(), " x ", weight.cols(), "; expected ",
                        out_features(), " x ", in_features());
    require<ShapeError>(mask.rows() == weight.rows() && mask.cols() == weight.cols(), fn,
                        ": mask is ", mask.rows(), " x ", mask.cols(), "; expected ", weight.rows(),
                        " x ", weight.cols());
    require_finite(weight, "distill::LayerwiseTrainer::fit_masked: weight");
    const Matrix keep = (mask.array() != typename DerivedMask::Scalar(0)).template cast<float>();
    weight = weight.cwiseProduct(keep);
    Matrix dw(weight.rows(), weight.cols());
    Matrix output, residual;
    auto loss_and_gradient = [&](const Matrix& x, const Matrix& y) {
      output.noalias() = x * weight.transpose();
      const double loss = mse_and_gradient(output, y, residual);
      dw.noalias() = residual.transpose() * x;
      dw = dw.cwiseProduct(keep);
      return loss;
    };
    auto full_mse = [&] { return output_mse(weight); };
    return train({{&weight, &dw}}, loss_and_gradient, full_mse);
  }

  // Quantized student: the scale of every group is trained with the codes and zero-points fixed,
  // W~[r, c] = s[r, g(c)] (q[r, c] - z[r, g(c)]), dL/ds[r, g] = sum_{c in g} (G^T X)[r, c] (q - z).
  // Scales are stored back in fp16 (QuantizedMatrix's format); the returned MSE is that of the
  // stored matrix.
  LayerwiseResult fit_quantized_scales(quant::QuantizedMatrix& quantized) const {
    const char* fn = "distill::LayerwiseTrainer::fit_quantized_scales";
    require<ShapeError>(quantized.rows() == out_features() && quantized.cols() == in_features(), fn,
                        ": quantized matrix is ", quantized.rows(), " x ", quantized.cols(),
                        "; expected ", out_features(), " x ", in_features());
    const bool per_tensor = quantized.scheme().granularity == quant::Granularity::per_tensor;
    const Index param_rows = per_tensor ? 1 : quantized.rows();
    const Index groups = quantized.groups_per_row();
    const Index group_size = quantized.group_size();
    // Codes minus zero-points, fixed during training; scales as a trainable matrix.
    Matrix centred(quantized.rows(), quantized.cols());
    for (Index r = 0; r < quantized.rows(); ++r) {
      for (Index c = 0; c < quantized.cols(); ++c) {
        const quant::GroupParams p = quantized.params(r, c / group_size);
        centred(r, c) = static_cast<float>(static_cast<int>(quantized.code(r, c)) - p.zero);
      }
    }
    Matrix scales(param_rows, groups);
    std::vector<int> zeros(static_cast<std::size_t>(param_rows * groups));
    for (Index r = 0; r < param_rows; ++r) {
      for (Index g = 0; g < groups; ++g) {
        const quant::GroupParams p = quantized.params(r, g);
        scales(r, g) = p.scale;
        zeros[static_cast<std::size_t>(r * groups + g)] = p.zero;
      }
    }
    Matrix weight(quantized.rows(), quantized.cols());
    auto expand = [&] {
      for (Index r = 0; r < weight.rows(); ++r) {
        const Index pr = per_tensor ? 0 : r;
        for (Index g = 0; g < groups; ++g) {
          weight.row(r).segment(g * group_size, group_size) =
              scales(pr, g) * centred.row(r).segment(g * group_size, group_size);
        }
      }
    };
    Matrix ds(param_rows, groups), dw, output, residual;
    auto loss_and_gradient = [&](const Matrix& x, const Matrix& y) {
      expand();
      output.noalias() = x * weight.transpose();
      const double loss = mse_and_gradient(output, y, residual);
      dw.noalias() = residual.transpose() * x;
      ds.setZero();
      for (Index r = 0; r < dw.rows(); ++r) {
        const Index pr = per_tensor ? 0 : r;
        for (Index g = 0; g < groups; ++g) {
          ds(pr, g) += dw.row(r)
                           .segment(g * group_size, group_size)
                           .dot(centred.row(r).segment(g * group_size, group_size));
        }
      }
      return loss;
    };
    auto store = [&](const Matrix& s) {
      for (Index r = 0; r < param_rows; ++r) {
        for (Index g = 0; g < groups; ++g) {
          quantized.set_params(r, g, {s(r, g), zeros[static_cast<std::size_t>(r * groups + g)]});
        }
      }
    };
    // The MSE that counts is that of the stored (fp16-rounded) scales.
    auto stored_mse = [&] {
      store(scales);
      return output_mse(quantized.dequantize());
    };
    return train({{&scales, &ds}}, loss_and_gradient, stored_mse);
  }

 private:
  // mean((output - target)^2), with its gradient 2 (output - target) / size written to `gradient`.
  static double mse_and_gradient(const Matrix& output, const Matrix& target, Matrix& gradient) {
    gradient = output - target;
    const double value = gradient.cast<double>().squaredNorm() / static_cast<double>(output.size());
    gradient *= static_cast<float>(2.0 / static_cast<double>(output.size()));
    return value;
  }

  static double mse(const Matrix& output, const Matrix& target) {
    return (output.cast<double>() - target.cast<double>()).squaredNorm() /
           static_cast<double>(output.size());
  }

  // The shared loop. loss_and_gradient(x, y) fills the gradients for the current parameters on a
  // batch and returns the batch loss; full_mse() evaluates the current parameters on all rows.
  // Keeps the best full-batch iterate and restores the start when nothing improved on it.
  LayerwiseResult train(
      const std::vector<Parameter>& params,
      const std::function<double(const Matrix&, const Matrix&)>& loss_and_gradient,
      const std::function<double()>& full_mse) const {
    LayerwiseResult result;
    result.initial_mse = full_mse();
    std::vector<Matrix> start, best;
    for (const Parameter& p : params) start.push_back(*p.value);
    best = start;
    double best_mse = result.initial_mse;

    AdamW adamw({.lr = options_.lr, .weight_decay = options_.weight_decay});
    Sgd sgd({.lr = options_.lr, .momentum = options_.momentum});
    const CosineSchedule cosine{.base_lr = options_.lr,
                                .total_steps = options_.steps + 1,
                                .warmup_steps = options_.warmup_steps};
    const LinearWarmupSchedule constant{.base_lr = options_.lr,
                                        .warmup_steps = options_.warmup_steps};

    const bool full_batch = options_.batch_size == 0 || options_.batch_size >= x_.rows();
    random::Generator generator(options_.seed);
    std::vector<Index> order(static_cast<std::size_t>(x_.rows()));
    std::iota(order.begin(), order.end(), Index{0});
    std::size_t cursor = order.size();
    Matrix xb, yb;
    if (!full_batch) {
      xb.resize(options_.batch_size, x_.cols());
      yb.resize(options_.batch_size, y_.cols());
    }

    for (std::int64_t step = 0; step < options_.steps; ++step) {
      double loss = 0.0;
      if (full_batch) {
        loss = loss_and_gradient(x_, y_);
        // The loss is that of the parameters before this update: track the best of them.
        if (loss < best_mse) {
          best_mse = loss;
          for (std::size_t i = 0; i < params.size(); ++i) best[i] = *params[i].value;
        }
      } else {
        for (Index b = 0; b < options_.batch_size; ++b) {
          if (cursor == order.size()) {  // new epoch: Fisher-Yates shuffle
            for (std::size_t i = order.size() - 1; i > 0; --i) {
              std::swap(order[i], order[generator.below(i + 1)]);
            }
            cursor = 0;
          }
          xb.row(b) = x_.row(order[cursor]);
          yb.row(b) = y_.row(order[cursor]);
          ++cursor;
        }
        loss = loss_and_gradient(xb, yb);
      }
      result.history.push_back(loss);
      if (!std::isfinite(loss)) break;  // diverged: the best iterate is restored below
      if (options_.max_gradient_norm > 0.0) clip_gradient_norm(params, options_.max_gradient_norm);
      // Step `step` (0-based) uses the schedule at step + 1 so that warmup never takes a 0 step.
      const double lr = options_.cosine_decay ? cosine(step + 1) : constant(step + 1);
      if (options_.optimizer == OptimizerKind::adamw) {
        adamw.step(params, lr);
      } else {
        sgd.step(params, lr);
      }
      ++result.steps;
    }

    double final_mse = full_mse();
    if (!(final_mse < best_mse)) {
      // An earlier iterate (or the start) was better: restore it and re-evaluate.
      for (std::size_t i = 0; i < params.size(); ++i) *params[i].value = best[i];
      final_mse = full_mse();
    }
    result.final_mse = final_mse;
    result.improved = final_mse < result.initial_mse;
    if (!result.improved) {
      for (std::size_t i = 0; i < params.size(); ++i) *params[i].value = start[i];
      result.final_mse = full_mse();
    }
    return result;
  }

  Matrix x_;
  Matrix y_;
  LayerwiseOptions options_;
};

}  // namespace slim::distill

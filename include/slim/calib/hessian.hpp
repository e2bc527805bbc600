// Streaming accumulation of the layer-reconstruction Hessian H = (2/n) X^T X over batches of
// calibration rows (tokens x in_features), as GPTQ, SparseGPT, OBS and SVD-LLM use it. The
// running average follows GPTQ's reference `add_batch`: H <- H * n/(n+m) + (2/(n+m)) X_b^T X_b,
// so batches of any size give the one-shot result. Memory is in^2, never n x in.
#pragma once

#include <slim/core/checks.hpp>
#include <slim/core/error.hpp>
#include <slim/core/types.hpp>

#include <cstdint>

namespace slim::calib {

struct HessianOptions {
  bool double_precision = false;  // accumulate in double (for long calibration runs)
};

class Hessian {
 public:
  explicit Hessian(Index in_features, HessianOptions options = {})
      : in_(in_features), options_(options) {
    require<ArgumentError>(in_features > 0, "calib::Hessian: in_features ", in_features,
                           " must be positive");
    if (options_.double_precision) {
      lower_d_ = MatrixD::Zero(in_, in_);
    } else {
      lower_f_ = Matrix::Zero(in_, in_);
    }
  }

  // Adds a batch of rows (tokens x in_features). A batch of zero rows changes nothing.
  template <typename Derived>
  void add(const Eigen::MatrixBase<Derived>& batch) {
    require<ShapeError>(batch.cols() == in_, "calib::Hessian::add: batch has ", batch.cols(),
                        " columns; expected in_features ", in_);
    require_finite(batch, "calib::Hessian::add: batch");
    const Index m = batch.rows();
    if (m == 0) return;
    const double total = static_cast<double>(samples_ + m);
    const double keep = static_cast<double>(samples_) / total;
    const double weight = 2.0 / total;
    // Only the lower triangle is maintained (rankUpdate); matrix() mirrors it.
    if (options_.double_precision) {
      lower_d_ *= keep;
      lower_d_.selfadjointView<Eigen::Lower>().rankUpdate(batch.template cast<double>().transpose(),
                                                          weight);
    } else {
      lower_f_ *= static_cast<float>(keep);
      lower_f_.selfadjointView<Eigen::Lower>().rankUpdate(batch.template cast<float>().transpose(),
                                                          static_cast<float>(weight));
    }
    samples_ += m;
  }

  Index in_features() const { return in_; }
  std::int64_t samples() const { return samples_; }

  // H = (2/n) X^T X (symmetric, full). Throws ArgumentError if no rows were added.
  Matrix matrix() const {
    require_samples();
    if (options_.double_precision) return matrix_double().cast<float>();
    Matrix h = lower_f_;  // mirror the lower triangle (selfadjointView's copy is ~50x slower)
    h.triangularView<Eigen::StrictlyUpper>() = lower_f_.transpose();
    return h;
  }
  MatrixD matrix_double() const {
    require_samples();
    if (!options_.double_precision) return matrix().cast<double>();
    MatrixD h = lower_d_;
    h.triangularView<Eigen::StrictlyUpper>() = lower_d_.transpose();
    return h;
  }

 private:
  void require_samples() const {
    require<ArgumentError>(samples_ > 0,
                           "calib::Hessian: no calibration rows were added; expected at least one");
  }

  Index in_;
  HessianOptions options_;
  std::int64_t samples_ = 0;
  Matrix lower_f_;
  MatrixD lower_d_;
};

}  // namespace slim::calib

// Per-input-channel statistics of calibration activations, streamed over batches: L2 norm
// ||X_j||_2 over all rows (Wanda's score), mean |x| (AWQ, ASVD) and max |x| (SmoothQuant).
// Sums are kept in double.
#pragma once

#include <slim/core/checks.hpp>
#include <slim/core/error.hpp>
#include <slim/core/types.hpp>

#include <cmath>
#include <cstdint>

namespace slim::calib {

class ActivationStats {
 public:
  explicit ActivationStats(Index in_features) : in_(in_features) {
    require<ArgumentError>(in_features > 0, "calib::ActivationStats: in_features ", in_features,
                           " must be positive");
    sum_squares_ = VectorD::Zero(in_);
    sum_abs_ = VectorD::Zero(in_);
    max_abs_ = VectorD::Zero(in_);
  }

  template <typename Derived>
  void add(const Eigen::MatrixBase<Derived>& batch) {
    require<ShapeError>(batch.cols() == in_, "calib::ActivationStats::add: batch has ",
                        batch.cols(), " columns; expected in_features ", in_);
    require_finite(batch, "calib::ActivationStats::add: batch");
    const MatrixD x = batch.template cast<double>();
    sum_squares_ += x.cwiseAbs2().colwise().sum().transpose();
    sum_abs_ += x.cwiseAbs().colwise().sum().transpose();
    if (x.rows() > 0) max_abs_ = max_abs_.cwiseMax(x.cwiseAbs().colwise().maxCoeff().transpose());
    samples_ += x.rows();
  }

  Index in_features() const { return in_; }
  std::int64_t samples() const { return samples_; }

  // ||X_j||_2 over every row seen.
  Vector l2_norm() const {
    require_samples();
    return sum_squares_.cwiseSqrt().cast<float>();
  }
  // mean over rows of |X_ij|.
  Vector mean_abs() const {
    require_samples();
    return (sum_abs_ / static_cast<double>(samples_)).cast<float>();
  }
  // max over rows of |X_ij|.
  Vector max_abs() const {
    require_samples();
    return max_abs_.cast<float>();
  }

 private:
  void require_samples() const {
    require<ArgumentError>(samples_ > 0,
                           "calib::ActivationStats: no calibration rows were added;"
                           " expected at least one");
  }

  Index in_;
  std::int64_t samples_ = 0;
  VectorD sum_squares_;
  VectorD sum_abs_;
  VectorD max_abs_;
};

}  // namespace slim::calib

// lowrank::Linear: the factorized layer Y = (X V^T) U^T (+ X S^T for a sparse residual), two
// thin Eigen GEMMs costing T r (in + out) MACs instead of T out in.
#pragma once

#include <slim/core/linear.hpp>
#include <slim/lowrank/dense_sparse.hpp>
#include <slim/lowrank/factors.hpp>

#include <string>
#include <utility>

namespace slim::lowrank {

class Linear final : public LinearLayer {
 public:
  explicit Linear(Factors factors) : factors_(std::move(factors)) {
    require<ShapeError>(factors_.U.cols() == factors_.V.rows() && factors_.rank() > 0,
                        "lowrank::Linear: U is ", factors_.U.rows(), " x ", factors_.U.cols(),
                        " and V is ", factors_.V.rows(), " x ", factors_.V.cols(),
                        "; expected U out x r and V r x in with r > 0");
  }
  explicit Linear(DenseSparse split) : Linear(std::move(split.factors)) {
    require<ShapeError>(
        split.sparse.rows() == out_features() && split.sparse.cols() == in_features(),
        "lowrank::Linear: sparse residual is ", split.sparse.rows(), " x ", split.sparse.cols(),
        "; expected ", out_features(), " x ", in_features());
    sparse_ = std::move(split.sparse);
    has_sparse_ = sparse_.nonZeros() > 0;
  }

  Index in_features() const override { return factors_.in_features(); }
  Index out_features() const override { return factors_.out_features(); }
  Index rank() const { return factors_.rank(); }
  const Factors& factors() const { return factors_; }

  void forward(const Eigen::Ref<const Matrix>& x, Matrix& y) const override {
    check_input(x);
    Matrix hidden;
    hidden.noalias() = x * factors_.V.transpose();
    y.noalias() = hidden * factors_.U.transpose();
    if (has_sparse_) y.noalias() += (sparse_ * x.transpose()).transpose();
  }

  std::size_t bytes() const override {
    std::size_t b = sizeof(float) * static_cast<std::size_t>(factors_.params());
    if (has_sparse_) {
      b += static_cast<std::size_t>(sparse_.nonZeros()) * (sizeof(float) + sizeof(int)) +
           sizeof(int) * static_cast<std::size_t>(sparse_.rows() + 1);
    }
    return b;
  }

  std::string describe() const override {
    return "low-rank r" + std::to_string(rank()) + (has_sparse_ ? " + sparse" : "");
  }

 private:
  Factors factors_;
  SparseMatrix sparse_;
  bool has_sparse_ = false;
};

}  // namespace slim::lowrank

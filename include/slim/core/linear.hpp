// The one small interface through which a compressed layer replaces a dense one: anything that
// computes Y = X W^T for X of tokens x in_features (quant::Linear, sparse and low-rank linears,
// the dense baseline) implements LinearLayer, and the reference model calls only this.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/types.hpp>

#include <cstddef>
#include <string>

namespace slim {

class LinearLayer {
 public:
  virtual ~LinearLayer() = default;
  virtual Index in_features() const = 0;
  virtual Index out_features() const = 0;
  // Y (tokens x out_features) = X (tokens x in_features) * W^T. Y is resized by the callee.
  virtual void forward(const Eigen::Ref<const Matrix>& x, Matrix& y) const = 0;
  // Bytes the layer's parameters occupy in the form forward() reads them.
  virtual std::size_t bytes() const = 0;
  // A short human-readable description, e.g. "dense fp32" or "int4 g128 asym".
  virtual std::string describe() const = 0;

  Matrix operator()(const Eigen::Ref<const Matrix>& x) const {
    Matrix y;
    forward(x, y);
    return y;
  }

 protected:
  void check_input(const Eigen::Ref<const Matrix>& x) const {
    require<ShapeError>(x.cols() == in_features(), describe(), ": input has ", x.cols(),
                        " columns; expected in_features ", in_features());
  }
};

// The uncompressed baseline: an fp32 weight and Eigen's GEMM.
class DenseLinear final : public LinearLayer {
 public:
  explicit DenseLinear(Matrix weight) : weight_(std::move(weight)) {}
  Index in_features() const override { return weight_.cols(); }
  Index out_features() const override { return weight_.rows(); }
  void forward(const Eigen::Ref<const Matrix>& x, Matrix& y) const override {
    check_input(x);
    y.noalias() = x * weight_.transpose();
  }
  std::size_t bytes() const override {
    return sizeof(float) * static_cast<std::size_t>(weight_.size());
  }
  std::string describe() const override { return "dense fp32"; }
  const Matrix& weight() const { return weight_; }

 private:
  Matrix weight_;
};

}  // namespace slim

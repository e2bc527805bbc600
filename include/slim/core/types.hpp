// Core aliases shared by every module. A linear layer's weight is out_features x in_features,
// row-major (PyTorch nn.Linear, safetensors, llama2.c); activations are tokens x in_features
// and the layer computes Y = X * W^T.
#pragma once

#include <Eigen/Core>

#include <cstddef>
#include <cstdint>

namespace slim {

using Index = Eigen::Index;
using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vector = Eigen::VectorXf;
using VectorD = Eigen::VectorXd;
using RowVector = Eigen::RowVectorXf;
using IndexVector = Eigen::Matrix<Index, Eigen::Dynamic, 1>;

}  // namespace slim

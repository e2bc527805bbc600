// Hidden-state distillation losses with analytic gradients (rows = positions): mean squared error,
// DistilBERT's cosine embedding loss 1 - cos(h_s, h_t) (Sanh et al. 2019, torch
// CosineEmbeddingLoss with target 1), and TinyBERT's MSE(H_S W_h, H_T) through a learned projection
// W_h when the widths differ (Jiao et al. 2020, eq. 8), with the projection's gradient as well.
#pragma once

#include <slim/core/checks.hpp>
#include <slim/core/error.hpp>
#include <slim/core/types.hpp>
#include <slim/distill/loss.hpp>

#include <cmath>
#include <string>

namespace slim::distill {

namespace detail {

template <typename DS, typename DT>
void check_hidden(const Eigen::MatrixBase<DS>& student, const Eigen::MatrixBase<DT>& teacher,
                  const char* fn) {
  require_same_shape(student, teacher, fn);
  require_nonempty(student, fn);
  require_finite(student, (std::string(fn) + ": student hidden states").c_str());
  require_finite(teacher, (std::string(fn) + ": teacher hidden states").c_str());
}

// MSE in double: L = sum_i f_i (1/d) ||s_i - t_i||^2, gradient 2 f_i (s_i - t_i) / d.
inline double mse_double(const MatrixD& s, const MatrixD& t, const VectorD& f, MatrixD& grad) {
  const double d = static_cast<double>(s.cols());
  grad = s - t;
  double value = 0.0;
  for (Index i = 0; i < s.rows(); ++i) {
    value += f[i] * grad.row(i).squaredNorm() / d;
    grad.row(i) *= 2.0 * f[i] / d;
  }
  return value;
}

}  // namespace detail

// Mean squared error per element, averaged over the kept rows with their weights (equal to
// torch.nn.MSELoss() without weights): L = sum_i f_i (1/d) sum_j (s_ij - t_ij)^2.
template <typename DS, typename DT>
Loss<typename DS::Scalar> mse_loss(const Eigen::MatrixBase<DS>& student,
                                   const Eigen::MatrixBase<DT>& teacher,
                                   const RowWeights& rows = {}) {
  detail::check_hidden(student, teacher, "mse_loss");
  const VectorD f = detail::row_factors(student.rows(), rows, "mse_loss");
  MatrixD grad;
  const double value =
      detail::mse_double(student.template cast<double>(), teacher.template cast<double>(), f, grad);
  return {value, grad.cast<typename DS::Scalar>()};
}

// Cosine embedding loss: L = sum_i f_i (1 - cos(s_i, t_i)),
//   dL/ds_i = -f_i (t_i / (|s_i| |t_i|) - cos_i s_i / |s_i|^2).
// A kept row with zero norm has no direction: NumericalError.
template <typename DS, typename DT>
Loss<typename DS::Scalar> cosine_embedding_loss(const Eigen::MatrixBase<DS>& student,
                                                const Eigen::MatrixBase<DT>& teacher,
                                                const RowWeights& rows = {}) {
  detail::check_hidden(student, teacher, "cosine_embedding_loss");
  const VectorD f = detail::row_factors(student.rows(), rows, "cosine_embedding_loss");
  const MatrixD s = student.template cast<double>();
  const MatrixD t = teacher.template cast<double>();
  MatrixD grad = MatrixD::Zero(s.rows(), s.cols());
  double value = 0.0;
  for (Index i = 0; i < s.rows(); ++i) {
    if (f[i] == 0.0) continue;
    const double ns = s.row(i).norm();
    const double nt = t.row(i).norm();
    require<NumericalError>(ns > 0.0 && nt > 0.0, "cosine_embedding_loss: row ", i,
                            " has zero norm (student ", ns, ", teacher ", nt,
                            "); expected non-zero vectors or the row masked");
    const double cos = s.row(i).dot(t.row(i)) / (ns * nt);
    value += f[i] * (1.0 - cos);
    grad.row(i) = -f[i] * (t.row(i) / (ns * nt) - (cos / (ns * ns)) * s.row(i));
  }
  return {value, grad.cast<typename DS::Scalar>()};
}

// Value and gradients of a loss through a projection: gradient w.r.t. the student's input and
// w.r.t. the projection matrix.
template <typename Scalar>
struct ProjectedLoss {
  double value = 0.0;
  MatrixOf<Scalar> gradient;             // d L / d student, tokens x student_width
  MatrixOf<Scalar> projection_gradient;  // d L / d projection, student_width x teacher_width
};

// TinyBERT hidden-state loss: L = MSE(H_S W_h, H_T) with H_S tokens x d_s, W_h d_s x d_t,
// H_T tokens x d_t. With G = dMSE/d(H_S W_h): dL/dH_S = G W_h^T, dL/dW_h = H_S^T G.
template <typename DS, typename DP, typename DT>
ProjectedLoss<typename DS::Scalar> projected_mse_loss(const Eigen::MatrixBase<DS>& student,
                                                      const Eigen::MatrixBase<DP>& projection,
                                                      const Eigen::MatrixBase<DT>& teacher,
                                                      const RowWeights& rows = {}) {
  require<ShapeError>(projection.rows() == student.cols(), "projected_mse_loss: projection has ",
                      projection.rows(), " rows but the student width is ", student.cols(),
                      "; expected equal");
  require<ShapeError>(projection.cols() == teacher.cols(), "projected_mse_loss: projection has ",
                      projection.cols(), " columns but the teacher width is ", teacher.cols(),
                      "; expected equal");
  require<ShapeError>(student.rows() == teacher.rows(), "projected_mse_loss: student has ",
                      student.rows(), " rows but teacher has ", teacher.rows(), "; expected equal");
  require_nonempty(student, "projected_mse_loss: student hidden states");
  require_nonempty(teacher, "projected_mse_loss: teacher hidden states");
  require_finite(student, "projected_mse_loss: student hidden states");
  require_finite(projection, "projected_mse_loss: projection");
  require_finite(teacher, "projected_mse_loss: teacher hidden states");
  const VectorD f = detail::row_factors(student.rows(), rows, "projected_mse_loss");
  const MatrixD s = student.template cast<double>();
  const MatrixD w = projection.template cast<double>();
  MatrixD g;
  const double value = detail::mse_double(s * w, teacher.template cast<double>(), f, g);
  using Scalar = typename DS::Scalar;
  ProjectedLoss<Scalar> out;
  out.value = value;
  out.gradient = (g * w.transpose()).cast<Scalar>();
  out.projection_gradient = (s.transpose() * g).cast<Scalar>();
  return out;
}

}  // namespace slim::distill

// Layer-wise distillation on the trained reference model's real weights and real captured
// activations: fit on the first half of the calibration tokens, judge on the held-out second half,
// against the compression's own starting point and the closed-form optimum of the same objective.
#include <slim/core/metrics.hpp>
#include <slim/distill/trainer.hpp>
#include <slim/quant/rtn.hpp>

#include "support/reference_model.hpp"

#include <gtest/gtest.h>
#include <Eigen/Cholesky>
#include <Eigen/SVD>

#include <algorithm>
#include <cstdio>

namespace {

using slim::Index;
using slim::Matrix;
using slim::MatrixD;
namespace distill = slim::distill;

const int kSingleThreaded = (Eigen::setNbThreads(1), 0);

struct Split {
  Matrix w, train, held_out;
};

Split split_layer(const char* name) {
  Split s;
  s.w = slim::test::reference_model().linear_weight(name);
  const Matrix x = slim::test::reference_activations(name, 1024);
  const Index half = x.rows() / 2;
  s.train = x.topRows(half);
  s.held_out = x.bottomRows(x.rows() - half);
  return s;
}

// SVD-LLM's whitened truncation, the optimum of min_{rank <= r} ||X (W - W~)^T||_F on `x`:
// X^T X = S S^T (Cholesky, dampened by 1e-8 of the mean diagonal for dead channels),
// W~ = trunc_r(W S) S^{-1}.
Matrix whitened_low_rank(const Matrix& w, const Matrix& x, Index rank) {
  const MatrixD xd = x.cast<double>();
  MatrixD gram = xd.transpose() * xd;
  gram.diagonal().array() += 1e-8 * gram.diagonal().mean();
  const Eigen::LLT<MatrixD> llt(gram);
  EXPECT_EQ(llt.info(), Eigen::Success);
  const MatrixD s = llt.matrixL();
  Eigen::BDCSVD<MatrixD> svd(w.cast<double>() * s, Eigen::ComputeThinU | Eigen::ComputeThinV);
  const MatrixD truncated = svd.matrixU().leftCols(rank) *
                            svd.singularValues().head(rank).asDiagonal() *
                            svd.matrixV().leftCols(rank).transpose();
  return s.transpose()
      .triangularView<Eigen::Upper>()
      .solve(truncated.transpose())
      .transpose()
      .cast<float>();
}

TEST(LayerwiseTrainerOnReferenceModel, LowRankDistillationBeatsSvdOnHeldOutTokens) {
  for (const char* name : {"layers.0.attention.wq", "layers.1.feed_forward.w2"}) {
    SCOPED_TRACE(name);
    const Split layer = split_layer(name);
    const Index rank = std::min(layer.w.rows(), layer.w.cols()) / 4;
    Eigen::BDCSVD<MatrixD> svd(layer.w.cast<double>(), Eigen::ComputeThinU | Eigen::ComputeThinV);
    const Eigen::VectorXd root = svd.singularValues().head(rank).cwiseSqrt();
    Matrix u = (svd.matrixU().leftCols(rank) * root.asDiagonal()).cast<float>();
    Matrix v = (root.asDiagonal() * svd.matrixV().leftCols(rank).transpose()).cast<float>();
    const double svd_error = slim::metrics::output_error(layer.held_out, layer.w, u * v);
    const double optimum_error = slim::metrics::output_error(
        layer.held_out, layer.w, whitened_low_rank(layer.w, layer.train, rank));

    const distill::LayerwiseTrainer trainer(layer.train, layer.train * layer.w.transpose(),
                                            {.steps = 1500});
    EXPECT_TRUE(trainer.fit_low_rank(u, v).improved);
    const double distilled_error = slim::metrics::output_error(layer.held_out, layer.w, u * v);
    std::printf(
        "%s rank %ld, held-out output error: SVD %.4f, distilled %.4f, whitened "
        "closed form %.4f (distilled / closed form = %.3f)\n",
        name, static_cast<long>(rank), svd_error, distilled_error, optimum_error,
        distilled_error / optimum_error);
    // How far below SVD any rank-r layer can get depends on the layer (on wq even the optimum is
    // only ~17% below SVD), so the 20% margin is asserted on the synthetic check in trainer.cpp;
    // here distillation must beat SVD and reach the optimum fitted on the same tokens.
    EXPECT_LT(distilled_error, svd_error);
    EXPECT_LE(distilled_error, 1.05 * optimum_error);
  }
}

TEST(LayerwiseTrainerOnReferenceModel, ScaleDistillationBeatsRtnOnHeldOutTokens) {
  for (const char* name : {"layers.0.attention.wq", "layers.1.feed_forward.w2"}) {
    SCOPED_TRACE(name);
    const Split layer = split_layer(name);
    auto q = slim::quant::quantize(layer.w, slim::quant::int4_group(16));
    const double rtn_error = slim::metrics::output_error(layer.held_out, layer.w, q.dequantize());
    const distill::LayerwiseTrainer trainer(layer.train, layer.train * layer.w.transpose(),
                                            {.steps = 1000});
    EXPECT_TRUE(trainer.fit_quantized_scales(q).improved);
    const double distilled_error =
        slim::metrics::output_error(layer.held_out, layer.w, q.dequantize());
    std::printf("%s int4 g16, held-out output error: RTN %.4f, distilled scales %.4f\n", name,
                rtn_error, distilled_error);
    EXPECT_LT(distilled_error, rtn_error);
  }
}

}  // namespace

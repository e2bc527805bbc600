// One short use of every module on one layer with structured activations: the README's snippets,
// compiled and run so that they cannot rot.
#include <slim/calib.hpp>
#include <slim/core.hpp>
#include <slim/cost.hpp>
#include <slim/distill.hpp>
#include <slim/lowrank.hpp>
#include <slim/prune.hpp>
#include <slim/quant.hpp>

#include <cstdio>

int main() {
  const slim::Matrix w = slim::random::gaussian(256, 512, /*seed=*/1, /*stddev=*/0.05);
  const slim::Matrix x = slim::random::correlated_activations(1024, 512, /*seed=*/2);
  slim::calib::Hessian h(w.cols());
  h.add(x);

  auto q = slim::quant::gptq(w, h, {.scheme = slim::quant::int4_group(32)}).quantized;
  slim::quant::Linear layer(q, {.threads = 2});  // int4 weights, int8 activations
  const slim::Matrix y = layer(x);
  std::printf(
      "GPTQ int4 g32   %.2f bits/weight, output error %.4f; int8 activations on the kernel add "
      "%.1e\n"
      "                (outlier channels: what SmoothQuant is for)\n",
      q.bits_per_weight(), slim::metrics::output_error(x, w, q.dequantize()),
      slim::metrics::relative_frobenius(slim::Matrix(x * q.dequantize().transpose()), y));

  auto nf4 = slim::quant::quantize_nf4(w, {.block_size = 64});
  auto blocks = slim::quant::ggml::quantize(w, slim::quant::ggml::Format::q4_K);
  std::printf("NF4             %.2f bits/weight, weight error %.4f\n", nf4.bits_per_weight(),
              slim::metrics::relative_frobenius(w, nf4.dequantize()));
  std::printf("ggml Q4_K       %zu bytes, weight error %.4f\n", blocks.bytes(),
              slim::metrics::relative_frobenius(w, blocks.dequantize()));

  auto pruned = slim::prune::sparsegpt(w, h.matrix(), {.pattern = slim::prune::Pattern::n_m(2, 4)});
  auto sparse = slim::prune::SparseLinear::n_m(pruned.weight, pruned.mask, 2, 4);
  std::printf("SparseGPT 2:4   %zu bytes, output error %.4f\n", sparse.bytes(),
              slim::metrics::output_error(x, w, pruned.weight));

  auto factors =
      slim::lowrank::svd_llm(w, h, slim::lowrank::rank_for_budget(w.rows(), w.cols(), 0.5));
  slim::lowrank::Linear low_rank(factors.factors);
  std::printf("SVD-LLM 50%%     rank %ld, %zu bytes, output error %.4f\n",
              static_cast<long>(low_rank.rank()), low_rank.bytes(),
              slim::metrics::output_error(x, w, factors.factors.reconstruct()));

  const slim::Matrix teacher = slim::random::gaussian(8, 100, 3);
  const slim::Matrix student = slim::random::gaussian(8, 100, 4);
  auto kd = slim::distill::kd_loss(student, teacher, {.temperature = 2.0});
  std::printf("KD loss T=2     %.4f, gradient norm %.4f\n", kd.value, kd.gradient.norm());

  const slim::cost::Measurement baseline{10.0, 1.0, 1.0, 4.0};
  const slim::cost::Measurement candidate{10.5, 0.4, 0.3, 1.0};
  std::printf("score           %.3f (balanced; baseline 1)\n",
              slim::cost::score(candidate, baseline, slim::cost::ScoreWeights::balanced()));
}

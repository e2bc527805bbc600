// NF4 and ggml block formats (Q8_0, Q4_0, Q4_1, Q4_K): quantization and dequantization
// throughput on a 1024 x 4096 layer, single-threaded, beside the dense fp32 Eigen layer
// Y = X W^T (8 tokens) in the same run. Counter `x_fp32_matmul` is each benchmark's time per
// iteration divided by the dense matmul's (measured once, best of 20) — what one pass of the
// format costs compared with one dense fp32 forward of the same layer.
#include <slim/core.hpp>
#include <slim/quant/ggml.hpp>
#include <slim/quant/nf4.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>

namespace {

namespace ggml = slim::quant::ggml;

const slim::Matrix& weights() {
  static const slim::Matrix w = slim::random::gaussian(1024, 4096, 1, 0.02);
  return w;
}
const slim::Matrix& activations() {
  static const slim::Matrix x = slim::random::gaussian(8, 4096, 2);
  return x;
}

double dense_matmul_seconds() {
  static const double seconds = [] {
    Eigen::setNbThreads(1);  // every benchmark here is single-threaded
    slim::Matrix y(activations().rows(), weights().rows());
    double best = 1e30;
    for (int i = 0; i < 20; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      y.noalias() = activations() * weights().transpose();
      benchmark::DoNotOptimize(y.data());
      const auto t1 = std::chrono::steady_clock::now();
      best = std::min(best, std::chrono::duration<double>(t1 - t0).count());
    }
    return best;
  }();
  return seconds;
}

// Runs `body` under the benchmark loop and reports throughput and the ratio to the dense layer.
template <typename Body>
void run(benchmark::State& state, Body body) {
  const double baseline = dense_matmul_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) body();
  const auto t1 = std::chrono::steady_clock::now();
  const double per_iter =
      std::chrono::duration<double>(t1 - t0).count() / static_cast<double>(state.iterations());
  state.counters["x_fp32_matmul"] = per_iter / baseline;
  state.SetItemsProcessed(state.iterations() * weights().size());
}

void BM_DenseMatmulBaseline(benchmark::State& state) {
  slim::Matrix y(activations().rows(), weights().rows());
  run(state, [&] {
    y.noalias() = activations() * weights().transpose();
    benchmark::DoNotOptimize(y.data());
  });
}
BENCHMARK(BM_DenseMatmulBaseline)->Unit(benchmark::kMillisecond);

void BM_QuantizeNf4(benchmark::State& state) {
  const slim::quant::Nf4Options options{.block_size = 64, .double_quant = state.range(0) != 0};
  run(state, [&] {
    auto q = slim::quant::quantize_nf4(weights(), options);
    benchmark::DoNotOptimize(q.packed_codes().data());
  });
  state.SetLabel(options.double_quant ? "nf4 g64 double-quant" : "nf4 g64");
}
BENCHMARK(BM_QuantizeNf4)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

void BM_DequantizeNf4(benchmark::State& state) {
  const auto q = slim::quant::quantize_nf4(weights());
  run(state, [&] {
    auto w = q.dequantize();
    benchmark::DoNotOptimize(w.data());
  });
}
BENCHMARK(BM_DequantizeNf4)->Unit(benchmark::kMillisecond);

void BM_QuantizeGgml(benchmark::State& state) {
  const auto format = static_cast<ggml::Format>(state.range(0));
  run(state, [&] {
    auto q = ggml::quantize(weights(), format);
    benchmark::DoNotOptimize(q.data.data());
  });
  state.SetLabel(ggml::format_info(format).name);
}
BENCHMARK(BM_QuantizeGgml)
    ->Arg(static_cast<int>(ggml::Format::q8_0))
    ->Arg(static_cast<int>(ggml::Format::q4_0))
    ->Arg(static_cast<int>(ggml::Format::q4_1))
    ->Arg(static_cast<int>(ggml::Format::q4_K))
    ->Unit(benchmark::kMillisecond);

void BM_DequantizeGgml(benchmark::State& state) {
  const auto format = static_cast<ggml::Format>(state.range(0));
  const auto q = ggml::quantize(weights(), format);
  run(state, [&] {
    auto w = q.dequantize();
    benchmark::DoNotOptimize(w.data());
  });
  state.SetLabel(ggml::format_info(format).name);
}
BENCHMARK(BM_DequantizeGgml)
    ->Arg(static_cast<int>(ggml::Format::q8_0))
    ->Arg(static_cast<int>(ggml::Format::q4_0))
    ->Arg(static_cast<int>(ggml::Format::q4_1))
    ->Arg(static_cast<int>(ggml::Format::q4_K))
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

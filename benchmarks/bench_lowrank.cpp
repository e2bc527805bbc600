// Low-rank factorization speed: randomized SVD against Eigen's exact BDCSVD on 4096x4096 at rank
// 256 (speed-up and error ratio), and lowrank::Linear at rank 1024 (25% of 4096: half the
// parameters) against the dense fp32 Eigen product Y = X W^T for T = 1, 64 and 512 tokens, with
// fp32 factors (lowrank::Linear) and with 8-bit per-channel and 4-bit g128 factors on the
// quantized kernels with int8 activations (lowrank::QuantizedLinear), one thread.
#include <slim/core.hpp>
#include <slim/lowrank.hpp>

#include <benchmark/benchmark.h>

#include <chrono>

namespace {

constexpr slim::Index kWidth = 4096;

const slim::Matrix& weight() {
  // A trained-like spectrum: Gaussian matrix times a decaying column scaling.
  static const slim::Matrix w = [] {
    slim::Matrix m = slim::random::gaussian(kWidth, kWidth, 1, 0.02);
    for (slim::Index c = 0; c < kWidth; ++c) m.col(c) *= std::exp(-static_cast<float>(c) / 512.0f);
    return m;
  }();
  return w;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// One BDCSVD and one randomized SVD in the same run; reports both times, the speed-up and the
// ratio of their rank-256 errors (Eckart-Young: the exact one is optimal, the ratio is >= 1).
void BM_RandomizedVsExactSvd(benchmark::State& state) {
  const slim::Matrix& w = weight();
  const slim::Index rank = state.range(0);
  for (auto _ : state) {
    auto start = std::chrono::steady_clock::now();
    const auto exact = slim::lowrank::truncated_svd(w, rank);
    const double exact_s = seconds_since(start);
    start = std::chrono::steady_clock::now();
    const auto fast = slim::lowrank::randomized_svd(w, rank);
    const double fast_s = seconds_since(start);
    state.counters["bdcsvd_s"] = exact_s;
    state.counters["randomized_s"] = fast_s;
    state.counters["speedup"] = exact_s / fast_s;
    state.counters["error_ratio"] =
        (w - fast.factors.reconstruct()).norm() / (w - exact.factors.reconstruct()).norm();
  }
}
BENCHMARK(BM_RandomizedVsExactSvd)->Arg(256)->Iterations(1)->Unit(benchmark::kSecond);

void BM_DenseLinear(benchmark::State& state) {
  const slim::Matrix& w = weight();
  const slim::Matrix x = slim::random::gaussian(state.range(0), kWidth, 2);
  slim::Matrix y;
  for (auto _ : state) {
    y.noalias() = x * w.transpose();
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_DenseLinear)->Arg(1)->Arg(64)->Arg(512)->Unit(benchmark::kMicrosecond)->UseRealTime();

// Seconds per dense fp32 product x W^T, timed in the calling run for the speed-up counters.
double dense_seconds(const slim::Matrix& x, slim::Matrix& y) {
  const slim::Matrix& w = weight();
  int reps = 0;
  const auto start = std::chrono::steady_clock::now();
  while (reps < 3 || seconds_since(start) < 0.3) {
    y.noalias() = x * w.transpose();
    benchmark::DoNotOptimize(y.data());
    ++reps;
  }
  return seconds_since(start) / reps;
}

const slim::lowrank::Factors& factors() {
  static const slim::lowrank::Factors f =
      slim::lowrank::randomized_svd(weight(), kWidth / 4).factors;
  return f;
}

// Runs `layer` on T = state.range(0) tokens and reports its speed-up over the dense product,
// the FLOP ratio and the parameter bytes against the dense fp32 weight.
void run_layer(benchmark::State& state, const slim::LinearLayer& layer, slim::Index rank) {
  const slim::Matrix x = slim::random::gaussian(state.range(0), kWidth, 2);
  slim::Matrix y;
  const double dense_s = dense_seconds(x, y);
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    layer.forward(x, y);
    benchmark::DoNotOptimize(y.data());
  }
  const double layer_s = seconds_since(start) / static_cast<double>(state.iterations());
  state.counters["speedup_vs_dense"] = dense_s / layer_s;
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.counters["flop_ratio"] =
      static_cast<double>(kWidth) * kWidth / (static_cast<double>(rank) * 2 * kWidth);
  state.counters["bytes_ratio"] =
      static_cast<double>(sizeof(float)) * kWidth * kWidth / static_cast<double>(layer.bytes());
  state.SetLabel(layer.describe());
}

void BM_LowRankLinear(benchmark::State& state) {
  static const slim::lowrank::Linear layer(factors());
  run_layer(state, layer, layer.rank());
}
BENCHMARK(BM_LowRankLinear)
    ->Arg(1)
    ->Arg(64)
    ->Arg(512)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

void BM_LowRankInt8Factors(benchmark::State& state) {
  static const slim::lowrank::QuantizedLinear layer(factors(), slim::quant::int8_per_channel());
  run_layer(state, layer, layer.rank());
}
BENCHMARK(BM_LowRankInt8Factors)
    ->Arg(1)
    ->Arg(64)
    ->Arg(512)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

void BM_LowRankInt4Factors(benchmark::State& state) {
  static const slim::lowrank::QuantizedLinear layer(factors(), slim::quant::int4_group(128));
  run_layer(state, layer, layer.rank());
}
BENCHMARK(BM_LowRankInt4Factors)
    ->Arg(1)
    ->Arg(64)
    ->Arg(512)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();

// The roofline (slim/cost) against the dense fp32 Eigen baseline Y = X W^T on this machine: each
// shape reports `roofline_fraction` = predicted / measured time (1 = the kernel runs at the
// bound, 0.5 = twice slower than the bound), with the Machine measured once by measure_machine().
#include <slim/core.hpp>
#include <slim/cost.hpp>

#include <benchmark/benchmark.h>

namespace {

namespace cost = slim::cost;

const cost::Machine& machine() {
  static const cost::Machine measured = cost::measure_machine();
  return measured;
}

// What measure_machine() finds, as counters (one iteration: it takes about a second).
void BM_MeasureMachine(benchmark::State& state) {
  cost::Machine m;
  for (auto _ : state) m = cost::measure_machine();
  state.counters["fp32_GFLOPs"] = m.peak_fp32_flops / 1e9;
  state.counters["dram_GBs"] = m.memory_bandwidth / 1e9;
  state.counters["cache_GBs"] = m.cache_bandwidth / 1e9;
  state.counters["cache_MiB"] = m.cache_bytes / (1024.0 * 1024.0);
  state.counters["threads"] = m.threads;
}
BENCHMARK(BM_MeasureMachine)->Iterations(1)->Unit(benchmark::kMillisecond);

// Dense fp32 baseline, args: out_features, in_features, tokens.
void BM_DenseFp32VersusRoofline(benchmark::State& state) {
  const slim::Index out = state.range(0);
  const slim::Index in = state.range(1);
  const slim::Index tokens = state.range(2);
  const slim::Matrix w = slim::random::gaussian(out, in, 1);
  const slim::Matrix x = slim::random::gaussian(tokens, in, 2);
  slim::Matrix y(tokens, out);
  for (auto _ : state) {
    y.noalias() = x * w.transpose();
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const auto c = cost::layer_cost({.out_features = out, .in_features = in, .tokens = tokens},
                                  cost::LayerForm::dense());
  const auto predicted = cost::roofline(c, machine());
  state.counters["predicted_us"] = predicted.seconds * 1e6;
  state.counters["memory_bound"] = predicted.memory_bound ? 1 : 0;
  state.counters["roofline_fraction"] =
      benchmark::Counter(predicted.seconds, benchmark::Counter::kIsIterationInvariantRate);
  state.SetBytesProcessed(static_cast<std::int64_t>(c.bytes_moved) * state.iterations());
  state.SetItemsProcessed(static_cast<std::int64_t>(c.flops) * state.iterations());
}
BENCHMARK(BM_DenseFp32VersusRoofline)
    ->Args({4096, 4096, 1})
    ->Args({1024, 1024, 1})
    ->Args({1024, 1024, 256})
    ->Args({512, 512, 512})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();

// GPTQ on an n x n layer (n = 1024 and the 4096) with 2048 calibration tokens, 4-bit g128,
// act-order with static groups, on 2 Eigen threads: seconds per layer, the Hessian accumulation
// throughput (tokens/s), peak resident memory (VmHWM) against the 4 x (|W| + |H|) budget, and the
// ratio to the dense fp32 baseline Y = X W^T over the same calibration tokens, timed in this run.
#include <slim/calib/hessian.hpp>
#include <slim/core/random.hpp>
#include <slim/quant/gptq.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <fstream>
#include <map>
#include <string>

namespace {

constexpr slim::Index kTokens = 2048;
constexpr int kThreads = 2;

struct Layer {
  slim::Matrix w;
  slim::Matrix x;
  slim::Matrix h;
};

const Layer& layer(slim::Index n) {
  static std::map<slim::Index, Layer> cache;
  auto it = cache.find(n);
  if (it == cache.end()) {
    Layer l;
    l.w = slim::random::gaussian(n, n, 1, 0.02);
    l.x = slim::random::correlated_activations(kTokens, n, 2);
    slim::calib::Hessian h(n);
    h.add(l.x);
    l.h = h.matrix();
    it = cache.emplace(n, std::move(l)).first;
  }
  return it->second;
}

// A field of /proc/self/status in MiB (VmHWM: peak resident set, VmRSS: current), -1 if absent.
double status_mib(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1)) / 1024.0;
  }
  return -1.0;
}

// Resets VmHWM to the current RSS (Linux: "5" > /proc/self/clear_refs).
void reset_peak_memory() { std::ofstream("/proc/self/clear_refs") << "5"; }

double dense_seconds(const Layer& l) {
  const auto start = std::chrono::steady_clock::now();
  slim::Matrix y = l.x * l.w.transpose();
  benchmark::DoNotOptimize(y.data());
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void BM_DenseBaseline(benchmark::State& state) {
  Eigen::setNbThreads(kThreads);
  const Layer& l = layer(state.range(0));
  slim::Matrix y(kTokens, l.w.rows());
  for (auto _ : state) {
    y.noalias() = l.x * l.w.transpose();
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * kTokens);
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * static_cast<double>(kTokens * l.w.size()) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_DenseBaseline)->Arg(1024)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_HessianAccumulation(benchmark::State& state) {
  Eigen::setNbThreads(kThreads);
  const Layer& l = layer(state.range(0));
  const double dense = dense_seconds(l);
  double seconds = 0.0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    slim::calib::Hessian h(l.x.cols());
    for (slim::Index t = 0; t < kTokens; t += 256) h.add(l.x.middleRows(t, 256));
    benchmark::DoNotOptimize(h.samples());
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  state.SetItemsProcessed(state.iterations() * kTokens);  // items/s = tokens/s
  state.counters["ratio_to_dense"] = seconds / static_cast<double>(state.iterations()) / dense;
}
BENCHMARK(BM_HessianAccumulation)
    ->Arg(1024)
    ->Arg(4096)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_Gptq(benchmark::State& state) {
  Eigen::setNbThreads(kThreads);
  const slim::Index n = state.range(0);
  const Layer& l = layer(n);
  const double dense = dense_seconds(l);
  const slim::quant::GptqOptions options{
      .scheme = slim::quant::int4_group(128), .act_order = true, .static_groups = true};
  reset_peak_memory();
  const double rss_before = status_mib("VmRSS");
  double seconds = 0.0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    auto result = slim::quant::gptq(l.w, l.h, options);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    benchmark::DoNotOptimize(result.quantized.codes().data());
  }
  const double mib = 1024.0 * 1024.0;
  const double w_and_h = static_cast<double>((l.w.size() + l.h.size()) * sizeof(float)) / mib;
  state.counters["seconds"] = seconds / static_cast<double>(state.iterations());
  state.counters["ratio_to_dense"] = (seconds / static_cast<double>(state.iterations())) / dense;
  state.counters["peak_MiB"] = status_mib("VmHWM");
  state.counters["rss_before_MiB"] = rss_before;
  state.counters["budget_MiB"] = 4.0 * w_and_h;
  state.SetItemsProcessed(state.iterations() * l.w.size());  // weights/s
}
BENCHMARK(BM_Gptq)->Arg(1024)->Arg(4096)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();

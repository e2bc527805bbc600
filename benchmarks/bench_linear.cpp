// quant::Linear (4-bit groups, 8-bit per-channel; int8 and fp32 activation paths) against the
// dense fp32 Eigen product Y = X * W^T on a row-major W, timed in the same binary: every row
// reports `vs_eigen` (Eigen time / kernel time, > 1 is faster) and the effective weight stream
// bandwidth; the decode sweep reports it next to a streaming-read loop's bandwidth.
#include <slim/core.hpp>
#include <slim/kernels.hpp>
#include <slim/quant/linear.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

using slim::Index;
using slim::Matrix;
using slim::quant::ActivationPath;
using slim::quant::Linear;
using slim::quant::QuantizedMatrix;
using slim::quant::Scheme;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Weight formats by id: 0 W4 g32 sym, 1 W4 g32 asym, 2 W4 g128 asym, 3 W8 per-channel sym.
Scheme scheme_of(int format) {
  switch (format) {
    case 0:
      return slim::quant::int4_group(32, true);
    case 1:
      return slim::quant::int4_group(32, false);
    case 2:
      return slim::quant::int4_group(128, false);
    default:
      return slim::quant::int8_per_channel();
  }
}

// Random codes, fp16 scales and zero-points: the kernels' speed does not depend on the values.
QuantizedMatrix random_quantized(Index rows, Index cols, const Scheme& scheme, std::uint64_t seed) {
  QuantizedMatrix q(rows, cols, scheme);
  std::mt19937_64 rng(seed);
  for (Index r = 0; r < rows; ++r) {
    auto* bytes = reinterpret_cast<std::uint64_t*>(q.row_codes(r));
    for (std::size_t i = 0; i < q.row_stride_bytes() / 8; ++i) bytes[i] = rng();
    for (Index g = 0; g < q.groups_per_row(); ++g)
      q.set_params(r, g,
                   {slim::round_to_fp16(0.01f + static_cast<float>(rng() % 100) * 1e-4f),
                    static_cast<int>(rng() % static_cast<std::uint64_t>(scheme.maxq()))});
  }
  return q;
}

// Seconds per call of f: median of repeated timed runs after a warm-up (at least 0.3 s total).
template <typename F>
double time_per_call(const F& f) {
  f();
  std::vector<double> runs;
  const auto begin = Clock::now();
  while (runs.size() < 5 || (seconds_since(begin) < 0.3 && runs.size() < 200)) {
    const auto start = Clock::now();
    f();
    runs.push_back(seconds_since(start));
  }
  std::nth_element(runs.begin(), runs.begin() + runs.size() / 2, runs.end());
  return runs[runs.size() / 2];
}

// Eigen fp32 Y = X * W^T with `threads` threads (GEMV is single-threaded in Eigen anyway), cached
// per shape so every row of that shape divides by the same baseline.
double eigen_seconds(Index rows, Index cols, Index tokens, int threads) {
  static std::map<std::tuple<Index, Index, Index, int>, double> cache;
  const auto key = std::make_tuple(rows, cols, tokens, threads);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  const Matrix w = Matrix::Random(rows, cols);
  const Matrix x = Matrix::Random(tokens, cols);
  Matrix y(tokens, rows);
  Eigen::setNbThreads(threads);
  const double s = time_per_call([&] {
    y.noalias() = x * w.transpose();
    benchmark::DoNotOptimize(y.data());
  });
  return cache[key] = s;
}

// Times `f` in the benchmark loop, then reports the ratio to Eigen and the weight bandwidth.
template <typename F>
void run_against_eigen(benchmark::State& state, const F& f, Index rows, Index cols, Index tokens,
                       int threads, std::size_t weight_bytes) {
  const double eigen = eigen_seconds(rows, cols, tokens, threads);
  double total = 0.0;
  for (auto _ : state) {
    const auto start = Clock::now();
    f();
    total += seconds_since(start);
  }
  const double per_call = total / static_cast<double>(state.iterations());
  state.counters["vs_eigen"] = eigen / per_call;
  state.counters["eigen_ms"] = eigen * 1e3;
  state.counters["weight_GB/s"] = static_cast<double>(weight_bytes) / per_call * 1e-9;
  state.counters["GOP/s"] = 2.0 * static_cast<double>(rows * cols * tokens) / per_call * 1e-9;
}

// Args: format, path (0 int8, 1 fp32), rows, cols, tokens, threads.
void BM_Linear(benchmark::State& state) {
  const int format = static_cast<int>(state.range(0));
  const auto path = state.range(1) == 0 ? ActivationPath::int8 : ActivationPath::fp32;
  const Index rows = state.range(2), cols = state.range(3), tokens = state.range(4);
  const int threads = static_cast<int>(state.range(5));
  const Linear layer(random_quantized(rows, cols, scheme_of(format), 1),
                     {.activations = path, .threads = threads});
  const Matrix x = Matrix::Random(tokens, cols);
  Matrix y;
  state.SetLabel(layer.describe() + ", " + std::to_string(threads) + " threads, " +
                 slim::kernels::int8_isa());
  run_against_eigen(
      state,
      [&] {
        layer.forward(x, y);
        benchmark::DoNotOptimize(y.data());
      },
      rows, cols, tokens, threads, layer.bytes());
}

void gemv_args(benchmark::internal::Benchmark* b) {
  for (int format : {0, 1, 2, 3}) b->Args({format, 0, 4096, 14336, 1, 2});
  for (int format : {0, 3}) b->Args({format, 1, 4096, 14336, 1, 2});
  for (int format : {0, 1, 2, 3}) b->Args({format, 0, 4096, 4096, 1, 1});
  for (int format : {0, 3}) b->Args({format, 1, 4096, 4096, 1, 1});
  for (Index tokens : {64, 512}) {
    for (int format : {3, 0, 2}) b->Args({format, 0, 4096, 4096, tokens, 2});
    for (int format : {0, 3}) b->Args({format, 1, 4096, 4096, tokens, 2});
  }
  b->ArgNames({"fmt", "fp32act", "out", "in", "T", "thr"});
}
BENCHMARK(BM_Linear)->Apply(gemv_args)->UseRealTime()->Unit(benchmark::kMillisecond);

// The machine's read bandwidth: `threads` threads sum disjoint halves of an array of `mb` MiB.
double stream_read_seconds(std::size_t mb, int threads, double* checksum) {
  static std::vector<float> data;
  const std::size_t n = mb * (std::size_t{1} << 20) / sizeof(float);
  if (data.size() < n) data.assign(n, 1.0f);
  const float* p = data.data();
  return time_per_call([&] {
    double total = 0.0;
#if defined(_OPENMP)
#pragma omp parallel for num_threads(threads) reduction(+ : total) schedule(static)
#endif
    for (std::size_t blk = 0; blk < n / 4096; ++blk) {
      // 64 running sums: four independent vector chains, so the adds never limit the loads.
      __attribute__((aligned(64))) float acc[64] = {};
      const float* q = p + blk * 4096;
      for (std::size_t i = 0; i < 4096; i += 64)
        for (int l = 0; l < 64; ++l) acc[l] += q[i + static_cast<std::size_t>(l)];
      float s = 0.0f;
      for (float a : acc) s += a;
      total += s;
    }
    *checksum += total;
  });
}

// Args: MiB, threads. Sizes below and above the L3 show where the cache ends.
void BM_StreamRead(benchmark::State& state) {
  const auto mb = static_cast<std::size_t>(state.range(0));
  const int threads = static_cast<int>(state.range(1));
  double checksum = 0.0;
  double seconds = 0.0;
  for (auto _ : state) seconds = stream_read_seconds(mb, threads, &checksum);
  benchmark::DoNotOptimize(checksum);
  state.counters["GB/s"] = static_cast<double>(mb << 20) / seconds * 1e-9;
}
BENCHMARK(BM_StreamRead)
    ->ArgsProduct({{16, 64, 256}, {1, 2}})
    ->ArgNames({"MiB", "thr"})
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// The decode sweep: one GEMV (T = 1) through every matrix of two Mistral-7B-shaped layers
// (q, k, v, o, gate, up, down), W4 g32 sym with int8 activations: about 245 MB of packed
// weights, far beyond the L3, so every call streams from DRAM like a real decode step.
// SLIM_BENCH_DECODE_LAYERS overrides the number of layers.
struct DecodeStack {
  std::vector<std::unique_ptr<Linear>> layers;
  std::vector<Matrix> inputs;
  std::size_t bytes = 0;
};

DecodeStack& decode_stack() {
  static DecodeStack stack = [] {
    DecodeStack s;
    const char* env = std::getenv("SLIM_BENCH_DECODE_LAYERS");
    const int layers = env ? std::max(1, std::atoi(env)) : 2;
    const Index shapes[7][2] = {{4096, 4096},  {1024, 4096},  {1024, 4096}, {4096, 4096},
                                {14336, 4096}, {14336, 4096}, {4096, 14336}};
    std::uint64_t seed = 100;
    for (int l = 0; l < layers; ++l)
      for (const auto& shape : shapes) {
        s.layers.push_back(
            std::make_unique<Linear>(random_quantized(shape[0], shape[1], scheme_of(0), seed++),
                                     slim::quant::LinearOptions{}));
        s.inputs.push_back(Matrix::Random(1, shape[1]));
        s.bytes += s.layers.back()->bytes();
      }
    return s;
  }();
  return stack;
}

void BM_DecodeSweep(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  DecodeStack& s = decode_stack();
  for (auto& layer : s.layers) layer->set_threads(threads);
  Matrix y;
  auto sweep = [&] {
    for (std::size_t i = 0; i < s.layers.size(); ++i) {
      s.layers[i]->forward(s.inputs[i], y);
      benchmark::DoNotOptimize(y.data());
    }
  };
  double total = 0.0;
  for (auto _ : state) {
    const auto start = Clock::now();
    sweep();
    total += seconds_since(start);
  }
  const double per_sweep = total / static_cast<double>(state.iterations());
  double checksum = 0.0;
  const double stream = stream_read_seconds(256, threads, &checksum);
  benchmark::DoNotOptimize(checksum);
  const double bandwidth = static_cast<double>(s.bytes) / per_sweep;
  const double stream_bandwidth = static_cast<double>(std::size_t{256} << 20) / stream;
  state.counters["packed_MB"] = static_cast<double>(s.bytes) * 1e-6;
  state.counters["weight_GB/s"] = bandwidth * 1e-9;
  state.counters["stream_GB/s"] = stream_bandwidth * 1e-9;
  state.counters["of_stream"] = bandwidth / stream_bandwidth;
  static double one_thread = 0.0;
  if (threads == 1) one_thread = per_sweep;
  if (threads == 2 && one_thread > 0.0) state.counters["speedup_1to2"] = one_thread / per_sweep;
  state.SetLabel(s.layers.front()->describe());
}
BENCHMARK(BM_DecodeSweep)
    ->Arg(1)
    ->Arg(2)
    ->ArgName("thr")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

// Sparse GEMV / GEMM (CSR with 16-bit indices, windowed CSR, compressed 2:4) against the dense fp32
// Eigen baseline Y = X * W^T in the same binary. Every sparse benchmark times the dense product on
// the same shape right after its own loop, with the same iteration count, and reports
// `speedup_wall` and `speedup_cpu` = dense time / sparse time (> 1 means the sparse kernel is
// faster) by wall clock and by process CPU time, plus the storage's bits per weight. Threads:
// Eigen's GEMV is single-threaded, so the GEMV ratios are reported for 1 sparse thread (fair) and
// for 2 (OpenMP over rows) against the same single-threaded dense GEMV (Eigen does not thread
// GEMV), so a 2-thread ratio is "2-thread sparse vs 1-thread dense".
//   ./bench_sparse --benchmark_min_time=0.1
#include <slim/kernels/sparse.hpp>
#include <slim/prune.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <ctime>
#include <map>
#include <memory>

namespace {

using slim::Index;
using slim::Matrix;
using slim::prune::Pattern;

constexpr Index kSize = 4096;

const Matrix& weights() {
  static const Matrix w = slim::random::gaussian(kSize, kSize, 7);
  return w;
}

const slim::prune::CsrMatrix& csr(int percent) {
  static std::map<int, std::unique_ptr<slim::prune::CsrMatrix>> cache;
  auto& slot = cache[percent];
  if (!slot) {
    const auto mask =
        slim::prune::magnitude_mask(weights(), {.pattern = Pattern::unstructured(percent / 100.0)});
    slot = std::make_unique<slim::prune::CsrMatrix>(
        slim::prune::CsrMatrix::from_mask(weights(), mask));
  }
  return *slot;
}

const slim::prune::WindowedCsrMatrix& windowed(int percent) {
  static std::map<int, std::unique_ptr<slim::prune::WindowedCsrMatrix>> cache;
  auto& slot = cache[percent];
  if (!slot) {
    const auto mask =
        slim::prune::magnitude_mask(weights(), {.pattern = Pattern::unstructured(percent / 100.0)});
    slot = std::make_unique<slim::prune::WindowedCsrMatrix>(
        slim::prune::WindowedCsrMatrix::from_mask(weights(), mask));
  }
  return *slot;
}

const slim::prune::NmMatrix& two_four() {
  static const slim::prune::NmMatrix nm = [] {
    const auto mask = slim::prune::magnitude_mask(weights(), {.pattern = Pattern::n_m(2, 4)});
    return slim::prune::NmMatrix::from_mask(weights(), mask, 2, 4);
  }();
  return nm;
}

// Wall-clock and process CPU seconds (all threads) since construction.
struct Stopwatch {
  std::chrono::steady_clock::time_point wall = std::chrono::steady_clock::now();
  double cpu = cpu_now();
  static double cpu_now() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
  }
  double wall_seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - wall).count();
  }
  double cpu_seconds() const { return cpu_now() - cpu; }
};

// Times the dense baseline over the same iteration count right after the sparse loop and
// reports both ratios: speedup_wall (wall-clock; meaningful on an idle machine) and speedup_cpu
// (process CPU time; robust when other jobs share the cores, for single-threaded runs).
template <typename Body>
void run_against_dense(benchmark::State& state, const Matrix& x, double bits_per_weight,
                       Body body) {
  const Stopwatch sparse_clock;
  for (auto _ : state) body();
  const double n = double(state.iterations());
  const double sparse_wall = sparse_clock.wall_seconds() / n;
  const double sparse_cpu = sparse_clock.cpu_seconds() / n;
  const Matrix& w = weights();
  Matrix y(x.rows(), w.rows());
  const Stopwatch dense_clock;
  for (benchmark::IterationCount i = 0; i < state.iterations(); ++i) {
    y.noalias() = x * w.transpose();
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double dense_wall = dense_clock.wall_seconds() / n;
  const double dense_cpu = dense_clock.cpu_seconds() / n;
  state.counters["speedup_wall"] = dense_wall / sparse_wall;
  state.counters["speedup_cpu"] = dense_cpu / sparse_cpu;
  state.counters["dense_cpu_us"] = dense_cpu * 1e6;
  state.counters["sparse_cpu_us"] = sparse_cpu * 1e6;
  state.counters["bits_per_weight"] = bits_per_weight;
}

void BM_DenseGemv(benchmark::State& state) {
  const Matrix x = slim::random::gaussian(1, kSize, 8);
  Matrix y(1, kSize);
  weights();  // build the weights outside the timed loop
  for (auto _ : state) {
    y.noalias() = x * weights().transpose();
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kSize * kSize * 4);
  state.counters["bits_per_weight"] = 32;
}
BENCHMARK(BM_DenseGemv)->Unit(benchmark::kMicrosecond);

// Args: sparsity percent, threads.
void BM_CsrGemv(benchmark::State& state) {
  const auto& w = csr(static_cast<int>(state.range(0)));
  const Matrix x = slim::random::gaussian(1, kSize, 8);
  slim::Vector y(kSize);
  const slim::kernels::SparseKernelOptions options{.threads = static_cast<int>(state.range(1))};
  run_against_dense(state, x, w.bits_per_weight(), [&] {
    slim::kernels::csr_gemv(w, x.data(), y.data(), options);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  });
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(w.bytes()));
}
BENCHMARK(BM_CsrGemv)
    ->ArgsProduct({{50, 70, 80, 90}, {1, 2}})
    ->ArgNames({"sparsity%", "threads"})
    ->Unit(benchmark::kMicrosecond);

// Args: sparsity percent, threads.
void BM_WindowedGemv(benchmark::State& state) {
  const auto& w = windowed(static_cast<int>(state.range(0)));
  const Matrix x = slim::random::gaussian(1, kSize, 8);
  slim::Vector y(kSize);
  const slim::kernels::SparseKernelOptions options{.threads = static_cast<int>(state.range(1))};
  run_against_dense(state, x, w.bits_per_weight(), [&] {
    slim::kernels::windowed_gemv(w, x.data(), y.data(), options);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  });
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(w.bytes()));
}
BENCHMARK(BM_WindowedGemv)
    ->ArgsProduct({{50, 70, 80, 90}, {1, 2}})
    ->ArgNames({"sparsity%", "threads"})
    ->Unit(benchmark::kMicrosecond);

void BM_TwoFourGemv(benchmark::State& state) {
  const auto& w = two_four();
  const Matrix x = slim::random::gaussian(1, kSize, 8);
  slim::Vector y(kSize);
  const slim::kernels::SparseKernelOptions options{.threads = static_cast<int>(state.range(0))};
  run_against_dense(state, x, w.bits_per_weight(), [&] {
    slim::kernels::nm_gemv(w, x.data(), y.data(), options);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  });
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(w.bytes()));
}
BENCHMARK(BM_TwoFourGemv)->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMicrosecond);

// GEMM with 32 tokens (prefill-sized batch), OpenMP default threads on both sides.
void BM_CsrGemm(benchmark::State& state) {
  const auto& w = csr(static_cast<int>(state.range(0)));
  const Matrix x = slim::random::gaussian(32, kSize, 9);
  run_against_dense(state, x, w.bits_per_weight(), [&] {
    Matrix y = slim::kernels::csr_gemm(w, x);
    benchmark::DoNotOptimize(y.data());
  });
}
BENCHMARK(BM_CsrGemm)->Arg(80)->Arg(90)->ArgName("sparsity%")->Unit(benchmark::kMillisecond);

void BM_WindowedGemm(benchmark::State& state) {
  const auto& w = windowed(static_cast<int>(state.range(0)));
  const Matrix x = slim::random::gaussian(32, kSize, 9);
  run_against_dense(state, x, w.bits_per_weight(), [&] {
    Matrix y = slim::kernels::windowed_gemm(w, x);
    benchmark::DoNotOptimize(y.data());
  });
}
BENCHMARK(BM_WindowedGemm)->Arg(80)->Arg(90)->ArgName("sparsity%")->Unit(benchmark::kMillisecond);

void BM_TwoFourGemm(benchmark::State& state) {
  const auto& w = two_four();
  const Matrix x = slim::random::gaussian(32, kSize, 9);
  run_against_dense(state, x, w.bits_per_weight(), [&] {
    Matrix y = slim::kernels::nm_gemm(w, x);
    benchmark::DoNotOptimize(y.data());
  });
}
BENCHMARK(BM_TwoFourGemm)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

// Sparse GEMV / GEMM (CSR with 16-bit indices, windowed CSR, compressed 2:4) against the dense fp32
// Eigen baseline Y = X * W^T in the same binary. Every sparse benchmark times the dense product on
// the same shape right after its own loop, with the same iteration count, and reports
// `speedup` = dense time / sparse time (> 1 means the sparse kernel is faster; see
// run_against_dense for how the two are timed), plus the storage's bits per weight. Threads:
// Eigen's GEMV is single-threaded, so the GEMV ratios are reported for 1 sparse thread (fair) and
// for 2 (OpenMP over rows) against the same single-threaded dense GEMV (Eigen does not thread
// GEMV), so a 2-thread ratio is "2-thread sparse vs 1-thread dense".
//   ./bench_sparse --benchmark_min_time=0.1
#include <slim/kernels/sparse.hpp>
#include <slim/prune.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <vector>

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

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Times the sparse body and the dense baseline Y = X W^T in alternation, one call of each per
// iteration; the benchmark's time is the sparse call's alone (manual time). Alternating gives
// both the same machine state (on this VM the memory bandwidth the host leaves us moves within and
// between runs, so ratios of separately timed loops moved by 1.5x from one process to the next),
// and each call starts with the other's data in the cache, as a layer does in a model whose
// weights exceed the last-level cache. Timing one operation in a loop instead lets a sparse
// matrix that fits the 32 MiB L3 be read from cache while the 64 MiB dense one is read from
// memory, which flatters the sparse kernel. Counters: speedup = median over iterations of
// dense time / sparse time (> 1: sparse is faster), sparse_us and dense_us = median times,
// bits_per_weight of the storage.
template <typename Body>
void run_against_dense(benchmark::State& state, const Matrix& x, double bits_per_weight,
                       Body body) {
  const Matrix& w = weights();
  Matrix y(x.rows(), w.rows());
  std::vector<double> sparse_s;
  std::vector<double> dense_s;
  std::vector<double> ratios;
  for (auto _ : state) {
    const auto start = Clock::now();
    body();
    const double sparse = seconds_since(start);
    state.SetIterationTime(sparse);
    const auto dense_start = Clock::now();
    y.noalias() = x * w.transpose();
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
    const double dense = seconds_since(dense_start);
    sparse_s.push_back(sparse);
    dense_s.push_back(dense);
    ratios.push_back(dense / sparse);
  }
  state.counters["speedup"] = median(ratios);
  state.counters["sparse_us"] = median(sparse_s) * 1e6;
  state.counters["dense_us"] = median(dense_s) * 1e6;
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
    ->UseManualTime()
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
    ->UseManualTime()
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
BENCHMARK(BM_TwoFourGemv)
    ->Arg(1)
    ->Arg(2)
    ->ArgName("threads")
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

// GEMM with 32 tokens (prefill-sized batch), OpenMP default threads on both sides.
void BM_CsrGemm(benchmark::State& state) {
  const auto& w = csr(static_cast<int>(state.range(0)));
  const Matrix x = slim::random::gaussian(32, kSize, 9);
  run_against_dense(state, x, w.bits_per_weight(), [&] {
    Matrix y = slim::kernels::csr_gemm(w, x);
    benchmark::DoNotOptimize(y.data());
  });
}
BENCHMARK(BM_CsrGemm)
    ->Arg(80)
    ->Arg(90)
    ->ArgName("sparsity%")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

void BM_WindowedGemm(benchmark::State& state) {
  const auto& w = windowed(static_cast<int>(state.range(0)));
  const Matrix x = slim::random::gaussian(32, kSize, 9);
  run_against_dense(state, x, w.bits_per_weight(), [&] {
    Matrix y = slim::kernels::windowed_gemm(w, x);
    benchmark::DoNotOptimize(y.data());
  });
}
BENCHMARK(BM_WindowedGemm)
    ->Arg(80)
    ->Arg(90)
    ->ArgName("sparsity%")
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

void BM_TwoFourGemm(benchmark::State& state) {
  const auto& w = two_four();
  const Matrix x = slim::random::gaussian(32, kSize, 9);
  run_against_dense(state, x, w.bits_per_weight(), [&] {
    Matrix y = slim::kernels::nm_gemm(w, x);
    benchmark::DoNotOptimize(y.data());
  });
}
BENCHMARK(BM_TwoFourGemm)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

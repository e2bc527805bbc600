// RTN quantization throughput (weights/s) on a 4096x4096 layer, single-threaded, beside the
// cost of one dense fp32 pass over the same weights (a copy) as the memory-bound yardstick.
#include <slim/core.hpp>
#include <slim/quant.hpp>

#include <benchmark/benchmark.h>

namespace {

const slim::Matrix& weights() {
  static const slim::Matrix w = slim::random::gaussian(4096, 4096, 1, 0.02);
  return w;
}

void BM_DenseCopyBaseline(benchmark::State& state) {
  const slim::Matrix& w = weights();
  slim::Matrix out = slim::Matrix::Zero(w.rows(), w.cols());
  for (auto _ : state) {
    out = w;
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * w.size());
  state.SetBytesProcessed(state.iterations() * w.size() * sizeof(float));
}
BENCHMARK(BM_DenseCopyBaseline)->Unit(benchmark::kMillisecond);

void BM_QuantizeRtn(benchmark::State& state) {
  const slim::Matrix& w = weights();
  const slim::quant::Scheme scheme =
      state.range(0) == 8 ? slim::quant::int8_per_channel()
                          : slim::quant::Scheme{.bits = static_cast<int>(state.range(0)),
                                                .group_size = state.range(1)};
  for (auto _ : state) {
    auto q = slim::quant::quantize(w, scheme);
    benchmark::DoNotOptimize(q.codes().data());
  }
  state.SetItemsProcessed(state.iterations() * w.size());
  state.SetBytesProcessed(state.iterations() * w.size() * sizeof(float));
  state.SetLabel(scheme.name());
}
BENCHMARK(BM_QuantizeRtn)
    ->Args({4, 128})
    ->Args({4, 32})
    ->Args({3, 128})
    ->Args({8, 0})
    ->Unit(benchmark::kMillisecond);

void BM_DequantizeRtn(benchmark::State& state) {
  const auto q =
      slim::quant::quantize(weights(), slim::quant::Scheme{.bits = 4, .group_size = 128});
  slim::Matrix w(q.rows(), q.cols());
  for (auto _ : state) {
    for (slim::Index r = 0; r < q.rows(); ++r) q.dequantize_row(r, w.row(r).data());
    benchmark::DoNotOptimize(w.data());
  }
  state.SetItemsProcessed(state.iterations() * weights().size());
}
BENCHMARK(BM_DequantizeRtn)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

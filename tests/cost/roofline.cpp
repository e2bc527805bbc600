// The roofline against hand-computed times on a described machine: a 4096 x 4096 GEMV is memory
// bound, a large GEMM compute bound; plus a smoke test of measure_machine at tiny sizes.
#include <slim/cost.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace {

namespace cost = slim::cost;
using cost::LayerForm;

// A notional desktop: 100 GFLOP/s fp32, 400 Gop/s int8, 20 GB/s DRAM, 32 MiB cache at 100 GB/s.
cost::Machine desktop() {
  return {.peak_fp32_flops = 100e9,
          .peak_int8_ops = 400e9,
          .memory_bandwidth = 20e9,
          .cache_bytes = 32.0 * 1024 * 1024,
          .cache_bandwidth = 100e9,
          .threads = 1};
}

TEST(Roofline, GemvOf4096SquareIsMemoryBound) {
  const auto c = cost::layer_cost({.out_features = 4096, .in_features = 4096, .tokens = 1},
                                  LayerForm::dense());
  const auto l = cost::roofline(c, desktop());
  // 64 MiB of weights exceed the cache; x and y (16 KiB each) stay in it.
  EXPECT_TRUE(l.weights_from_dram);
  EXPECT_EQ(l.dram_bytes, 4096.0 * 4096 * 4);
  EXPECT_EQ(l.cache_bytes, 2 * 4096.0 * 4);
  EXPECT_DOUBLE_EQ(l.compute_seconds, 2 * 4096.0 * 4096 / 100e9);
  EXPECT_DOUBLE_EQ(l.memory_seconds, 4096.0 * 4096 * 4 / 20e9 + 2 * 4096.0 * 4 / 100e9);
  EXPECT_TRUE(l.memory_bound);
  EXPECT_EQ(l.seconds, l.memory_seconds);
}

TEST(Roofline, LargeGemmIsComputeBound) {
  const auto c = cost::layer_cost({.out_features = 4096, .in_features = 4096, .tokens = 4096},
                                  LayerForm::dense());
  const auto l = cost::roofline(c, desktop());
  // Weights, X and Y (64 MiB each) all come from DRAM once: 192 MiB at 20 GB/s ~ 10 ms, while
  // 2 * 4096^3 flops at 100 GFLOP/s take 1.37 s.
  EXPECT_EQ(l.dram_bytes, 3 * 4096.0 * 4096 * 4);
  EXPECT_EQ(l.cache_bytes, 0.0);
  EXPECT_DOUBLE_EQ(l.compute_seconds, 2 * 4096.0 * 4096 * 4096 / 100e9);
  EXPECT_FALSE(l.memory_bound);
  EXPECT_EQ(l.seconds, l.compute_seconds);
}

TEST(Roofline, SmallLayerReadsItsWeightsFromCache) {
  const auto c = cost::layer_cost({.out_features = 64, .in_features = 64}, LayerForm::dense());
  const auto l = cost::roofline(c, desktop());
  EXPECT_FALSE(l.weights_from_dram);
  EXPECT_EQ(l.dram_bytes, 0.0);
  EXPECT_EQ(l.cache_bytes, c.bytes_moved);
  EXPECT_DOUBLE_EQ(l.memory_seconds, c.bytes_moved / 100e9);
}

TEST(Roofline, IntegerOperationsRunAtTheInt8Peak) {
  const auto c = cost::layer_cost({.out_features = 4, .in_features = 8, .tokens = 2},
                                  LayerForm::quantized(4, 4, true, cost::ActivationPath::int8));
  const auto l = cost::roofline(c, desktop());
  // Hand count (see layer_cost tests): 72 fp32 ops, 64 int8 mult + 96 int32 add + 16 int32 mult.
  EXPECT_DOUBLE_EQ(l.compute_seconds, 72.0 / 100e9 + (64.0 + 96.0 + 16.0) / 400e9);
}

TEST(Roofline, Int4GemvWithColdWeightsIsFasterThanDenseByItsByteRatio) {
  // int4 weights with int8 activations (integer MACs at the int8 peak, 0.08 ms) against fp32.
  // Both are memory bound on DRAM, so the latency ratio is the weight-byte ratio up to the
  // cache-resident activations (32 KiB at 100 GB/s: 0.3 us of 3.4 ms).
  const cost::LayerShape shape{.out_features = 4096, .in_features = 4096, .tokens = 1};
  const auto dense = cost::layer_cost(shape, LayerForm::dense());
  const auto int4 =
      cost::layer_cost(shape, LayerForm::quantized(4, 128, true, cost::ActivationPath::int8));
  const auto cold = cost::WeightResidency::always_dram;
  const auto ld = cost::roofline(dense, desktop(), cold);
  const auto lq = cost::roofline(int4, desktop(), cold);
  EXPECT_TRUE(lq.weights_from_dram);
  EXPECT_TRUE(lq.memory_bound);
  EXPECT_NEAR(lq.seconds / ld.seconds, int4.weight_bytes / dense.weight_bytes, 1e-3);
  // By its own working set (8.4 MiB) the int4 layer fits the 32 MiB cache.
  EXPECT_FALSE(cost::roofline(int4, desktop()).weights_from_dram);
  EXPECT_LT(cost::roofline(int4, desktop()).seconds, lq.seconds);
}

TEST(Roofline, RejectsZeroOrInvalidMachineRates) {
  const auto c = cost::layer_cost({.out_features = 2, .in_features = 3}, LayerForm::dense());
  auto m = desktop();
  m.memory_bandwidth = 0.0;
  EXPECT_THROW(cost::roofline(c, m), slim::ArgumentError);
  m = desktop();
  m.cache_bandwidth = 0.0;
  EXPECT_THROW(cost::roofline(c, m), slim::ArgumentError);
  m = desktop();
  m.peak_fp32_flops = -1.0;
  EXPECT_THROW(cost::roofline(c, m), slim::ArgumentError);
  m = desktop();
  m.peak_int8_ops = std::numeric_limits<double>::infinity();
  EXPECT_THROW(cost::roofline(c, m), slim::ArgumentError);
  m = desktop();
  m.cache_bytes = -1.0;
  EXPECT_THROW(cost::roofline(c, m), slim::ArgumentError);
  m = desktop();
  m.threads = 0;
  EXPECT_THROW(cost::roofline(c, m), slim::ArgumentError);
  EXPECT_THROW(cost::roofline(c, cost::Machine{}), slim::ArgumentError);
}

TEST(MeasureMachine, TinyMeasurementGivesAValidMachine) {
  const auto m = cost::measure_machine({.buffer_bytes = 1 << 20,
                                        .gemm_size = 32,
                                        .repeats = 1,
                                        .cache_bytes = 1 << 18,
                                        .gemm_seconds = 0.0});
  EXPECT_NO_THROW(cost::validate(m, "test"));
  EXPECT_EQ(m.cache_bytes, 1 << 18);
  EXPECT_EQ(m.peak_int8_ops, 4.0 * m.peak_fp32_flops);
}

TEST(MeasureMachine, RejectsBadOptions) {
  EXPECT_THROW(cost::measure_machine({.buffer_bytes = 100}), slim::ArgumentError);
  EXPECT_THROW(cost::measure_machine({.buffer_bytes = 1 << 16, .gemm_size = 2}),
               slim::ArgumentError);
  EXPECT_THROW(cost::measure_machine({.buffer_bytes = 1 << 16, .gemm_size = 16, .repeats = 0}),
               slim::ArgumentError);
  EXPECT_THROW(
      cost::measure_machine(
          {.buffer_bytes = 1 << 16, .gemm_size = 16, .repeats = 1, .int8_to_fp32_ratio = 0.0}),
      slim::ArgumentError);
  EXPECT_THROW(cost::measure_machine({.buffer_bytes = 1 << 16, .gemm_seconds = -1.0}),
               slim::ArgumentError);
}

}  // namespace

// Operation and byte counts of every layer form against counts done by hand on small shapes, and
// the quantized weight bytes against what QuantizedMatrix really stores.
#include <slim/cost.hpp>
#include <slim/quant/quantized_matrix.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace {

namespace cost = slim::cost;
using cost::ActivationPath;
using cost::LayerForm;
using cost::LayerShape;

TEST(LayerCost, DenseCountsMatchHandCount) {
  // W 2 x 3, X 5 x 3: 5*2*3 = 30 MACs; 6 fp32 weights = 24 bytes; X 15 floats, Y 10 floats.
  const auto c =
      cost::layer_cost({.out_features = 2, .in_features = 3, .tokens = 5}, LayerForm::dense());
  EXPECT_EQ(c.macs, 30.0);
  EXPECT_EQ(c.flops, 60.0);
  EXPECT_EQ(c.ops.fp32_mult, 30.0);
  EXPECT_EQ(c.ops.fp32_add, 30.0);
  EXPECT_EQ(c.ops.integer_ops(), 0.0);
  EXPECT_EQ(c.weight_bytes, 24.0);
  EXPECT_EQ(c.activation_in_bytes, 60.0);
  EXPECT_EQ(c.activation_out_bytes, 40.0);
  EXPECT_EQ(c.intermediate_bytes, 0.0);
  EXPECT_EQ(c.bytes_moved, 124.0);
  EXPECT_EQ(c.bits_per_weight(), 32.0);
  EXPECT_EQ(c.arithmetic_intensity(), 60.0 / 124.0);
}

TEST(LayerCost, DenseFp16HalvesWeightBytesOnly) {
  const auto c =
      cost::layer_cost({.out_features = 2, .in_features = 3, .tokens = 5}, LayerForm::dense(16));
  EXPECT_EQ(c.weight_bytes, 12.0);
  EXPECT_EQ(c.macs, 30.0);
  EXPECT_EQ(c.bits_per_weight(), 16.0);
}

TEST(LayerCost, WeightOnlyQuantizedCountsMatchHandCount) {
  // W 4 x 8, int4, groups of 4, asymmetric, fp16 scales, T = 2.
  // codes: 4 rows * ceil(8*4/8) = 16 bytes; groups 4*2 = 8: scales 16 bytes, zeros ceil(8*4/8) = 4.
  const auto c = cost::layer_cost({.out_features = 4, .in_features = 8, .tokens = 2},
                                  LayerForm::quantized(4, 4));
  EXPECT_EQ(c.weight_bytes, 36.0);
  EXPECT_EQ(c.bits_per_weight(), 9.0);
  EXPECT_EQ(c.macs, 64.0);
  // dequantization: 32 weights * (1 fp32 mult + 1 int32 add), then 64 fp32 MACs.
  EXPECT_EQ(c.ops.fp32_mult, 32.0 + 64.0);
  EXPECT_EQ(c.ops.fp32_add, 64.0);
  EXPECT_EQ(c.ops.int32_add, 32.0);
  EXPECT_EQ(c.ops.int8_mult, 0.0);
  EXPECT_EQ(c.bytes_moved, 36.0 + 64.0 + 32.0);
}

TEST(LayerCost, SymmetricQuantizedStoresNoZerosAndSkipsTheirSubtraction) {
  // W 3 x 8, int3 per row, symmetric: codes 3 * ceil(24/8) = 9 bytes, 3 scales = 6 bytes.
  const auto c = cost::layer_cost({.out_features = 3, .in_features = 8, .tokens = 1},
                                  LayerForm::quantized(3, 0, false));
  EXPECT_EQ(c.weight_bytes, 15.0);
  EXPECT_EQ(c.ops.int32_add, 0.0);
  EXPECT_EQ(c.ops.fp32_mult, 24.0 + 24.0);
  // Asymmetric adds 3 zeros of 3 bits packed: ceil(9/8) = 2 bytes.
  const auto a = cost::layer_cost({.out_features = 3, .in_features = 8, .tokens = 1},
                                  LayerForm::quantized(3, 0, true));
  EXPECT_EQ(a.weight_bytes, 17.0);
}

TEST(LayerCost, Int8ActivationPathCountsMatchHandCount) {
  // W 4 x 8, int4 g4 asymmetric, T = 2, int8 activations. groups per row 2.
  const auto c = cost::layer_cost({.out_features = 4, .in_features = 8, .tokens = 2},
                                  LayerForm::quantized(4, 4, true, ActivationPath::int8));
  EXPECT_EQ(c.macs, 64.0);
  EXPECT_EQ(c.ops.int8_mult, 64.0);
  // 64 MAC adds + 16 group sums of x (T*in) + 16 zero corrections (T*out*groups).
  EXPECT_EQ(c.ops.int32_add, 64.0 + 16.0 + 16.0);
  EXPECT_EQ(c.ops.int32_mult, 16.0);
  // quantize x: 16 mult; group rescale: 16 mult; token scale: T*out = 8 mult.
  EXPECT_EQ(c.ops.fp32_mult, 16.0 + 16.0 + 8.0);
  // abs-max: 16 compares; group accumulate: 16 adds.
  EXPECT_EQ(c.ops.fp32_add, 16.0 + 16.0);
  EXPECT_EQ(c.intermediate_bytes, 16.0);
  EXPECT_EQ(c.weight_bytes, 36.0);
  EXPECT_EQ(c.bytes_moved, 36.0 + 64.0 + 32.0 + 2.0 * 16.0);
}

TEST(LayerCost, QuantizedWeightBytesEqualQuantizedMatrixStorage) {
  const slim::Index rows = 6;
  const slim::Index cols = 24;
  const slim::quant::Scheme schemes[] = {
      slim::quant::int4_group(8),
      slim::quant::int4_group(12, true),
      slim::quant::int8_per_channel(),
      {.bits = 3, .group_size = 8},
      {.bits = 2, .group_size = 24, .symmetric = true},
      {.bits = 5, .group_size = 0, .granularity = slim::quant::Granularity::per_channel},
  };
  for (const auto& scheme : schemes) {
    const slim::quant::QuantizedMatrix stored(rows, cols, scheme);
    const slim::Index group =
        scheme.granularity == slim::quant::Granularity::per_channel ? 0 : scheme.group_size;
    const auto c = cost::layer_cost({.out_features = rows, .in_features = cols},
                                    LayerForm::quantized(scheme.bits, group, !scheme.symmetric));
    EXPECT_EQ(c.weight_bytes, static_cast<double>(stored.bytes())) << scheme.name();
    EXPECT_DOUBLE_EQ(c.bits_per_weight(), stored.bits_per_weight()) << scheme.name();
  }
}

TEST(LayerCost, SymmetricGroupsOf32MatchGgmlBlockSizes) {
  // ggml's Q4_0 block: 32 weights in 18 bytes (fp16 scale + 16 code bytes) = 4.5 bits/weight;
  // Q8_0: 32 weights in 34 bytes = 8.5 bits/weight.
  const LayerShape shape{.out_features = 8, .in_features = 256};
  EXPECT_EQ(cost::layer_cost(shape, LayerForm::quantized(4, 32, false)).bits_per_weight(), 4.5);
  EXPECT_EQ(cost::layer_cost(shape, LayerForm::quantized(8, 32, false)).bits_per_weight(), 8.5);
}

TEST(LayerCost, DesignatedInitializersDescribeTheSameFormAsTheFactories) {
  const LayerShape shape{.out_features = 4, .in_features = 64, .tokens = 3};
  const LayerForm by_fields{.format = cost::Format::quantized,
                            .bits = 3,
                            .group_size = 32,
                            .zero_point = false,
                            .activations = ActivationPath::int8};
  const auto a = cost::layer_cost(shape, by_fields);
  const auto b = cost::layer_cost(shape, LayerForm::quantized(3, 32, false, ActivationPath::int8));
  EXPECT_EQ(a.weight_bytes, b.weight_bytes);
  EXPECT_EQ(a.ops.fp32_mult, b.ops.fp32_mult);
  EXPECT_EQ(a.ops.int32_add, b.ops.int32_add);
  EXPECT_EQ(cost::describe(by_fields), "int3 g32 sym, int8 activations");
}

TEST(LayerCost, CsrCountsMatchHandCount) {
  // W 4 x 5 at 50%: 10 nonzeros, T = 3: 30 MACs.
  const LayerShape shape{.out_features = 4, .in_features = 5, .tokens = 3};
  const auto c32 = cost::layer_cost(shape, LayerForm::sparse_csr(0.5, 32));
  EXPECT_EQ(c32.macs, 30.0);
  EXPECT_EQ(c32.ops.fp32_mult, 30.0);
  EXPECT_EQ(c32.ops.fp32_add, 30.0);
  // 10 fp32 values (40) + 10 32-bit indices (40) + 5 row pointers (20).
  EXPECT_EQ(c32.weight_bytes, 100.0);
  const auto c16 = cost::layer_cost(shape, LayerForm::sparse_csr(0.5, 16));
  EXPECT_EQ(c16.weight_bytes, 40.0 + 20.0 + 20.0);
  EXPECT_EQ(c16.bytes_moved, 80.0 + 60.0 + 48.0);
  // 0.67 * 20 = 13.4 nonzeros round to 13.
  EXPECT_EQ(cost::layer_cost(shape, LayerForm::sparse_csr(0.33)).macs, 39.0);
  // Zero sparsity still pays for the indices: CSR of a dense matrix is larger than dense.
  EXPECT_GT(cost::layer_cost(shape, LayerForm::sparse_csr(0.0)).weight_bytes,
            cost::layer_cost(shape, LayerForm::dense()).weight_bytes);
}

TEST(LayerCost, NmCountsMatchHandCount) {
  // 2:4 on W 3 x 8, T = 2: 12 kept values (48 bytes) + 12 * 2 bits (3 bytes); 24 MACs.
  const auto c = cost::layer_cost({.out_features = 3, .in_features = 8, .tokens = 2},
                                  LayerForm::sparse_n_m(2, 4));
  EXPECT_EQ(c.macs, 24.0);
  EXPECT_EQ(c.ops.fp32_mult, 24.0);
  EXPECT_EQ(c.weight_bytes, 51.0);
  // 1:3 on W 2 x 6: 4 kept values (16 bytes) + 4 * 2 bits (1 byte).
  EXPECT_EQ(cost::layer_cost({.out_features = 2, .in_features = 6}, LayerForm::sparse_n_m(1, 3))
                .weight_bytes,
            17.0);
  // 4:8 on W 1 x 16 in fp16: 8 values (16 bytes) + 8 * 3 bits (3 bytes).
  EXPECT_EQ(
      cost::layer_cost({.out_features = 1, .in_features = 16}, LayerForm::sparse_n_m(4, 8, 16))
          .weight_bytes,
      19.0);
}

TEST(LayerCost, LowRankCountsMatchHandCount) {
  // W 6 x 4 as U (6 x 2) V (2 x 4), T = 3: 20 factor values (80 bytes). X V^T (3 x 2) takes
  // 3*2*4 = 24 MACs, (X V^T) U^T takes 3*6*2 = 36: 60 MACs; X V^T is 6 floats = 24 bytes.
  const auto c =
      cost::layer_cost({.out_features = 6, .in_features = 4, .tokens = 3}, LayerForm::low_rank(2));
  EXPECT_EQ(c.macs, 60.0);
  EXPECT_EQ(c.ops.fp32_add, 60.0);
  EXPECT_EQ(c.weight_bytes, 80.0);
  EXPECT_EQ(c.intermediate_bytes, 24.0);
  EXPECT_EQ(c.bytes_moved, 80.0 + 48.0 + 72.0 + 48.0);
}

TEST(LayerCost, CostsOfSeveralLayersSum) {
  const auto a = cost::layer_cost({.out_features = 4, .in_features = 8, .tokens = 2},
                                  LayerForm::quantized(4, 4, true, ActivationPath::int8));
  const auto b =
      cost::layer_cost({.out_features = 6, .in_features = 4, .tokens = 3}, LayerForm::low_rank(2));
  auto sum = a;
  sum += b;
  EXPECT_EQ(sum.macs, a.macs + b.macs);
  EXPECT_EQ(sum.ops.int32_mult, a.ops.int32_mult + b.ops.int32_mult);
  EXPECT_EQ(sum.ops.fp32_mult, a.ops.fp32_mult + b.ops.fp32_mult);
  EXPECT_EQ(sum.bytes_moved, a.bytes_moved + b.bytes_moved);
  EXPECT_EQ(sum.dense_weights, 32.0 + 24.0);
}

TEST(LayerCost, DescribeNamesEachForm) {
  EXPECT_EQ(cost::describe(LayerForm::dense()), "dense fp32");
  EXPECT_EQ(cost::describe(LayerForm::quantized(4, 128)), "int4 g128 asym");
  EXPECT_EQ(cost::describe(LayerForm::quantized(8, 0, false, ActivationPath::int8)),
            "int8 per-row sym, int8 activations");
  EXPECT_EQ(cost::describe(LayerForm::sparse_csr(0.5, 16)), "csr 50% idx16");
  EXPECT_EQ(cost::describe(LayerForm::sparse_n_m(2, 4)), "2:4");
  EXPECT_EQ(cost::describe(LayerForm::low_rank(64)), "low-rank r64");
}

TEST(LayerCost, RejectsNonPositiveSizes) {
  EXPECT_THROW(cost::layer_cost({.out_features = 0, .in_features = 3}, LayerForm::dense()),
               slim::ShapeError);
  EXPECT_THROW(cost::layer_cost({.out_features = 2, .in_features = -3}, LayerForm::dense()),
               slim::ShapeError);
  EXPECT_THROW(
      cost::layer_cost({.out_features = 2, .in_features = 3, .tokens = -1}, LayerForm::dense()),
      slim::ShapeError);
  EXPECT_THAT([] { cost::layer_cost({.out_features = 2, .in_features = -3}, LayerForm::dense()); },
              testing::ThrowsMessage<slim::ShapeError>(testing::AllOf(
                  testing::HasSubstr("cost::layer_cost"), testing::HasSubstr("in_features -3"))));
}

TEST(LayerCost, RejectsBitsOutsideOneToThirtyTwo) {
  const LayerShape shape{.out_features = 2, .in_features = 8};
  EXPECT_THROW(cost::layer_cost(shape, LayerForm::quantized(0, 4)), slim::ArgumentError);
  EXPECT_THROW(cost::layer_cost(shape, LayerForm::quantized(33, 4)), slim::ArgumentError);
  EXPECT_NO_THROW(cost::layer_cost(shape, LayerForm::quantized(1, 4)));
  EXPECT_NO_THROW(cost::layer_cost(shape, LayerForm::quantized(32, 4)));
  EXPECT_THROW(cost::layer_cost(shape, LayerForm::quantized(9, 4, true, ActivationPath::int8)),
               slim::ArgumentError);
  auto bad_scale = LayerForm::quantized(4, 4);
  bad_scale.scale_bits = 0;
  EXPECT_THROW(cost::layer_cost(shape, bad_scale), slim::ArgumentError);
  EXPECT_THROW(cost::layer_cost(shape, LayerForm::dense(8)), slim::ArgumentError);
  EXPECT_THAT([&] { cost::layer_cost(shape, LayerForm::quantized(33, 4)); },
              testing::ThrowsMessage<slim::ArgumentError>(testing::HasSubstr("bits 33")));
}

TEST(LayerCost, RejectsGroupSizesThatDoNotDivideTheInputs) {
  const LayerShape shape{.out_features = 2, .in_features = 8};
  EXPECT_THROW(cost::layer_cost(shape, LayerForm::quantized(4, 3)), slim::ArgumentError);
  EXPECT_THROW(cost::layer_cost(shape, LayerForm::quantized(4, -4)), slim::ArgumentError);
}

TEST(LayerCost, RejectsSparsityOutsideHalfOpenUnitInterval) {
  const LayerShape shape{.out_features = 2, .in_features = 8};
  EXPECT_THROW(cost::layer_cost(shape, LayerForm::sparse_csr(-0.1)), slim::ArgumentError);
  EXPECT_THROW(cost::layer_cost(shape, LayerForm::sparse_csr(1.0)), slim::ArgumentError);
  EXPECT_THROW(cost::layer_cost(shape, LayerForm::sparse_csr(0.5, 8)), slim::ArgumentError);
  EXPECT_THROW(
      cost::layer_cost({.out_features = 2, .in_features = 70000}, LayerForm::sparse_csr(0.5, 16)),
      slim::ArgumentError);
  EXPECT_NO_THROW(
      cost::layer_cost({.out_features = 2, .in_features = 70000}, LayerForm::sparse_csr(0.5, 32)));
}

TEST(LayerCost, RejectsInvalidNmPatterns) {
  const LayerShape shape{.out_features = 2, .in_features = 8};
  EXPECT_THROW(cost::layer_cost(shape, LayerForm::sparse_n_m(0, 4)), slim::ArgumentError);
  EXPECT_THROW(cost::layer_cost(shape, LayerForm::sparse_n_m(5, 4)), slim::ArgumentError);
  EXPECT_THROW(cost::layer_cost(shape, LayerForm::sparse_n_m(1, 0)), slim::ArgumentError);
  EXPECT_THROW(cost::layer_cost(shape, LayerForm::sparse_n_m(2, 3)), slim::ShapeError);
}

TEST(LayerCost, RejectsRankZeroOrAboveTheSmallerDimension) {
  const LayerShape shape{.out_features = 6, .in_features = 4};
  EXPECT_THROW(cost::layer_cost(shape, LayerForm::low_rank(0)), slim::ArgumentError);
  EXPECT_THROW(cost::layer_cost(shape, LayerForm::low_rank(5)), slim::ArgumentError);
  EXPECT_NO_THROW(cost::layer_cost(shape, LayerForm::low_rank(4)));
}

}  // namespace

// The energy model against sums done by hand with Horowitz's 45 nm table, and its linearity.
#include <slim/cost.hpp>

#include <gtest/gtest.h>

#include <cmath>

namespace {

namespace cost = slim::cost;
using cost::LayerForm;

TEST(Energy, DenseTwoByThreeLayerEqualsHandSum) {
  // 6 MACs: 6 * 3.7 + 6 * 0.9 = 27.6 pJ; 6 fp32 weights from DRAM: 6 * 640 = 3840 pJ;
  // x (3 floats) and y (2 floats) through SRAM: 5 * 5 = 25 pJ.
  const auto c = cost::layer_cost({.out_features = 2, .in_features = 3}, LayerForm::dense());
  const auto e = cost::energy(c);
  EXPECT_DOUBLE_EQ(e.compute_pj, 27.6);
  EXPECT_DOUBLE_EQ(e.weight_memory_pj, 3840.0);
  EXPECT_DOUBLE_EQ(e.activation_memory_pj, 25.0);
  EXPECT_DOUBLE_EQ(e.total_pj, 3892.6);
  EXPECT_DOUBLE_EQ(e.joules(), 3892.6e-12);
}

TEST(Energy, Int8TwoByThreeLayerEqualsHandSum) {
  // int8 per-row symmetric weights, int8 activations, T = 1.
  //   quantize x: 3 fp32 add (abs-max) + 3 fp32 mult; 6 int8 mult + 6 int32 add;
  //   rescale per (token, output, group): 2 fp32 mult + 2 fp32 add; token scale: 2 fp32 mult.
  //   compute = 7 * 3.7 + 5 * 0.9 + 6 * 0.2 + 6 * 0.1 = 32.2 pJ
  //   weights: 6 code bytes + 2 fp16 scales = 10 bytes = 2.5 words * 640 = 1600 pJ
  //   activations: 12 + 8 bytes + 2 * 3 bytes of int8 x = 26 bytes = 6.5 words * 5 = 32.5 pJ
  const auto c = cost::layer_cost({.out_features = 2, .in_features = 3},
                                  LayerForm::quantized(8, 0, false, cost::ActivationPath::int8));
  const auto e = cost::energy(c);
  EXPECT_DOUBLE_EQ(e.compute_pj, 32.2);
  EXPECT_DOUBLE_EQ(e.weight_memory_pj, 1600.0);
  EXPECT_DOUBLE_EQ(e.activation_memory_pj, 32.5);
  EXPECT_DOUBLE_EQ(e.total_pj, 1664.7);
}

TEST(Energy, EachTableEntryPricesItsOwnCount) {
  const auto c = cost::layer_cost({.out_features = 4, .in_features = 8, .tokens = 2},
                                  LayerForm::quantized(4, 4, true, cost::ActivationPath::int8));
  auto only = [&c](double cost::EnergyTable::*entry) {
    cost::EnergyTable t{0, 0, 0, 0, 0, 0, 0, 0};
    t.*entry = 1.0;
    return cost::energy(c, t).total_pj;
  };
  EXPECT_EQ(only(&cost::EnergyTable::fp32_mult), c.ops.fp32_mult);
  EXPECT_EQ(only(&cost::EnergyTable::fp32_add), c.ops.fp32_add);
  EXPECT_EQ(only(&cost::EnergyTable::int8_mult), c.ops.int8_mult);
  EXPECT_EQ(only(&cost::EnergyTable::int8_add), c.ops.int8_add);
  EXPECT_EQ(only(&cost::EnergyTable::int32_mult), c.ops.int32_mult);
  EXPECT_EQ(only(&cost::EnergyTable::int32_add), c.ops.int32_add);
  EXPECT_EQ(only(&cost::EnergyTable::dram_read_32bit), c.weight_bytes / 4.0);
  EXPECT_EQ(only(&cost::EnergyTable::sram_read_32bit),
            (c.activation_in_bytes + c.activation_out_bytes + 2.0 * c.intermediate_bytes) / 4.0);
}

TEST(Energy, ScalesLinearlyWithTheTable) {
  const auto c =
      cost::layer_cost({.out_features = 6, .in_features = 4, .tokens = 3}, LayerForm::low_rank(2));
  cost::EnergyTable doubled;
  doubled.fp32_mult *= 2;
  doubled.fp32_add *= 2;
  doubled.int8_mult *= 2;
  doubled.int8_add *= 2;
  doubled.int32_mult *= 2;
  doubled.int32_add *= 2;
  doubled.dram_read_32bit *= 2;
  doubled.sram_read_32bit *= 2;
  EXPECT_DOUBLE_EQ(cost::energy(c, doubled).total_pj, 2.0 * cost::energy(c).total_pj);
}

TEST(Energy, CompressedFormsOfAGemvSpendLessThanDense) {
  // Weight traffic dominates a GEMV, so every form that stores fewer bytes spends less.
  const cost::LayerShape shape{.out_features = 256, .in_features = 256, .tokens = 1};
  const double dense = cost::energy(cost::layer_cost(shape, LayerForm::dense())).total_pj;
  for (const auto& form : {LayerForm::quantized(4), LayerForm::sparse_n_m(2, 4),
                           LayerForm::sparse_csr(0.75, 16), LayerForm::low_rank(32)}) {
    EXPECT_LT(cost::energy(cost::layer_cost(shape, form)).total_pj, dense) << cost::describe(form);
  }
}

TEST(Energy, RejectsNegativeOrNonFiniteTableEntries) {
  const auto c = cost::layer_cost({.out_features = 2, .in_features = 3}, LayerForm::dense());
  cost::EnergyTable negative;
  negative.dram_read_32bit = -1.0;
  EXPECT_THROW(cost::energy(c, negative), slim::ArgumentError);
  cost::EnergyTable nan;
  nan.fp32_add = std::nan("");
  EXPECT_THROW(cost::energy(c, nan), slim::ArgumentError);
}

}  // namespace

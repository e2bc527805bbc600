// Mixed precision under a bits budget: the knapsack allocation against brute-force enumeration,
// monotonicity in the budget, the plan on the trained test model between the uniform widths, the
// comparison row within the budget, and bad input.
#include <slim/pipeline.hpp>

#include "../support/reference_model.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace {

using slim::pipeline::allocate_under_budget;

struct Instance {
  std::vector<std::vector<double>> error;
  std::vector<std::vector<std::size_t>> bytes;
};

Instance random_instance(std::uint64_t seed, std::size_t layers, std::size_t candidates) {
  slim::random::Generator gen(seed);
  Instance in;
  for (std::size_t l = 0; l < layers; ++l) {
    std::vector<double> e;
    std::vector<std::size_t> b;
    for (std::size_t k = 0; k < candidates; ++k) {
      e.push_back(gen.uniform());
      b.push_back(1 + gen.below(40));
    }
    in.error.push_back(e);
    in.bytes.push_back(b);
  }
  return in;
}

// The least total error within the budget over every combination.
double brute_force(const Instance& in, std::size_t budget) {
  const std::size_t layers = in.error.size();
  std::vector<std::size_t> pick(layers, 0);
  double best = std::numeric_limits<double>::infinity();
  while (true) {
    double e = 0.0;
    std::size_t b = 0;
    for (std::size_t l = 0; l < layers; ++l) {
      e += in.error[l][pick[l]];
      b += in.bytes[l][pick[l]];
    }
    if (b <= budget) best = std::min(best, e);
    std::size_t l = 0;
    while (l < layers && ++pick[l] == in.error[l].size()) pick[l++] = 0;
    if (l == layers) break;
  }
  return best;
}

TEST(MixedPrecisionAllocation, EqualsBruteForceOnSmallInstances) {
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    const Instance in = random_instance(seed, 5, 3);
    std::size_t smallest = 0, largest = 0;
    for (const auto& b : in.bytes) {
      smallest += *std::min_element(b.begin(), b.end());
      largest += *std::max_element(b.begin(), b.end());
    }
    const std::size_t budget = smallest + (largest - smallest) * (seed % 5) / 4;
    const auto a = allocate_under_budget(in.error, in.bytes, budget);
    EXPECT_LE(a.bytes, budget) << seed;
    EXPECT_NEAR(a.error, brute_force(in, budget), 1e-12) << seed;
    double e = 0.0;
    std::size_t b = 0;
    for (std::size_t l = 0; l < a.choice.size(); ++l) {
      e += in.error[l][std::size_t(a.choice[l])];
      b += in.bytes[l][std::size_t(a.choice[l])];
    }
    EXPECT_NEAR(e, a.error, 1e-12);
    EXPECT_EQ(b, a.bytes);
  }
}

TEST(MixedPrecisionAllocation, CoarseUnitsStayWithinBudgetAndErrorFallsWithBudget) {
  const Instance in = random_instance(99, 12, 4);
  double previous = std::numeric_limits<double>::infinity();
  for (std::size_t budget = 250; budget <= 480; budget += 10) {
    const auto coarse = allocate_under_budget(in.error, in.bytes, budget, 16);
    const auto exact = allocate_under_budget(in.error, in.bytes, budget);
    EXPECT_LE(coarse.bytes, budget);
    EXPECT_GE(coarse.error, exact.error - 1e-12);
    EXPECT_LE(exact.error, previous + 1e-12);
    previous = exact.error;
  }
}

TEST(MixedPrecisionOnTestModel, PlanLiesBetweenTheUniformWidthsAndRowKeepsTheBudget) {
  const auto& m = slim::test::reference_model();
  const auto calib = slim::test::reference_calibration(4);
  slim::pipeline::MixedPrecisionOptions o;
  o.bits = {3, 4};
  o.gptq = false;
  // 3-bit g32 asym (no kernel: its packed format) stores about 3.6 bits per weight; 4-bit runs
  // on quant::Linear, whose repacked rows are padded to 64 inputs, so on this 32-wide model it
  // counts about 9: a target between them must mix the two.
  o.bits_per_weight = 4.3;
  const auto plan = slim::pipeline::plan_mixed_precision(m, calib.inputs, o);
  double uniform3 = 0.0, uniform4 = 0.0;
  for (const auto& e : plan.error) {
    uniform3 += e[0];
    uniform4 += e[1];
  }
  EXPECT_LT(plan.allocation.error, uniform3);
  EXPECT_GT(plan.allocation.error, uniform4);
  int threes = 0, fours = 0;
  for (int b : plan.bits) (b == 3 ? threes : fours) += 1;
  EXPECT_GT(threes, 0);
  EXPECT_GT(fours, 0);

  slim::pipeline::CompareOptions c;
  c.calibration_windows = 4;
  c.eval_windows = 2;
  c.latency_tokens = 2;
  c.latency_repetitions = 1;
  const auto rows = slim::pipeline::compare(m, slim::test::reference_corpus(), {}, c,
                                            {slim::pipeline::mixed_precision_method(o)});
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_LE(rows[1].bits_per_weight, 4.3);
  EXPECT_GT(rows[1].bits_per_weight, 3.5);
  EXPECT_FALSE(rows[1].has_kernel);  // some layers are 3-bit, which runs dequantized
}

TEST(MixedPrecision, BadInputThrowsTypedErrors) {
  const Instance in = random_instance(3, 3, 2);
  EXPECT_THROW(allocate_under_budget(in.error, in.bytes, 2), slim::ArgumentError);
  EXPECT_THROW(allocate_under_budget({}, {}, 100), slim::ArgumentError);
  auto ragged = in;
  ragged.bytes[1].pop_back();
  EXPECT_THROW(allocate_under_budget(ragged.error, ragged.bytes, 100), slim::ArgumentError);
  auto nan = in;
  nan.error[0][0] = std::nan("");
  EXPECT_THROW(allocate_under_budget(nan.error, nan.bytes, 100), slim::ArgumentError);
  const auto& m = slim::test::reference_model();
  const auto calib = slim::test::reference_calibration(1);
  slim::pipeline::MixedPrecisionOptions o;
  o.bits = {9};
  EXPECT_THROW(slim::pipeline::plan_mixed_precision(m, calib.inputs, o), slim::ArgumentError);
  o.bits = {4};
  o.bits_per_weight = 1.0;  // below 4-bit's 4.5+ bits per weight
  EXPECT_THROW(slim::pipeline::plan_mixed_precision(m, calib.inputs, o), slim::ArgumentError);
}

}  // namespace

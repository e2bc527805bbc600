// The comparison score: exactly 1 for the baseline, monotone in each ratio, the presets weigh as
// the header documents (closed form and the worked example), and bad input throws.
#include <slim/cost.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace {

namespace cost = slim::cost;
using cost::Ratios;
using cost::ScoreWeights;

std::vector<std::pair<std::string, ScoreWeights>> presets() {
  return {{"balanced", ScoreWeights::balanced()},
          {"accuracy_first", ScoreWeights::accuracy_first()},
          {"latency_first", ScoreWeights::latency_first()},
          {"energy_first", ScoreWeights::energy_first()},
          {"size_first", ScoreWeights::size_first()}};
}

// The closed form written with pow instead of exp/log, as the header's second line states it.
double product_form(const Ratios& r, const ScoreWeights& w) {
  const double total = w.accuracy + w.latency + w.energy + w.size;
  return std::pow(std::pow(r.accuracy, w.accuracy) * std::pow(r.latency, w.latency) *
                      std::pow(r.energy, w.energy) * std::pow(r.size, w.size),
                  1.0 / total);
}

TEST(Score, BaselineScoresExactlyOneUnderEveryPreset) {
  const cost::Measurement baseline{
      .perplexity = 7.31, .latency_seconds = 0.0123, .energy_joules = 0.42, .bytes = 13.5e9};
  for (const auto& [name, weights] : presets()) {
    EXPECT_EQ(cost::score(Ratios{}, weights), 1.0) << name;
    EXPECT_EQ(cost::score(baseline, baseline, weights), 1.0) << name;
  }
  EXPECT_EQ(cost::score(Ratios{}, ScoreWeights{.accuracy = 0.7, .latency = 0, .energy = 2.5}), 1.0);
}

TEST(Score, PresetsHaveTheDocumentedWeights) {
  auto same = [](const ScoreWeights& w, double a, double l, double e, double s) {
    return w.accuracy == a && w.latency == l && w.energy == e && w.size == s;
  };
  EXPECT_TRUE(same(ScoreWeights::balanced(), 3, 1, 1, 1));
  EXPECT_TRUE(same(ScoreWeights{}, 3, 1, 1, 1));
  EXPECT_TRUE(same(ScoreWeights::accuracy_first(), 6, 1, 1, 1));
  EXPECT_TRUE(same(ScoreWeights::latency_first(), 3, 3, 1, 1));
  EXPECT_TRUE(same(ScoreWeights::energy_first(), 3, 1, 3, 1));
  EXPECT_TRUE(same(ScoreWeights::size_first(), 3, 1, 1, 3));
}

TEST(Score, EqualsTheWeightedGeometricMeanOfTheRatios) {
  const Ratios r{.accuracy = 1.07, .latency = 0.41, .energy = 0.33, .size = 0.27};
  for (const auto& [name, weights] : presets()) {
    EXPECT_NEAR(cost::score(r, weights), product_form(r, weights), 1e-14) << name;
  }
}

TEST(Score, TwiceSmallerTenPercentWorseModelScoresAsDocumented) {
  // The header's worked example, to the four digits it quotes.
  const Ratios r{.accuracy = 1.1, .latency = 1.0, .energy = 1.0, .size = 0.5};
  EXPECT_NEAR(cost::score(r, ScoreWeights::balanced()), 0.9344, 5e-5);
  EXPECT_NEAR(cost::score(r, ScoreWeights::accuracy_first()), 0.9866, 5e-5);
  EXPECT_NEAR(cost::score(r, ScoreWeights::latency_first()), 0.9504, 5e-5);
  EXPECT_NEAR(cost::score(r, ScoreWeights::energy_first()), 0.9504, 5e-5);
  EXPECT_NEAR(cost::score(r, ScoreWeights::size_first()), 0.7992, 5e-5);
  // Break-even under balanced: half the size pays for a perplexity ratio of 2^(1/3).
  const Ratios even{.accuracy = std::cbrt(2.0), .size = 0.5};
  EXPECT_NEAR(cost::score(even, ScoreWeights::balanced()), 1.0, 1e-15);
}

TEST(Score, RisesStrictlyWithEachRatio) {
  const double grid[] = {0.1, 0.5, 0.9, 1.0, 1.1, 2.0, 10.0};
  for (const auto& [name, weights] : presets()) {
    for (double Ratios::*term :
         {&Ratios::accuracy, &Ratios::latency, &Ratios::energy, &Ratios::size}) {
      Ratios r{.accuracy = 1.02, .latency = 0.6, .energy = 0.5, .size = 0.3};
      double previous = -1.0;
      for (double value : grid) {
        r.*term = value;
        const double s = cost::score(r, weights);
        EXPECT_GT(s, previous) << name << " at " << value;
        previous = s;
      }
    }
  }
}

TEST(Score, IgnoresZeroWeightTermsAndOverallWeightScale) {
  const Ratios r{.accuracy = 1.05, .latency = 0.4, .energy = 0.35, .size = 0.25};
  const ScoreWeights w{.accuracy = 2, .latency = 1, .energy = 0, .size = 1};
  Ratios other = r;
  other.energy = 123.0;
  EXPECT_EQ(cost::score(r, w), cost::score(other, w));
  const ScoreWeights scaled{.accuracy = 20, .latency = 10, .energy = 0, .size = 10};
  EXPECT_NEAR(cost::score(r, scaled), cost::score(r, w), 1e-15);
}

TEST(Score, PresetsFavourTheirOwnTerm) {
  // A model that only got faster is rewarded most by latency_first, one that only got smaller by
  // size_first, one that only saves energy by energy_first.
  const Ratios faster{.latency = 0.5};
  const Ratios smaller{.size = 0.5};
  const Ratios frugal{.energy = 0.5};
  for (const auto& [name, weights] : presets()) {
    if (name != "latency_first") {
      EXPECT_LT(cost::score(faster, ScoreWeights::latency_first()), cost::score(faster, weights));
    }
    if (name != "size_first") {
      EXPECT_LT(cost::score(smaller, ScoreWeights::size_first()), cost::score(smaller, weights));
    }
    if (name != "energy_first") {
      EXPECT_LT(cost::score(frugal, ScoreWeights::energy_first()), cost::score(frugal, weights));
    }
  }
  // And accuracy_first penalises a perplexity loss most.
  const Ratios worse{.accuracy = 1.1};
  for (const auto& [name, weights] : presets()) {
    if (name != "accuracy_first") {
      EXPECT_GT(cost::score(worse, ScoreWeights::accuracy_first()), cost::score(worse, weights));
    }
  }
}

TEST(Score, RatiosDivideCandidateByBaselineAndLossRatioIsPerplexityRatio) {
  const cost::Measurement base{
      .perplexity = 8.0, .latency_seconds = 2.0, .energy_joules = 4.0, .bytes = 1000.0};
  const cost::Measurement cand{
      .perplexity = 8.8, .latency_seconds = 1.0, .energy_joules = 1.0, .bytes = 250.0};
  const Ratios r = cost::ratios(cand, base);
  EXPECT_DOUBLE_EQ(r.accuracy, 1.1);
  EXPECT_EQ(r.latency, 0.5);
  EXPECT_EQ(r.energy, 0.25);
  EXPECT_EQ(r.size, 0.25);
  EXPECT_EQ(cost::score(cand, base, ScoreWeights::size_first()),
            cost::score(r, ScoreWeights::size_first()));
  const double loss = 2.31;
  const double base_loss = 2.17;
  EXPECT_NEAR(cost::accuracy_ratio_from_loss(loss, base_loss), std::exp(loss) / std::exp(base_loss),
              1e-12);
  EXPECT_EQ(cost::accuracy_ratio_from_loss(base_loss, base_loss), 1.0);
}

TEST(Score, RejectsBadWeights) {
  const Ratios r{};
  EXPECT_THROW(cost::score(r, ScoreWeights{.accuracy = -1}), slim::ArgumentError);
  EXPECT_THROW(cost::score(r, ScoreWeights{0, 0, 0, 0}), slim::ArgumentError);
  EXPECT_THROW(cost::score(r, ScoreWeights{.size = std::numeric_limits<double>::infinity()}),
               slim::ArgumentError);
}

TEST(Score, RejectsNonPositiveOrNonFiniteRatios) {
  EXPECT_THROW(cost::score(Ratios{.size = 0.0}), slim::ArgumentError);
  EXPECT_THROW(cost::score(Ratios{.latency = -0.5}), slim::ArgumentError);
  EXPECT_THROW(cost::score(Ratios{.accuracy = std::nan("")}), slim::NumericalError);
  EXPECT_THROW(cost::score(Ratios{.energy = std::numeric_limits<double>::infinity()}),
               slim::NumericalError);
  const cost::Measurement good{
      .perplexity = 8.0, .latency_seconds = 2.0, .energy_joules = 4.0, .bytes = 1000.0};
  cost::Measurement bad = good;
  bad.bytes = 0.0;
  EXPECT_THROW(cost::ratios(bad, good), slim::ArgumentError);
  EXPECT_THROW(cost::ratios(good, bad), slim::ArgumentError);
  bad = good;
  bad.perplexity = std::numeric_limits<double>::infinity();
  EXPECT_THROW(cost::ratios(bad, good), slim::NumericalError);
  EXPECT_THROW(cost::accuracy_ratio_from_loss(std::nan(""), 1.0), slim::NumericalError);
}

}  // namespace

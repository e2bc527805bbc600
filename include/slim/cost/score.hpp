// One comparison score over accuracy loss, latency, energy and size: the weighted geometric mean
// of each quantity's ratio to the uncompressed baseline. The command-line tool's comparison table
// ranks by it; the presets are slim's own choice (no paper defines one), documented below.
//
//   score = exp( (w_a ln r_a + w_l ln r_l + w_e ln r_e + w_s ln r_s) / (w_a + w_l + w_e + w_s) )
//         = (r_a^w_a * r_l^w_l * r_e^w_e * r_s^w_s) ^ (1 / (w_a + w_l + w_e + w_s))
//
//   r_a = perplexity / baseline perplexity  (= exp(loss - baseline loss), since ppl = exp(loss))
//   r_l = latency / baseline latency,  r_e = energy / baseline energy,  r_s = bytes / baseline
//   bytes
//
// Lower is better. The baseline has every ratio exactly 1, so ln r = 0 and its score is exactly
// 1.0; a score below 1 beats the baseline under those weights. The score rises strictly with each
// ratio whose weight is positive, ignores a ratio whose weight is 0, and is unchanged when all
// weights are scaled together. Being a geometric mean it trades ratios multiplicatively: with
// weights w_a and w_s, halving the size pays for a perplexity ratio of up to 2^(w_s / w_a).
//
// Presets (accuracy, latency, energy, size). Accuracy always weighs 3 - as much as the three
// costs together in `balanced` - because perplexity ratios of usable models sit within a few
// tens of percent of 1 while sizes and latencies move by factors of 2 to 8.
//
//   preset          weights      2x smaller, 10% worse perplexity, same latency and energy
//   balanced        3, 1, 1, 1   exp((3 ln 1.1 + ln 0.5) / 6)   = 0.9344
//   accuracy_first  6, 1, 1, 1   exp((6 ln 1.1 + ln 0.5) / 9)   = 0.9866
//   latency_first   3, 3, 1, 1   exp((3 ln 1.1 + ln 0.5) / 8)   = 0.9504
//   energy_first    3, 1, 3, 1   exp((3 ln 1.1 + ln 0.5) / 8)   = 0.9504
//   size_first      3, 1, 1, 3   exp((3 ln 1.1 + 3 ln 0.5) / 8) = 0.7992
//
// (latency_first and energy_first score this model alike because it did not change either;
// their weight on unchanged terms only dilutes the rest. Under balanced, a 2x size reduction
// breaks even with 26% worse perplexity; under size_first with 100% worse; under
// accuracy_first with 12% worse.)
#pragma once

#include <slim/core/error.hpp>

#include <cmath>

namespace slim::cost {

// Importance of each ratio; only relative sizes matter. Default: the `balanced` preset.
struct ScoreWeights {
  double accuracy = 3.0;
  double latency = 1.0;
  double energy = 1.0;
  double size = 1.0;

  static ScoreWeights balanced() { return {3.0, 1.0, 1.0, 1.0}; }
  static ScoreWeights accuracy_first() { return {6.0, 1.0, 1.0, 1.0}; }
  static ScoreWeights latency_first() { return {3.0, 3.0, 1.0, 1.0}; }
  static ScoreWeights energy_first() { return {3.0, 1.0, 3.0, 1.0}; }
  static ScoreWeights size_first() { return {3.0, 1.0, 1.0, 3.0}; }
};

// Each quantity of a candidate divided by the baseline's; 1 = unchanged, lower = better.
struct Ratios {
  double accuracy = 1.0;  // perplexity ratio, or exp(loss - baseline loss)
  double latency = 1.0;
  double energy = 1.0;
  double size = 1.0;
};

// What the comparison table knows about one model (or layer); any consistent units.
struct Measurement {
  double perplexity = 0.0;
  double latency_seconds = 0.0;
  double energy_joules = 0.0;
  double bytes = 0.0;
};

namespace detail {

inline void require_positive_finite(double value, const char* fn, const char* who,
                                    const char* name) {
  require<NumericalError>(std::isfinite(value), fn, ": ", who, name, " ", value,
                          " is not finite; expected a positive finite number");
  require<ArgumentError>(value > 0.0, fn, ": ", who, name, " ", value,
                         " is not positive; expected a positive finite number");
}

inline void require_weight(double value, const char* name) {
  require<ArgumentError>(std::isfinite(value) && value >= 0.0, "cost::score: weight ", name, " ",
                         value, " must be finite and non-negative");
}

}  // namespace detail

// exp(loss - baseline_loss): the perplexity ratio when losses are mean cross-entropies in nats.
// Throws NumericalError for a non-finite loss.
inline double accuracy_ratio_from_loss(double loss, double baseline_loss) {
  require<NumericalError>(std::isfinite(loss) && std::isfinite(baseline_loss),
                          "cost::accuracy_ratio_from_loss: loss ", loss, " or baseline_loss ",
                          baseline_loss, " is not finite");
  return std::exp(loss - baseline_loss);
}

// The ratios of `candidate` to `baseline`. Throws ArgumentError for a non-positive quantity and
// NumericalError for a non-finite one.
inline Ratios ratios(const Measurement& candidate, const Measurement& baseline) {
  constexpr const char* fn = "cost::ratios";
  auto check = [fn](const Measurement& m, const char* who) {
    detail::require_positive_finite(m.perplexity, fn, who, "perplexity");
    detail::require_positive_finite(m.latency_seconds, fn, who, "latency_seconds");
    detail::require_positive_finite(m.energy_joules, fn, who, "energy_joules");
    detail::require_positive_finite(m.bytes, fn, who, "bytes");
  };
  check(candidate, "candidate ");
  check(baseline, "baseline ");
  return Ratios{candidate.perplexity / baseline.perplexity,
                candidate.latency_seconds / baseline.latency_seconds,
                candidate.energy_joules / baseline.energy_joules, candidate.bytes / baseline.bytes};
}

// The weighted geometric mean of the ratios (see the header comment); lower is better and all
// ratios 1 give exactly 1. Throws ArgumentError for a negative or non-finite weight, all-zero
// weights or a non-positive ratio, NumericalError for a non-finite ratio.
inline double score(const Ratios& r, const ScoreWeights& w = ScoreWeights::balanced()) {
  constexpr const char* fn = "cost::score";
  detail::require_weight(w.accuracy, "accuracy");
  detail::require_weight(w.latency, "latency");
  detail::require_weight(w.energy, "energy");
  detail::require_weight(w.size, "size");
  const double total = w.accuracy + w.latency + w.energy + w.size;
  require<ArgumentError>(total > 0.0, fn, ": the weights sum to ", total,
                         "; expected at least one positive weight");
  detail::require_positive_finite(r.accuracy, fn, "", "accuracy ratio");
  detail::require_positive_finite(r.latency, fn, "", "latency ratio");
  detail::require_positive_finite(r.energy, fn, "", "energy ratio");
  detail::require_positive_finite(r.size, fn, "", "size ratio");
  const double log_sum = w.accuracy * std::log(r.accuracy) + w.latency * std::log(r.latency) +
                         w.energy * std::log(r.energy) + w.size * std::log(r.size);
  return std::exp(log_sum / total);
}

// score(ratios(candidate, baseline), weights).
inline double score(const Measurement& candidate, const Measurement& baseline,
                    const ScoreWeights& weights = ScoreWeights::balanced()) {
  return score(ratios(candidate, baseline), weights);
}

}  // namespace slim::cost

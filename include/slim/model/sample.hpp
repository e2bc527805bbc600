// Text generation with the KV-cache decode step: greedy (temperature 0) or sampling from
// softmax(logits / temperature), reproducible from a seed (llama2.c run.c's `sample`).
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/random.hpp>
#include <slim/core/types.hpp>
#include <slim/model/tokenizer.hpp>
#include <slim/model/transformer.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

namespace slim::model {

struct SampleOptions {
  Index max_new_tokens = 256;  // stops earlier at EOS or at seq_len
  double temperature = 0.8;    // 0 = greedy (argmax)
  std::uint64_t seed = 1;
  std::int32_t stop_token = ByteTokenizer::eos;  // -1: never stop early
};

// Index drawn from softmax(logits / temperature), or the argmax when temperature is 0.
inline std::int32_t sample_token(const Vector& logits, double temperature, random::Generator& gen) {
  require<ArgumentError>(temperature >= 0.0 && std::isfinite(temperature),
                         "model::sample_token: temperature ", temperature,
                         " must be finite and non-negative");
  Index best = 0;
  logits.maxCoeff(&best);
  if (temperature == 0.0) return static_cast<std::int32_t>(best);
  const Eigen::ArrayXd p = ((logits.cast<double>().array() - logits(best)) / temperature).exp();
  double u = gen.uniform() * p.sum();
  for (Index i = 0; i < p.size(); ++i) {
    u -= p(i);
    if (u < 0.0) return static_cast<std::int32_t>(i);
  }
  return static_cast<std::int32_t>(best);
}

// Feeds `prompt` (non-empty, e.g. {BOS}) and continues it; returns the new tokens only.
inline std::vector<std::int32_t> generate(const Transformer& model,
                                          const std::vector<std::int32_t>& prompt,
                                          const SampleOptions& options = {}) {
  require<ArgumentError>(!prompt.empty(),
                         "model::generate: prompt is empty; expected at least "
                         "one token (e.g. BOS)");
  require<ArgumentError>(static_cast<Index>(prompt.size()) <= model.config().seq_len,
                         "model::generate: prompt of ", prompt.size(), " tokens exceeds seq_len ",
                         model.config().seq_len);
  require<ArgumentError>(options.max_new_tokens >= 0, "model::generate: max_new_tokens ",
                         options.max_new_tokens, " must be non-negative");
  random::Generator gen(options.seed);
  DecodeState state = model.start();
  Vector logits;
  for (const auto t : prompt) logits = model.decode(state, t);
  std::vector<std::int32_t> out;
  while (static_cast<Index>(out.size()) < options.max_new_tokens) {
    const std::int32_t next = sample_token(logits, options.temperature, gen);
    if (next == options.stop_token) break;
    out.push_back(next);
    if (state.position >= model.config().seq_len) break;
    logits = model.decode(state, next);
  }
  return out;
}

}  // namespace slim::model

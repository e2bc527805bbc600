// Tiny random reference decoders for tests that need exact gradients rather than a trained model:
// a 2-layer config, weights large enough that attention is far from uniform, random tokens.
#pragma once

#include <slim/model.hpp>

#include <cstdint>
#include <string>

namespace slim::test {

using model::Config;
using model::TokenBatch;
using model::Weights;

inline Config tiny_config(bool shared) {
  return Config{.dim = 16,
                .hidden_dim = 24,
                .n_layers = 2,
                .n_heads = 4,
                .n_kv_heads = 2,
                .vocab_size = 11,
                .seq_len = 8,
                .shared_classifier = shared};
}

// Weights with large enough entries that attention is far from uniform and every gain matters.
inline Weights lively_weights(const Config& c, std::uint64_t seed) {
  Weights w = Weights::random(c, seed);
  slim::random::Generator gen(seed + 1);
  w.for_each_parameter([&](const std::string& name, auto p) {
    const bool gain = name.find("norm") != std::string::npos;
    for (Index i = 0; i < p.size(); ++i) {
      p.data()[i] = gain ? static_cast<float>(1.0 + 0.3 * gen.normal())
                         : static_cast<float>(0.35 * gen.normal());
    }
  });
  return w;
}

inline TokenBatch random_tokens(Index rows, Index cols, Index vocab, std::uint64_t seed) {
  slim::random::Generator gen(seed);
  TokenBatch t(rows, cols);
  for (Index i = 0; i < t.size(); ++i) {
    t.data()[i] = static_cast<std::int32_t>(gen.below(static_cast<std::uint64_t>(vocab)));
  }
  return t;
}

}  // namespace slim::test

// Test access to the trained reference model: the tiny test model (model::test_recipe) that the
// ctest fixture fixture.TrainTestModel caches, the fortunes corpus, and real calibration
// activations of a named linear layer captured through the model's hook on validation text.
#pragma once

#include <slim/model.hpp>

#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>

namespace slim::test {

inline std::string reference_cache_directory() {
  return model::cache_directory(SLIM_TEST_BINARY_DIR "/cache");
}

inline const model::Corpus& reference_corpus() {
  static const model::Corpus corpus = model::load_fortunes();
  return corpus;
}

// The cached test model. Throws std::runtime_error when the fixture has not run.
inline const model::Transformer& reference_model() {
  static const model::Transformer m = [] {
    const model::Recipe recipe = model::test_recipe();
    const std::string path =
        model::cache_path(recipe, reference_corpus(), reference_cache_directory());
    auto weights = model::load_cached_model(path, model::recipe_tag(recipe, reference_corpus()));
    if (!weights) {
      throw std::runtime_error("reference_model: no valid cached test model at '" + path +
                               "'; run the fixture (ctest -R fixture.TrainTestModel or "
                               "slim_make_test_model) first");
    }
    return model::Transformer(std::move(*weights));
  }();
  return m;
}

// The first `windows` validation windows of seq_len tokens (fixed; inputs and next-token targets).
inline model::TokenPairs reference_validation(Index windows = 16) {
  return model::consecutive_windows(reference_corpus().validation_tokens,
                                    reference_model().config().seq_len, windows);
}

// The first `windows` training windows of seq_len tokens: calibration data for the reference model.
inline model::TokenPairs reference_calibration(Index windows) {
  return model::consecutive_windows(reference_corpus().train_tokens,
                                    reference_model().config().seq_len, windows);
}

// Input activations (rows x in_features) of the named linear layer of the reference model, e.g.
// "layers.1.feed_forward.w2", on the first validation windows: real calibration data with the
// outlier channels and correlations of a trained model. At most `max_rows` rows (whole windows).
inline Matrix reference_activations(const std::string& layer, Index max_rows = 1024) {
  static std::map<std::pair<std::string, Index>, Matrix> memo;
  const auto key = std::make_pair(layer, max_rows);
  if (auto it = memo.find(key); it != memo.end()) return it->second;
  model::Transformer m = reference_model();
  const Index seq = m.config().seq_len;
  const Index windows = std::max<Index>(1, max_rows / seq);
  const model::TokenPairs data = reference_validation(windows);
  Matrix captured;
  bool seen = false;
  m.set_hook([&](const std::string& name, const Eigen::Ref<const Matrix>& x) {
    if (name == layer) {
      captured = x;
      seen = true;
    }
  });
  m.forward(data.inputs);
  require<ArgumentError>(seen, "reference_activations: no linear layer named '", layer, "'");
  if (captured.rows() > max_rows) captured.conservativeResize(max_rows, Eigen::NoChange);
  memo[key] = captured;
  return captured;
}

}  // namespace slim::test

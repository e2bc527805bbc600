// ctest fixture fixture.TrainTestModel: trains the tiny test model (model::test_recipe) on the
// fortunes corpus and caches it in $SLIM_CACHE_DIR (default <build>/cache); does nothing when the
// cache already holds a model made from the same recipe and corpus.
#include <slim/model.hpp>

#include <cmath>
#include <cstdio>
#include <exception>

int main() {
  try {
    const std::string dir = slim::model::cache_directory(SLIM_TEST_BINARY_DIR "/cache");
    const slim::model::Corpus corpus = slim::model::load_fortunes();
    bool trained = false;
    const auto model = slim::model::load_or_train(
        slim::model::test_recipe(), corpus, dir, &trained, [](const slim::model::TrainProgress& p) {
          if (p.step % 100 == 0 || p.step == p.steps) {
            std::printf("step %ld/%ld loss %.3f bits/byte %.1fs\n", static_cast<long>(p.step),
                        static_cast<long>(p.steps), p.smoothed_loss / std::log(2.0),
                        p.elapsed_seconds);
          }
        });
    std::printf("%s test model in %s (%ld parameters)\n", trained ? "trained" : "cached",
                slim::model::cache_path(slim::model::test_recipe(), corpus, dir).c_str(),
                static_cast<long>(model.weights().parameter_count()));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_test_model: %s\n", e.what());
    return 1;
  }
}

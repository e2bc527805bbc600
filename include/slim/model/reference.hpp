// The bundled reference models and their cache: recipes (config + training options) for the
// default model (~1 M parameters, minutes on two cores) and the tiny test model (seconds), and a
// private binary cache format so tests and tools train each model once per cache folder.
// Cache file "<name>-<hash>.slimref": magic "SLIMREF1", the recipe tag (every setting that decides
// the weights, so a changed recipe or corpus retrains), the parameters in
// Weights::for_each_parameter order as little-endian fp32, an FNV-1a checksum. Written atomically
// (temporary file + rename).
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/types.hpp>
#include <slim/io/file.hpp>
#include <slim/model/config.hpp>
#include <slim/model/corpus.hpp>
#include <slim/model/train.hpp>
#include <slim/model/transformer.hpp>
#include <slim/model/weights.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace slim::model {

struct Recipe {
  std::string name;
  Config config;
  TrainOptions train;
  std::uint64_t init_seed = 1;
};

// The default model: dim 128, 4 layers, 4 heads (2 KV heads), SwiGLU 384, tied classifier.
inline Recipe default_recipe() {
  Recipe r;
  r.name = "default";
  r.config = Config{.dim = 128,
                    .hidden_dim = 384,
                    .n_layers = 4,
                    .n_heads = 4,
                    .n_kv_heads = 2,
                    .vocab_size = ByteTokenizer::vocab_size,
                    .seq_len = 128,
                    .shared_classifier = true};
  r.train.steps = 2500;
  r.train.batch_size = 16;
  r.train.learning_rate = 3e-3;
  r.train.min_learning_rate = 3e-4;
  r.train.warmup_steps = 100;
  return r;
}

// The unit-test model: dim 32, 2 layers, 4 heads (2 KV heads), untied classifier, seq_len 64.
inline Recipe test_recipe() {
  Recipe r;
  r.name = "test";
  r.config = Config{.dim = 32,
                    .hidden_dim = 96,
                    .n_layers = 2,
                    .n_heads = 4,
                    .n_kv_heads = 2,
                    .vocab_size = ByteTokenizer::vocab_size,
                    .seq_len = 64,
                    .shared_classifier = false};
  r.train.steps = 600;
  r.train.batch_size = 16;
  r.train.learning_rate = 5e-3;
  r.train.min_learning_rate = 5e-4;
  r.train.warmup_steps = 30;
  return r;
}

// Every setting that decides the trained weights, plus the corpus size.
inline std::string recipe_tag(const Recipe& r, const Corpus& corpus) {
  const Config& c = r.config;
  const TrainOptions& t = r.train;
  std::ostringstream s;
  s.precision(17);
  s << "slimref v2 " << r.name << " dim " << c.dim << " hidden " << c.hidden_dim << " layers "
    << c.n_layers << " heads " << c.n_heads << " kv " << c.n_kv_heads << " vocab " << c.vocab_size
    << " seq " << c.seq_len << " shared " << c.shared_classifier << " init " << r.init_seed
    << " steps " << t.steps << " batch " << t.batch_size << " tokens " << t.tokens << " lr "
    << t.learning_rate << " min_lr " << t.min_learning_rate << " warmup " << t.warmup_steps
    << " wd " << t.weight_decay << " betas " << t.beta1 << " " << t.beta2 << " clip " << t.clip_norm
    << " seed " << t.seed << " corpus " << corpus.train_tokens.size() << " "
    << corpus.validation_tokens.size();
  return s.str();
}

namespace detail {

inline std::uint64_t fnv1a(const std::uint8_t* data, std::size_t n) {
  std::uint64_t h = 1469598103934665603ULL;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= data[i];
    h *= 1099511628211ULL;
  }
  return h;
}

constexpr char kCacheMagic[8] = {'S', 'L', 'I', 'M', 'R', 'E', 'F', '1'};

}  // namespace detail

// Writes `weights` with `tag` to `path` atomically.
inline void save_cached_model(const std::string& path, const Weights& weights,
                              const std::string& tag) {
  weights.validate();
  std::vector<std::uint8_t> payload;
  io::ByteWriter body(payload);
  weights.for_each_parameter(
      [&](const std::string&, const auto& p) { body.write(p.data(), sizeof(float) * p.size()); });
  io::write_file_atomic(path, [&](io::ByteWriter& out) {
    out.write(detail::kCacheMagic, sizeof detail::kCacheMagic);
    out.write_value(static_cast<std::uint32_t>(tag.size()));
    out.write(tag.data(), tag.size());
    const Config& c = weights.config;
    for (const Index v : {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size,
                          c.seq_len, static_cast<Index>(c.shared_classifier)}) {
      out.write_value(static_cast<std::int64_t>(v));
    }
    out.write_value(static_cast<std::uint64_t>(payload.size()));
    out.write(payload.data(), payload.size());
    out.write_value(detail::fnv1a(payload.data(), payload.size()));
  });
}

// Reads a cache file. Returns nothing when it is missing or was made from another recipe (tag);
// throws FormatError when it is corrupt, IoError when it cannot be read.
inline std::optional<Weights> load_cached_model(const std::string& path,
                                                const std::string& expected_tag) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::nullopt;
  const std::vector<std::uint8_t> bytes = io::read_file(path);
  io::ByteReader in(bytes.data(), bytes.size(), "model cache '" + path + "'");
  const std::uint8_t* magic = in.take(sizeof detail::kCacheMagic, "magic");
  require<FormatError>(std::memcmp(magic, detail::kCacheMagic, sizeof detail::kCacheMagic) == 0,
                       "model cache '", path, "': bad magic; expected SLIMREF1");
  const auto tag_size = in.read<std::uint32_t>("tag length");
  const std::uint8_t* tag = in.take(tag_size, "tag");
  if (std::string(reinterpret_cast<const char*>(tag), tag_size) != expected_tag) {
    return std::nullopt;
  }
  std::int64_t f[8];
  for (auto& v : f) v = in.read<std::int64_t>("config");
  Config c{f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7] != 0};
  try {
    c.validate();
  } catch (const ArgumentError& e) {
    throw FormatError(slim::detail::concat("model cache '", path, "': ", e.what()));
  }
  Weights w = Weights::zeros(c);
  const auto size = in.read<std::uint64_t>("payload length");
  require<FormatError>(size == sizeof(float) * static_cast<std::uint64_t>(w.parameter_count()),
                       "model cache '", path, "': payload of ", size, " bytes; expected ",
                       sizeof(float) * static_cast<std::uint64_t>(w.parameter_count()));
  const std::uint8_t* payload = in.take(static_cast<std::size_t>(size), "parameters");
  const auto checksum = in.read<std::uint64_t>("checksum");
  require<FormatError>(checksum == detail::fnv1a(payload, static_cast<std::size_t>(size)),
                       "model cache '", path, "': checksum mismatch (corrupt file)");
  std::size_t offset = 0;
  w.for_each_parameter([&](const std::string&, auto p) {
    std::memcpy(p.data(), payload + offset, sizeof(float) * static_cast<std::size_t>(p.size()));
    offset += sizeof(float) * static_cast<std::size_t>(p.size());
  });
  return w;
}

// $SLIM_CACHE_DIR when set, else `fallback`.
inline std::string cache_directory(const std::string& fallback = "slim-cache") {
  const char* env = std::getenv("SLIM_CACHE_DIR");
  return env != nullptr && env[0] != '\0' ? std::string(env) : fallback;
}

// "<directory>/<name>-<8 hex digits of the tag's hash>.slimref": a changed recipe or corpus gets
// its own file instead of overwriting another recipe's model.
inline std::string cache_path(const Recipe& recipe, const Corpus& corpus,
                              const std::string& directory) {
  const std::string tag = recipe_tag(recipe, corpus);
  char hash[9];
  std::snprintf(hash, sizeof hash, "%08x",
                static_cast<unsigned>(
                    detail::fnv1a(reinterpret_cast<const std::uint8_t*>(tag.data()), tag.size()) &
                    0xffffffffu));
  return (std::filesystem::path(directory) / (recipe.name + "-" + hash + ".slimref")).string();
}

// The recipe's trained model from the cache in `directory`, training it on `corpus` (and caching
// it) when the cache is missing or stale. `trained`, when given, says whether training ran.
inline Transformer load_or_train(const Recipe& recipe, const Corpus& corpus,
                                 const std::string& directory, bool* trained = nullptr,
                                 const std::function<void(const TrainProgress&)>& progress = {},
                                 int threads = 0) {
  const std::string path = cache_path(recipe, corpus, directory);
  const std::string tag = recipe_tag(recipe, corpus);
  if (auto cached = load_cached_model(path, tag)) {
    if (trained != nullptr) *trained = false;
    return Transformer(std::move(*cached));
  }
  std::error_code ec;
  std::filesystem::create_directories(directory, ec);
  require<IoError>(!ec, "model::load_or_train: cannot create cache folder '", directory,
                   "': ", ec.message());
  Transformer model(Weights::random(recipe.config, recipe.init_seed));
  TrainOptions options = recipe.train;
  options.progress = progress;
  options.threads = threads;
  train(model, corpus.train_tokens, options);
  save_cached_model(path, model.weights(), tag);
  if (trained != nullptr) *trained = true;
  return model;
}

}  // namespace slim::model

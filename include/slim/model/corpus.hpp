// The reference model's corpus: Debian's `fortunes` package (/usr/share/games/fortunes, about
// 2.5 MB of English). Files are read in name order (skipping *.dat indexes, *.u8 symlinks and
// anything that is not a regular file); fortunes are separated by lines holding only "%". The
// split is fixed: the fortune with global index i (0-based, in that order) goes to validation
// when i % 20 == 19, to training otherwise. Each fortune is tokenized as BOS bytes EOS.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/random.hpp>
#include <slim/core/types.hpp>
#include <slim/model/tokenizer.hpp>
#include <slim/model/transformer.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace slim::model {

inline constexpr const char* kFortunesDirectory = "/usr/share/games/fortunes";

struct Corpus {
  std::string directory;
  std::vector<std::string> train;               // fortunes, in file order
  std::vector<std::string> validation;          // every 20th fortune
  std::vector<std::int32_t> train_tokens;       // BOS f EOS BOS f EOS ... over train
  std::vector<std::int32_t> validation_tokens;  // the same over validation
};

// Splits the text of one fortune file into fortunes (lines holding only "%" separate them;
// the trailing newline of each fortune is kept off; empty fortunes are skipped).
inline std::vector<std::string> split_fortunes(const std::string& text) {
  std::vector<std::string> out;
  std::string current;
  std::istringstream in(text);
  std::string line;
  auto flush = [&] {
    if (!current.empty() && current.back() == '\n') current.pop_back();
    if (!current.empty()) out.push_back(current);
    current.clear();
  };
  while (std::getline(in, line)) {
    if (line == "%" || line == "%\r") {
      flush();
    } else {
      current += line;
      current += '\n';
    }
  }
  flush();
  return out;
}

// Loads and splits the corpus. Throws IoError naming the folder (and how to install the package)
// when it is missing or holds no fortunes.
inline Corpus load_fortunes(const std::string& directory = kFortunesDirectory) {
  namespace fs = std::filesystem;
  std::error_code ec;
  require<IoError>(fs::is_directory(directory, ec), "model::load_fortunes: corpus folder '",
                   directory, "' does not exist; install it with `apt-get install fortunes`");
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(directory, ec)) {
    const std::string name = entry.path().filename().string();
    const auto ends_with = [&name](const std::string& suffix) {
      return name.size() >= suffix.size() &&
             name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (entry.is_symlink() || !entry.is_regular_file() || ends_with(".dat") || ends_with(".u8") ||
        name.empty() || name[0] == '.') {
      continue;
    }
    files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  Corpus corpus;
  corpus.directory = directory;
  std::size_t index = 0;
  for (const auto& path : files) {
    std::ifstream file(path, std::ios::binary);
    require<IoError>(file.good(), "model::load_fortunes: cannot read '", path, "'");
    std::ostringstream text;
    text << file.rdbuf();
    for (auto& fortune : split_fortunes(text.str())) {
      (index % 20 == 19 ? corpus.validation : corpus.train).push_back(std::move(fortune));
      ++index;
    }
  }
  require<IoError>(!corpus.train.empty() && !corpus.validation.empty(),
                   "model::load_fortunes: corpus folder '", directory, "' holds ", index,
                   " fortunes; expected the `fortunes` package (`apt-get install fortunes`)");
  for (const auto& f : corpus.train) {
    const auto t = ByteTokenizer::encode(f, true, true);
    corpus.train_tokens.insert(corpus.train_tokens.end(), t.begin(), t.end());
  }
  for (const auto& f : corpus.validation) {
    const auto t = ByteTokenizer::encode(f, true, true);
    corpus.validation_tokens.insert(corpus.validation_tokens.end(), t.begin(), t.end());
  }
  return corpus;
}

// Next-token pairs: inputs(b, t) = stream[s_b + t], targets(b, t) = stream[s_b + t + 1].
struct TokenPairs {
  TokenBatch inputs;
  TokenBatch targets;
};

// `batch` windows of `tokens` (+1) tokens at uniformly random starts, reproducible from `gen`.
inline TokenPairs random_windows(const std::vector<std::int32_t>& stream, Index batch, Index tokens,
                                 random::Generator& gen) {
  require<ArgumentError>(batch > 0 && tokens > 0, "model::random_windows: batch ", batch,
                         " and tokens ", tokens, " must be positive");
  require<ShapeError>(static_cast<Index>(stream.size()) > tokens,
                      "model::random_windows: stream "
                      "of ",
                      stream.size(), " tokens is too short for windows of ", tokens + 1);
  TokenPairs p{TokenBatch(batch, tokens), TokenBatch(batch, tokens)};
  const auto starts = static_cast<std::uint64_t>(static_cast<Index>(stream.size()) - tokens);
  for (Index b = 0; b < batch; ++b) {
    const auto s = static_cast<std::size_t>(gen.below(starts));
    for (Index t = 0; t < tokens; ++t) {
      p.inputs(b, t) = stream[s + static_cast<std::size_t>(t)];
      p.targets(b, t) = stream[s + static_cast<std::size_t>(t) + 1];
    }
  }
  return p;
}

// Consecutive non-overlapping windows from the start of the stream (at most max_windows when
// positive): the fixed evaluation set. A short tail is dropped.
inline TokenPairs consecutive_windows(const std::vector<std::int32_t>& stream, Index tokens,
                                      Index max_windows = 0) {
  require<ArgumentError>(tokens > 0, "model::consecutive_windows: tokens ", tokens,
                         " must be positive");
  Index count = (static_cast<Index>(stream.size()) - 1) / tokens;
  if (max_windows > 0) count = std::min(count, max_windows);
  require<ShapeError>(count > 0, "model::consecutive_windows: stream of ", stream.size(),
                      " tokens is too short for one window of ", tokens + 1);
  TokenPairs p{TokenBatch(count, tokens), TokenBatch(count, tokens)};
  for (Index b = 0; b < count; ++b) {
    for (Index t = 0; t < tokens; ++t) {
      const auto i = static_cast<std::size_t>(b * tokens + t);
      p.inputs(b, t) = stream[i];
      p.targets(b, t) = stream[i + 1];
    }
  }
  return p;
}

// Bits per token of `eval` under the unigram token distribution of `train` (add-one smoothing
// over vocab_size tokens): the baseline a model with no context would reach.
inline double unigram_bits(const std::vector<std::int32_t>& train,
                           const std::vector<std::int32_t>& eval,
                           Index vocab_size = ByteTokenizer::vocab_size) {
  std::vector<double> counts(static_cast<std::size_t>(vocab_size), 1.0);
  for (const auto t : train) {
    require<ArgumentError>(t >= 0 && t < vocab_size, "model::unigram_bits: token ", t,
                           " is outside [0, ", vocab_size, ")");
    counts[static_cast<std::size_t>(t)] += 1.0;
  }
  const double total = static_cast<double>(train.size()) + static_cast<double>(vocab_size);
  double bits = 0.0;
  for (const auto t : eval) {
    require<ArgumentError>(t >= 0 && t < vocab_size, "model::unigram_bits: token ", t,
                           " is outside [0, ", vocab_size, ")");
    bits -= std::log2(counts[static_cast<std::size_t>(t)] / total);
  }
  require<ShapeError>(!eval.empty(), "model::unigram_bits: eval is empty");
  return bits / static_cast<double>(eval.size());
}

}  // namespace slim::model

// The byte-level tokenizer of the reference model: token b (0..255) is the byte b, BOS = 256
// starts a document and EOS = 257 ends it (vocab_size 258). Lossless for any byte string, so
// bits per token are bits per byte apart from the two markers per document.
#pragma once

#include <slim/core/error.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace slim::model {

struct ByteTokenizer {
  static constexpr std::int32_t bos = 256;
  static constexpr std::int32_t eos = 257;
  static constexpr std::int32_t vocab_size = 258;

  // Bytes of `text` as tokens, optionally framed by BOS / EOS.
  static std::vector<std::int32_t> encode(std::string_view text, bool add_bos = true,
                                          bool add_eos = false) {
    std::vector<std::int32_t> tokens;
    tokens.reserve(text.size() + 2);
    if (add_bos) tokens.push_back(bos);
    for (const char ch : text)
      tokens.push_back(static_cast<std::int32_t>(static_cast<unsigned char>(ch)));
    if (add_eos) tokens.push_back(eos);
    return tokens;
  }

  // The bytes of the byte tokens; BOS and EOS are dropped. Throws ArgumentError for a token
  // outside [0, 258).
  static std::string decode(const std::vector<std::int32_t>& tokens) {
    std::string text;
    text.reserve(tokens.size());
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      const std::int32_t t = tokens[i];
      require<ArgumentError>(t >= 0 && t < vocab_size, "ByteTokenizer::decode: token ", t,
                             " at index ", i, " is outside [0, ", vocab_size, ")");
      if (t < 256) text.push_back(static_cast<char>(static_cast<unsigned char>(t)));
    }
    return text;
  }
};

}  // namespace slim::model

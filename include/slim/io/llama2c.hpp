// llama2.c checkpoints (Karpathy, llama2.c: run.c `read_checkpoint` / `memory_map_weights`,
// export.py `legacy_export`): seven little-endian int32 (dim, hidden_dim, n_layers, n_heads,
// n_kv_heads, vocab_size, seq_len; a negative vocab_size means an untied classifier), then fp32
// arrays in this order, each layer-major and every matrix out x in, row-major:
//   token_embedding [vocab, dim], rms_att [L, dim], wq [L, dim, dim], wk [L, kv_dim, dim],
//   wv [L, kv_dim, dim], wo [L, dim, dim], rms_ffn [L, dim], w1 [L, hidden, dim],
//   w2 [L, dim, hidden], w3 [L, hidden, dim], rms_final [dim],
//   freq_cis_real [seq_len, head_size/2], freq_cis_imag [seq_len, head_size/2] (skipped on read;
//   written as RoPE's cos/sin with base 10000 for old readers), wcls [vocab, dim] if untied.
// The reader checks the header (positive sizes, divisibility, even head size) and that the file
// holds exactly the bytes it implies before allocating, so stories15M.bin and friends load and a
// truncated or padded file throws FormatError.
#pragma once

#include <slim/core/error.hpp>
#include <slim/io/file.hpp>
#include <slim/io/model.hpp>
#include <slim/model/config.hpp>
#include <slim/model/weights.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace slim::io {

inline constexpr std::size_t kLlama2cHeaderBytes = 7 * sizeof(std::int32_t);

namespace detail {

// Visits every fp32 array of the file in order: f(name, data pointer, element count) for the
// weights, skip(count) for the two freq_cis arrays.
template <typename W, typename F, typename Skip>
void for_each_llama2c_array(W& w, F&& f, Skip&& skip) {
  const model::Config& c = w.config;
  auto mat = [&f](const char* name, auto& m) {
    f(name, m.data(), static_cast<std::size_t>(m.size()));
  };
  mat("token_embedding", w.token_embedding);
  for (auto& l : w.layers) mat("rms_att", l.rms_att);
  for (auto& l : w.layers) mat("wq", l.wq);
  for (auto& l : w.layers) mat("wk", l.wk);
  for (auto& l : w.layers) mat("wv", l.wv);
  for (auto& l : w.layers) mat("wo", l.wo);
  for (auto& l : w.layers) mat("rms_ffn", l.rms_ffn);
  for (auto& l : w.layers) mat("w1", l.w1);
  for (auto& l : w.layers) mat("w2", l.w2);
  for (auto& l : w.layers) mat("w3", l.w3);
  mat("rms_final", w.rms_final);
  skip(static_cast<std::size_t>(c.seq_len * c.head_size()));  // freq_cis_real and _imag
  if (!c.shared_classifier) mat("wcls", w.wcls);
}

}  // namespace detail

// Parses a llama2.c checkpoint held in memory (also the fuzzing entry point). Throws FormatError
// naming the header field or the size mismatch for any malformed input.
inline model::Weights parse_llama2c(const std::uint8_t* data, std::size_t size) {
  ByteReader reader(data, size, "llama2.c");
  static const char* const fields[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                        "n_kv_heads", "vocab_size", "seq_len"};
  std::int32_t header[7];
  for (int i = 0; i < 7; ++i)
    header[i] = reader.read<std::int32_t>(std::string("header ") + fields[i]);
  for (int i = 0; i < 7; ++i) {
    require<FormatError>(
        header[i] > 0 ||
            (i == 5 && header[i] < 0 && header[i] != std::numeric_limits<std::int32_t>::min()),
        "llama2.c: header ", fields[i], " is ", header[i], "; expected a positive size");
  }
  model::Config c;
  c.dim = header[0];
  c.hidden_dim = header[1];
  c.n_layers = header[2];
  c.n_heads = header[3];
  c.n_kv_heads = header[4];
  c.vocab_size = header[5] < 0 ? -static_cast<Index>(header[5]) : header[5];
  c.shared_classifier = header[5] > 0;
  c.seq_len = header[6];
  detail::require_valid_config(c, "llama2.c header");

  const auto params = detail::checked_parameter_count(c);
  std::uint64_t floats = 0, expected = 0;
  const bool fits =
      params.has_value() &&
      detail::checked_add(*params, static_cast<std::uint64_t>(c.seq_len * c.head_size()), floats) &&
      detail::checked_mul(floats, sizeof(float), expected);
  require<FormatError>(fits && expected == reader.remaining(), "llama2.c: the header (dim ", c.dim,
                       ", hidden_dim ", c.hidden_dim, ", n_layers ", c.n_layers, ", n_heads ",
                       c.n_heads, ", n_kv_heads ", c.n_kv_heads, ", vocab_size ", header[5],
                       ", seq_len ", c.seq_len, ") implies ",
                       fits ? std::to_string(expected) : std::string("more than 2^64"),
                       " bytes of weights but the file has ", reader.remaining());

  model::Weights w = model::Weights::zeros(c);
  detail::for_each_llama2c_array(
      w,
      [&](const char* name, float* out, std::size_t n) {
        std::memcpy(out, reader.take(n * sizeof(float), name), n * sizeof(float));
      },
      [&](std::size_t n) { reader.take(n * sizeof(float), "freq_cis"); });
  return w;
}

inline model::Weights parse_llama2c(const std::vector<std::uint8_t>& bytes) {
  return parse_llama2c(bytes.data(), bytes.size());
}

namespace detail {

inline void write_llama2c_to(ByteWriter& out, const model::Weights& w) {
  const model::Config& c = w.config;
  const Index header[7] = {c.dim,        c.hidden_dim, c.n_layers, c.n_heads,
                           c.n_kv_heads, c.vocab_size, c.seq_len};
  for (Index v : header) {
    require<ArgumentError>(v <= std::numeric_limits<std::int32_t>::max(), "write_llama2c: config ",
                           "value ", v, " does not fit the int32 header");
  }
  for (int i = 0; i < 7; ++i) {
    auto v = static_cast<std::int32_t>(header[i]);
    if (i == 5 && !c.shared_classifier) v = -v;
    out.write_value(v);
  }
  const Index half = c.head_size() / 2;
  std::vector<float> cos_table(static_cast<std::size_t>(c.seq_len * half));
  std::vector<float> sin_table(cos_table.size());
  for (Index t = 0; t < c.seq_len; ++t) {
    for (Index i = 0; i < half; ++i) {
      const double freq =
          std::pow(10000.0, -2.0 * static_cast<double>(i) / static_cast<double>(c.head_size()));
      const double angle = static_cast<double>(t) * freq;
      cos_table[static_cast<std::size_t>(t * half + i)] = static_cast<float>(std::cos(angle));
      sin_table[static_cast<std::size_t>(t * half + i)] = static_cast<float>(std::sin(angle));
    }
  }
  for_each_llama2c_array(
      w, [&](const char*, const float* p, std::size_t n) { out.write(p, n * sizeof(float)); },
      [&](std::size_t) {
        out.write(cos_table.data(), cos_table.size() * sizeof(float));
        out.write(sin_table.data(), sin_table.size() * sizeof(float));
      });
}

}  // namespace detail

// The bytes of the llama2.c checkpoint of `w` (ShapeError if `w` does not match its config).
inline std::vector<std::uint8_t> serialize_llama2c(const model::Weights& w) {
  w.validate();
  std::vector<std::uint8_t> bytes;
  ByteWriter writer(bytes);
  detail::write_llama2c_to(writer, w);
  return bytes;
}

// Reads a llama2.c checkpoint (IoError if unreadable, FormatError if malformed).
inline model::Weights read_llama2c(const std::string& path) {
  const std::vector<std::uint8_t> bytes = read_file(path);
  try {
    return parse_llama2c(bytes);
  } catch (const FormatError& e) {
    throw FormatError(slim::detail::concat("'", path, "': ", e.what()));
  }
}

// Writes `w` as a llama2.c checkpoint, atomically; on any failure `path` is untouched.
inline void write_llama2c(const std::string& path, const model::Weights& w) {
  w.validate();
  write_file_atomic(path, [&](ByteWriter& out) { detail::write_llama2c_to(out, w); });
}

}  // namespace slim::io

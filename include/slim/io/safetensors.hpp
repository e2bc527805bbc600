// safetensors read and write (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length N, N bytes of JSON {name: {"dtype", "shape", "data_offsets":
// [begin, end]}, optional "__metadata__": {string: string}}, then the data buffer, to which the
// offsets are relative. Needs nlohmann_json; without it (or with SLIM_NO_JSON defined) this header
// declares nothing and SLIM_IO_HAVE_SAFETENSORS stays undefined.
//
// The reader trusts nothing: the header length must fit the file (and the reference's 100 MiB
// cap), the JSON must parse to an object of well-formed entries with a supported dtype (F32, F16,
// BF16, I8, U8), every range must lie in the buffer, hold exactly shape x dtype bytes, and the
// ranges must tile the buffer without overlap or gap. Any violation throws FormatError naming
// the tensor or field; an unopenable file throws IoError. The writer pads the header with spaces
// to a multiple of 8 bytes and stores tensors by decreasing dtype size, then name, as the
// reference implementation does, so every tensor is aligned to its element size.
#pragma once

#if !defined(SLIM_NO_JSON) && __has_include(<nlohmann/json.hpp>)

#include <slim/core/error.hpp>
#include <slim/io/file.hpp>
#include <slim/io/tensor.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#define SLIM_IO_HAVE_SAFETENSORS 1

namespace slim::io {

// The largest JSON header accepted (the reference implementation's limit).
inline constexpr std::uint64_t kMaxSafetensorsHeaderBytes = std::uint64_t{100} << 20;

namespace detail {

struct SafetensorsEntry {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t begin;
  std::uint64_t end;
};

inline SafetensorsEntry parse_safetensors_entry(const std::string& name,
                                                const nlohmann::json& value,
                                                std::uint64_t buffer_size) {
  const std::string where = "safetensors: tensor '" + name + "'";
  require<FormatError>(value.is_object(), where, " is not a JSON object");
  for (const auto& item : value.items()) {
    const std::string& key = item.key();
    require<FormatError>(key == "dtype" || key == "shape" || key == "data_offsets", where,
                         " has an unknown field '", key, "'");
  }
  require<FormatError>(value.contains("dtype") && value["dtype"].is_string(), where,
                       " has no string field 'dtype'");
  const std::string dtype_str = value["dtype"].get<std::string>();
  const auto dtype = dtype_from_name(dtype_str);
  require<FormatError>(dtype.has_value(), where, " has unsupported dtype '", dtype_str,
                       "'; expected F32, F16, BF16, I8 or U8");

  require<FormatError>(value.contains("shape") && value["shape"].is_array(), where,
                       " has no array field 'shape'");
  SafetensorsEntry entry{name, *dtype, {}, 0, 0};
  std::uint64_t bytes = dtype_bytes(*dtype);
  bool overflow = false;
  for (const nlohmann::json& d : value["shape"]) {
    require<FormatError>(d.is_number_unsigned(), where, " has shape entry ", d.dump(),
                         "; expected a non-negative integer");
    const auto dim = d.get<std::uint64_t>();
    require<FormatError>(
        dim <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()), where,
        " has shape entry ", dim, ", too large");
    entry.shape.push_back(static_cast<std::int64_t>(dim));
    if (!overflow && !checked_mul(bytes, dim, bytes)) overflow = true;
  }

  require<FormatError>(value.contains("data_offsets") && value["data_offsets"].is_array() &&
                           value["data_offsets"].size() == 2 &&
                           value["data_offsets"][0].is_number_unsigned() &&
                           value["data_offsets"][1].is_number_unsigned(),
                       where, " needs 'data_offsets' as two non-negative integers");
  entry.begin = value["data_offsets"][0].get<std::uint64_t>();
  entry.end = value["data_offsets"][1].get<std::uint64_t>();
  require<FormatError>(entry.begin <= entry.end, where, " has data_offsets [", entry.begin, ", ",
                       entry.end, "] with begin after end");
  require<FormatError>(entry.end <= buffer_size, where, " has data_offsets [", entry.begin, ", ",
                       entry.end, "] past the end of the ", buffer_size, "-byte data buffer");
  const std::uint64_t stored = entry.end - entry.begin;
  require<FormatError>(!overflow && bytes == stored, where, " has ", stored,
                       " bytes of data but its shape ", TensorMap::shape_string(entry.shape),
                       " of dtype ", dtype_str, " needs ",
                       overflow ? std::string("more than 2^64") : std::to_string(bytes));
  return entry;
}

inline TensorMap parse_safetensors_checked(const std::uint8_t* data, std::size_t size) {
  ByteReader reader(data, size, "safetensors");
  const auto header_len = reader.read<std::uint64_t>("the header length");
  require<FormatError>(header_len <= reader.remaining(), "safetensors: header length ", header_len,
                       " exceeds the ", reader.remaining(), " bytes that follow it");
  require<FormatError>(header_len <= kMaxSafetensorsHeaderBytes, "safetensors: header length ",
                       header_len, " exceeds the limit of ", kMaxSafetensorsHeaderBytes, " bytes");
  const std::uint8_t* header = reader.take(static_cast<std::size_t>(header_len), "the header");
  require<FormatError>(header_len > 0 && header[0] == '{',
                       "safetensors: the header does not start with '{'");
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(header, header + header_len);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(
        slim::detail::concat("safetensors: the header is not valid JSON: ", e.what()));
  }
  require<FormatError>(root.is_object(), "safetensors: the header is not a JSON object");

  const std::uint8_t* buffer = data + reader.position();
  const std::uint64_t buffer_size = reader.remaining();
  TensorMap out;
  std::vector<SafetensorsEntry> entries;
  for (const auto& item : root.items()) {
    const std::string& key = item.key();
    const nlohmann::json& value = item.value();
    if (key == "__metadata__") {
      require<FormatError>(value.is_object(), "safetensors: '__metadata__' is not a JSON object");
      for (const auto& meta : value.items()) {
        require<FormatError>(meta.value().is_string(), "safetensors: metadata '", meta.key(),
                             "' is not a string");
        out.metadata[meta.key()] = meta.value().get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_safetensors_entry(key, value, buffer_size));
  }

  // The ranges must tile [0, buffer_size): sorted by start, each starts where the last ended.
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t covered = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const SafetensorsEntry& e : entries) {
    require<FormatError>(e.begin >= covered, "safetensors: tensor '", e.name, "' at [", e.begin,
                         ", ", e.end, ") overlaps tensor '", previous ? previous->name : "",
                         "' which ends at ", covered);
    require<FormatError>(e.begin == covered, "safetensors: bytes [", covered, ", ", e.begin,
                         ") before tensor '", e.name, "' belong to no tensor");
    covered = e.end;
    previous = &e;
  }
  require<FormatError>(covered == buffer_size, "safetensors: the data buffer has ", buffer_size,
                       " bytes but the tensors cover only ", covered);

  for (SafetensorsEntry& e : entries) {
    Tensor t{e.dtype, std::move(e.shape), {}};
    t.bytes.assign(buffer + e.begin, buffer + e.end);
    out.tensors[e.name] = std::move(t);
  }
  return out;
}

inline void write_safetensors_to(ByteWriter& out, const TensorMap& map) {
  std::vector<std::pair<const std::string*, const Tensor*>> order;
  for (const auto& [name, tensor] : map.tensors) {
    require<ArgumentError>(name != "__metadata__",
                           "write_safetensors: '__metadata__' cannot name a tensor");
    std::uint64_t bytes = dtype_bytes(tensor.dtype);
    for (std::int64_t d : tensor.shape) {
      require<ArgumentError>(d >= 0 && checked_mul(bytes, static_cast<std::uint64_t>(d), bytes),
                             "write_safetensors: tensor '", name, "' has an invalid shape ",
                             TensorMap::shape_string(tensor.shape));
    }
    require<ArgumentError>(tensor.bytes.size() == bytes, "write_safetensors: tensor '", name,
                           "' holds ", tensor.bytes.size(), " bytes; its shape and dtype need ",
                           bytes);
    order.emplace_back(&name, &tensor);
  }
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return dtype_bytes(a.second->dtype) > dtype_bytes(b.second->dtype);
  });

  nlohmann::json root = nlohmann::json::object();
  if (!map.metadata.empty()) root["__metadata__"] = map.metadata;
  std::uint64_t offset = 0;
  for (const auto& [name, tensor] : order) {
    const std::uint64_t end = offset + tensor->bytes.size();
    root[*name] = {{"dtype", dtype_name(tensor->dtype)},
                   {"shape", tensor->shape},
                   {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string header;
  try {
    header = root.dump();
  } catch (const nlohmann::json::exception& e) {
    throw ArgumentError(
        slim::detail::concat("write_safetensors: a tensor name or metadata string is not valid "
                             "UTF-8: ",
                             e.what()));
  }
  header.append((8 - header.size() % 8) % 8, ' ');
  out.write_value(static_cast<std::uint64_t>(header.size()));
  out.write(header.data(), header.size());
  for (const auto& [name, tensor] : order) out.write(tensor->bytes.data(), tensor->bytes.size());
}

}  // namespace detail

// Parses a safetensors file held in memory (also the fuzzing entry point). Throws FormatError
// naming the tensor or field for every malformed, truncated or inconsistent input.
inline TensorMap parse_safetensors(const std::uint8_t* data, std::size_t size) {
  try {
    return detail::parse_safetensors_checked(data, size);
  } catch (const nlohmann::json::exception& e) {  // defence in depth: every path checks types
    throw FormatError(slim::detail::concat("safetensors: malformed header: ", e.what()));
  }
}

inline TensorMap parse_safetensors(const std::vector<std::uint8_t>& bytes) {
  return parse_safetensors(bytes.data(), bytes.size());
}

// The bytes of a safetensors file holding `map`. Throws ArgumentError for a tensor whose bytes
// do not match its shape and dtype, or a name that is not valid UTF-8.
inline std::vector<std::uint8_t> serialize_safetensors(const TensorMap& map) {
  std::vector<std::uint8_t> bytes;
  ByteWriter writer(bytes);
  detail::write_safetensors_to(writer, map);
  return bytes;
}

// Reads the safetensors file at `path` (IoError if unreadable, FormatError if malformed).
inline TensorMap read_safetensors(const std::string& path) {
  const std::vector<std::uint8_t> bytes = read_file(path);
  try {
    return parse_safetensors(bytes);
  } catch (const FormatError& e) {
    throw FormatError(slim::detail::concat("'", path, "': ", e.what()));
  }
}

// Writes `map` to `path` atomically (see write_file_atomic); on any failure `path` is untouched.
inline void write_safetensors(const std::string& path, const TensorMap& map) {
  write_file_atomic(path, [&](ByteWriter& out) { detail::write_safetensors_to(out, map); });
}

}  // namespace slim::io

#endif  // __has_include(<nlohmann/json.hpp>)

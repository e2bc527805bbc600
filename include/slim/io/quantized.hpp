// Stores a quant::QuantizedMatrix as named tensors, bit-identically: the packed codes, the fp16
// scales and the packed zero-points are copied byte for byte, and the scheme goes in metadata.
// For a matrix stored under `name`:
//   tensors  <name>.qweight  U8  [rows, row_stride_bytes]   codes packed per row (bitpack.hpp)
//            <name>.scales   F16 [param_rows, groups_per_row] (param_rows = 1 for per-tensor)
//            <name>.qzeros   U8  [packed_bytes(param_rows * groups_per_row, bits)] (asym only)
//   metadata <name>.bits, <name>.group_size, <name>.in_features (decimal integers),
//            <name>.symmetric ("true"/"false"), <name>.granularity ("per_tensor",
//            "per_channel", "per_group").
// The clipping-search fields of quant::Scheme only steer fitting and are not stored.
#pragma once

#include <slim/core/error.hpp>
#include <slim/io/safetensors.hpp>
#include <slim/io/tensor.hpp>
#include <slim/quant/quantized_matrix.hpp>
#include <slim/quant/scheme.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace slim::io {

namespace detail {

inline const char* granularity_name(quant::Granularity g) {
  switch (g) {
    case quant::Granularity::per_tensor:
      return "per_tensor";
    case quant::Granularity::per_channel:
      return "per_channel";
    case quant::Granularity::per_group:
      return "per_group";
  }
  return "?";
}

inline const std::string& metadata_field(const TensorMap& map, const std::string& key) {
  const auto it = map.metadata.find(key);
  require<FormatError>(it != map.metadata.end(), "metadata '", key, "' is missing");
  return it->second;
}

inline std::int64_t metadata_integer(const TensorMap& map, const std::string& key) {
  const std::string& text = metadata_field(map, key);
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  require<FormatError>(ec == std::errc() && end == text.data() + text.size() && !text.empty(),
                       "metadata '", key, "' is '", text, "'; expected a decimal integer");
  return value;
}

}  // namespace detail

// Adds the tensors and metadata of `q` under `name` (see the top of this file).
inline void put_quantized(TensorMap& map, const std::string& name,
                          const quant::QuantizedMatrix& q) {
  require<ArgumentError>(q.rows() > 0 && q.cols() > 0, "put_quantized: matrix '", name,
                         "' is empty");
  const quant::Scheme& s = q.scheme();
  map.metadata[name + ".bits"] = std::to_string(s.bits);
  map.metadata[name + ".group_size"] = std::to_string(s.group_size);
  map.metadata[name + ".in_features"] = std::to_string(q.cols());
  map.metadata[name + ".symmetric"] = s.symmetric ? "true" : "false";
  map.metadata[name + ".granularity"] = detail::granularity_name(s.granularity);
  map.put_bytes(name + ".qweight", DType::U8,
                {q.rows(), static_cast<std::int64_t>(q.row_stride_bytes())}, q.codes());
  const std::vector<std::uint16_t>& scales = q.scales_fp16();
  Tensor t{DType::F16,
           {static_cast<std::int64_t>(scales.size()) / q.groups_per_row(), q.groups_per_row()},
           std::vector<std::uint8_t>(scales.size() * 2)};
  std::memcpy(t.bytes.data(), scales.data(), t.bytes.size());
  map.put(name + ".scales", std::move(t));
  if (!s.symmetric) {
    map.put_bytes(name + ".qzeros", DType::U8, {static_cast<std::int64_t>(q.zeros_packed().size())},
                  q.zeros_packed());
  }
}

// Rebuilds the matrix stored under `name`. Throws FormatError naming the tensor or metadata key
// when one is missing, malformed, of the wrong shape or dtype, or holds a non-finite scale.
inline quant::QuantizedMatrix get_quantized(const TensorMap& map, const std::string& name) {
  const std::int64_t bits = detail::metadata_integer(map, name + ".bits");
  const std::int64_t group_size = detail::metadata_integer(map, name + ".group_size");
  const std::int64_t cols = detail::metadata_integer(map, name + ".in_features");
  const std::string& symmetric = detail::metadata_field(map, name + ".symmetric");
  const std::string& granularity = detail::metadata_field(map, name + ".granularity");
  require<FormatError>(symmetric == "true" || symmetric == "false", "metadata '", name,
                       ".symmetric' is '", symmetric, "'; expected true or false");
  quant::Scheme scheme;
  scheme.symmetric = symmetric == "true";
  bool known = false;
  for (auto g : {quant::Granularity::per_tensor, quant::Granularity::per_channel,
                 quant::Granularity::per_group}) {
    if (granularity == detail::granularity_name(g)) {
      scheme.granularity = g;
      known = true;
    }
  }
  require<FormatError>(known, "metadata '", name, ".granularity' is '", granularity,
                       "'; expected per_tensor, per_channel or per_group");
  require<FormatError>(bits >= 2 && bits <= 8, "metadata '", name, ".bits' is ", bits,
                       "; expected 2..8");
  scheme.bits = static_cast<int>(bits);
  scheme.group_size = static_cast<Index>(group_size);
  require<FormatError>(cols > 0 && cols <= (std::int64_t{1} << 40), "metadata '", name,
                       ".in_features' is ", cols, "; expected a positive size");
  if (scheme.granularity == quant::Granularity::per_group) {
    require<FormatError>(group_size > 0 && cols % group_size == 0, "metadata '", name,
                         ".group_size' ", group_size, " does not divide in_features ", cols);
  }

  const std::string codes_name = name + ".qweight";
  const Tensor& codes = map.at(codes_name);
  const std::size_t stride =
      quant::detail::packed_bytes(static_cast<std::size_t>(cols), scheme.bits);
  require<FormatError>(codes.dtype == DType::U8 && codes.shape.size() == 2 && codes.shape[0] > 0 &&
                           codes.shape[1] == static_cast<std::int64_t>(stride),
                       "tensor '", codes_name, "' is ", dtype_name(codes.dtype), " ",
                       TensorMap::shape_string(codes.shape), "; expected U8 [rows, ", stride, "]");
  const Index rows = static_cast<Index>(codes.shape[0]);

  quant::QuantizedMatrix q(rows, static_cast<Index>(cols), scheme);
  const Index param_rows = scheme.granularity == quant::Granularity::per_tensor ? 1 : rows;
  const std::string scales_name = name + ".scales";
  const Tensor& scales = map.at(scales_name);
  require<FormatError>(scales.dtype == DType::F16 && scales.shape.size() == 2 &&
                           scales.shape[0] == param_rows && scales.shape[1] == q.groups_per_row(),
                       "tensor '", scales_name, "' is ", dtype_name(scales.dtype), " ",
                       TensorMap::shape_string(scales.shape), "; expected F16 [", param_rows, ", ",
                       q.groups_per_row(), "]");
  const std::size_t n_params = static_cast<std::size_t>(param_rows * q.groups_per_row());
  const std::uint8_t* zeros = nullptr;
  if (!scheme.symmetric) {
    const std::string zeros_name = name + ".qzeros";
    const Tensor& z = map.at(zeros_name);
    const std::size_t expected = quant::detail::packed_bytes(n_params, scheme.bits);
    require<FormatError>(z.dtype == DType::U8 && z.shape.size() == 1 &&
                             z.shape[0] == static_cast<std::int64_t>(expected),
                         "tensor '", zeros_name, "' is ", dtype_name(z.dtype), " ",
                         TensorMap::shape_string(z.shape), "; expected U8 [", expected, "]");
    zeros = z.bytes.data();
  }

  for (Index r = 0; r < rows; ++r) {
    std::memcpy(q.row_codes(r), codes.bytes.data() + static_cast<std::size_t>(r) * stride, stride);
  }
  for (Index pr = 0; pr < param_rows; ++pr) {
    for (Index g = 0; g < q.groups_per_row(); ++g) {
      const std::size_t k = static_cast<std::size_t>(pr * q.groups_per_row() + g);
      std::uint16_t h;
      std::memcpy(&h, scales.bytes.data() + 2 * k, 2);
      quant::GroupParams p;
      p.scale = fp16_to_fp32(h);
      require<FormatError>(std::isfinite(p.scale), "tensor '", scales_name, "' holds non-finite ",
                           "scale ", p.scale, " at (", pr, ", ", g, ")");
      if (zeros != nullptr)
        p.zero = static_cast<int>(quant::detail::get_bits(zeros, k, scheme.bits));
      q.set_params(pr, g, p);
    }
  }
  return q;
}

#if defined(SLIM_IO_HAVE_SAFETENSORS)

// Writes `q` alone to a safetensors file under the name "weight" (atomically).
inline void save_quantized(const std::string& path, const quant::QuantizedMatrix& q) {
  TensorMap map;
  put_quantized(map, "weight", q);
  write_safetensors(path, map);
}

// Reads a matrix written by save_quantized.
inline quant::QuantizedMatrix load_quantized(const std::string& path) {
  const TensorMap map = read_safetensors(path);
  try {
    return get_quantized(map, "weight");
  } catch (const FormatError& e) {
    throw FormatError(slim::detail::concat("'", path, "': ", e.what()));
  }
}

#endif  // SLIM_IO_HAVE_SAFETENSORS

}  // namespace slim::io

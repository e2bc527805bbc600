// Named tensors as checkpoint files hold them: a dtype (one row of a traits table: F32, F16,
// BF16, I8, U8), a row-major shape and the raw little-endian bytes, plus string metadata.
// Matrices convert to and from F32/F16/BF16 with core/half.hpp (round to nearest even); I8/U8
// hold raw bytes (packed quantization codes) and read back as their integer values.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/half.hpp>
#include <slim/core/types.hpp>
#include <slim/io/file.hpp>

#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace slim::io {

enum class DType : std::uint8_t { F32, F16, BF16, I8, U8 };

// One row per dtype: adding a dtype is adding a row here and its two conversions below.
struct DTypeTraits {
  DType dtype;
  const char* name;  // the safetensors spelling
  std::size_t bytes;
  bool floating;
};

inline constexpr DTypeTraits kDTypeTable[] = {
    {DType::F32, "F32", 4, true}, {DType::F16, "F16", 2, true}, {DType::BF16, "BF16", 2, true},
    {DType::I8, "I8", 1, false},  {DType::U8, "U8", 1, false},
};

inline const DTypeTraits& dtype_traits(DType dtype) {
  for (const DTypeTraits& t : kDTypeTable) {
    if (t.dtype == dtype) return t;
  }
  throw ArgumentError(
      slim::detail::concat("dtype_traits: unknown dtype code ", static_cast<int>(dtype)));
}
inline const char* dtype_name(DType dtype) { return dtype_traits(dtype).name; }
inline std::size_t dtype_bytes(DType dtype) { return dtype_traits(dtype).bytes; }

// The dtype spelled `name` ("F32", ...), or nothing if slim does not support it.
inline std::optional<DType> dtype_from_name(std::string_view name) {
  for (const DTypeTraits& t : kDTypeTable) {
    if (name == t.name) return t.dtype;
  }
  return std::nullopt;
}

namespace detail {

inline void encode_floats(const float* in, std::size_t n, DType dtype, std::uint8_t* out) {
  switch (dtype) {
    case DType::F32:
      std::memcpy(out, in, n * sizeof(float));
      return;
    case DType::F16:
    case DType::BF16:
      for (std::size_t i = 0; i < n; ++i) {
        const std::uint16_t h = dtype == DType::F16 ? fp32_to_fp16(in[i]) : fp32_to_bf16(in[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      return;
    default:
      throw ArgumentError(slim::detail::concat("encode: dtype ", dtype_name(dtype),
                                               " is not a float dtype; expected F32, F16 or BF16"));
  }
}

inline void decode_floats(const std::uint8_t* in, std::size_t n, DType dtype, float* out) {
  for (std::size_t i = 0; i < n; ++i) {
    switch (dtype) {
      case DType::F32:
        std::memcpy(out + i, in + 4 * i, 4);
        break;
      case DType::F16:
      case DType::BF16: {
        std::uint16_t h;
        std::memcpy(&h, in + 2 * i, 2);
        out[i] = dtype == DType::F16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
        break;
      }
      case DType::I8:
        out[i] = static_cast<float>(static_cast<std::int8_t>(in[i]));
        break;
      case DType::U8:
        out[i] = static_cast<float>(in[i]);
        break;
    }
  }
}

}  // namespace detail

struct Tensor {
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;  // row-major; {} is a scalar
  std::vector<std::uint8_t> bytes;  // numel() * dtype_bytes(dtype) little-endian bytes

  // Product of the shape (1 for a scalar). Shapes read from files are checked not to overflow.
  std::uint64_t numel() const {
    std::uint64_t n = 1;
    for (std::int64_t d : shape) n *= static_cast<std::uint64_t>(d);
    return n;
  }

  friend bool operator==(const Tensor& a, const Tensor& b) {
    return a.dtype == b.dtype && a.shape == b.shape && a.bytes == b.bytes;
  }
  friend bool operator!=(const Tensor& a, const Tensor& b) { return !(a == b); }
};

// Tensors by name plus string metadata: what a safetensors file holds. Reading a missing tensor
// or one of the wrong shape throws FormatError naming it (the file, not the caller, is wrong).
struct TensorMap {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;

  bool contains(const std::string& name) const { return tensors.count(name) != 0; }

  const Tensor& at(const std::string& name) const {
    const auto it = tensors.find(name);
    require<FormatError>(it != tensors.end(), "tensor '", name, "' is missing");
    const Tensor& t = it->second;
    std::uint64_t bytes = dtype_bytes(t.dtype);
    for (std::int64_t d : t.shape) {
      require<FormatError>(
          d >= 0 && io::detail::checked_mul(bytes, static_cast<std::uint64_t>(d), bytes),
          "tensor '", name, "' has an invalid shape ", shape_string(t.shape));
    }
    require<FormatError>(t.bytes.size() == bytes, "tensor '", name, "' holds ", t.bytes.size(),
                         " bytes; shape ", shape_string(t.shape), " of dtype ", dtype_name(t.dtype),
                         " needs ", bytes);
    return t;
  }

  // Adds (or replaces) a tensor; throws ArgumentError for a negative dimension or a byte count
  // that does not match the shape and dtype.
  void put(const std::string& name, Tensor tensor) {
    for (std::int64_t d : tensor.shape) {
      require<ArgumentError>(d >= 0, "TensorMap::put: tensor '", name, "' has negative dimension ",
                             d);
    }
    const std::uint64_t expected = tensor.numel() * dtype_bytes(tensor.dtype);
    require<ArgumentError>(tensor.bytes.size() == expected, "TensorMap::put: tensor '", name,
                           "' holds ", tensor.bytes.size(), " bytes; its shape and dtype ",
                           dtype_name(tensor.dtype), " need ", expected);
    tensors[name] = std::move(tensor);
  }

  // Stores a matrix as a 2-D tensor (rows x cols) of a float dtype, rounding to nearest even.
  template <typename Derived>
  void put_matrix(const std::string& name, const Eigen::MatrixBase<Derived>& m,
                  DType dtype = DType::F32) {
    require<ArgumentError>(dtype_traits(dtype).floating, "TensorMap::put_matrix: tensor '", name,
                           "' dtype ", dtype_name(dtype), " is not F32, F16 or BF16");
    const Matrix contiguous = m.template cast<float>();
    put_floats(name, contiguous.data(), {contiguous.rows(), contiguous.cols()}, dtype);
  }

  // Stores a vector as a 1-D tensor of a float dtype.
  template <typename Derived>
  void put_vector(const std::string& name, const Eigen::MatrixBase<Derived>& v,
                  DType dtype = DType::F32) {
    require<ArgumentError>(dtype_traits(dtype).floating, "TensorMap::put_vector: tensor '", name,
                           "' dtype ", dtype_name(dtype), " is not F32, F16 or BF16");
    const Vector contiguous = v.template cast<float>();
    put_floats(name, contiguous.data(), {contiguous.size()}, dtype);
  }

  // Stores raw bytes (I8 or U8, e.g. packed quantization codes) under `shape`.
  void put_bytes(const std::string& name, DType dtype, std::vector<std::int64_t> shape,
                 std::vector<std::uint8_t> bytes) {
    require<ArgumentError>(dtype_bytes(dtype) == 1, "TensorMap::put_bytes: tensor '", name,
                           "' dtype ", dtype_name(dtype), " is not I8 or U8");
    put(name, Tensor{dtype, std::move(shape), std::move(bytes)});
  }

  // The tensor as a float matrix: a 2-D tensor is rows x cols, a 1-D or scalar tensor one row,
  // and an N-D tensor is flattened to prod(shape[:-1]) x shape[-1]. Integer dtypes convert to
  // their values.
  Matrix matrix(const std::string& name) const {
    const Tensor& t = at(name);
    const Index cols = t.shape.empty() ? 1 : static_cast<Index>(t.shape.back());
    std::uint64_t rows = 1;
    for (std::size_t i = 0; i + 1 < t.shape.size(); ++i) {
      require<FormatError>(
          io::detail::checked_mul(rows, static_cast<std::uint64_t>(t.shape[i]), rows) &&
              rows <= static_cast<std::uint64_t>(INT64_MAX),
          "tensor '", name, "' has too many rows for a matrix: shape ", shape_string(t.shape));
    }
    Matrix m(static_cast<Index>(rows), cols);
    detail::decode_floats(t.bytes.data(), static_cast<std::size_t>(m.size()), t.dtype, m.data());
    return m;
  }

  // The tensor as a matrix that must be exactly `rows` x `cols` (FormatError otherwise).
  Matrix matrix(const std::string& name, Index rows, Index cols) const {
    const Tensor& t = at(name);
    require<FormatError>(t.shape.size() == 2 && t.shape[0] == rows && t.shape[1] == cols,
                         "tensor '", name, "' has shape ", shape_string(t.shape), "; expected [",
                         rows, ", ", cols, "]");
    return matrix(name);
  }

  // The 1-D tensor `name` as a vector, which must have `size` entries (FormatError otherwise).
  Vector vector(const std::string& name, Index size) const {
    const Tensor& t = at(name);
    require<FormatError>(t.shape.size() == 1 && t.shape[0] == size, "tensor '", name,
                         "' has shape ", shape_string(t.shape), "; expected [", size, "]");
    Vector v(size);
    detail::decode_floats(t.bytes.data(), static_cast<std::size_t>(size), t.dtype, v.data());
    return v;
  }

  static std::string shape_string(const std::vector<std::int64_t>& shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
      if (i > 0) s += ", ";
      s += std::to_string(shape[i]);
    }
    return s + "]";
  }

 private:
  void put_floats(const std::string& name, const float* data, std::vector<std::int64_t> shape,
                  DType dtype) {
    Tensor t{dtype, std::move(shape), {}};
    const std::size_t n = static_cast<std::size_t>(t.numel());
    t.bytes.resize(n * dtype_bytes(dtype));
    detail::encode_floats(data, n, dtype, t.bytes.data());
    put(name, std::move(t));
  }
};

}  // namespace slim::io

// A compressed model on disk: one safetensors file holding the model config, every dense
// parameter that runs dense (names and config keys of io/model.hpp) and, for every linear layer
// replaced through Transformer::replace, its compressed storage in packed form, so that loading
// rebuilds the same layer kinds on the same kernels with bit-identical outputs.
//
// Layout (format "slim.compressed_model", version 1). Metadata: "slim.format",
// "slim.format_version", the config keys of io::put_model, "user.<key>" for the caller's
// free-form metadata, and "<layer>.kind" for each replaced layer. Tensors: "<param>.weight" for
// the dense parameters, and under the replaced layer's name P, by kind:
//   quantized     quant::Linear: io::put_quantized's P.qweight/.scales/.qzeros (+ metadata) and
//                 metadata P.activations ("int8" / "fp32")
//   csr           prune::SparseLinear over CsrMatrix: P.values F32 [nnz], P.col_indices
//                 U8 [nnz, 2 or 4] (little-endian 16- or 32-bit, as CsrMatrix holds them),
//                 P.row_offsets U8 [rows + 1, 4]; metadata P.in_features
//   nm            prune::SparseLinear over NmMatrix: P.values F32 [rows, cols / m * n], P.codes
//                 U8 [rows, 4 * words_per_row] (NmMatrix::row_major_codes' 32-bit words); metadata
//                 P.n, P.m, P.in_features
//   lowrank       lowrank::Linear: P.U F32 [out, r], P.V F32 [r, in]; metadata
//                 P.sparse_residual ("true"/"false"); a residual is P.residual.values F32 [nnz],
//                 P.residual.col_indices U8 [nnz, 4], P.residual.row_offsets U8 [out + 1, 4]
//   input_scaled  pipeline::InputScaledLinear (AWQ): P.inverse_scales F32 [in], and the inner
//                 layer stored under "P.inner" with its own "P.inner.kind"
//   dense         slim::DenseLinear (formats with no kernel): P.weight F32 [out, in]
// A layer kind is one row of detail::layer_codecs(): its name, a writer that recognises its
// layer type and a reader that rebuilds it. Loading checks every tensor's dtype and shape
// against the config before allocating from it and throws FormatError naming the tensor or key.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/linear.hpp>
#include <slim/core/types.hpp>
#include <slim/io/model.hpp>
#include <slim/io/quantized.hpp>
#include <slim/io/safetensors.hpp>
#include <slim/io/tensor.hpp>
#include <slim/lowrank/linear.hpp>
#include <slim/lowrank/quantized_linear.hpp>
#include <slim/model/transformer.hpp>
#include <slim/pipeline/methods.hpp>
#include <slim/prune/mask.hpp>
#include <slim/prune/sparse_linear.hpp>
#include <slim/quant/linear.hpp>

#include <Eigen/SparseCore>

#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace slim::pipeline {

inline constexpr const char* kModelFileFormat = "slim.compressed_model";
inline constexpr int kModelFileVersion = 1;

// Free-form strings saved beside the model (the recipe, the compression report, ...).
using ModelMetadata = std::map<std::string, std::string>;

struct ModelFileOptions {
  int threads = 1;  // kernel threads of the rebuilt quantized and sparse layers
};

namespace detail {

inline constexpr int kMaxLayerNesting = 4;  // InputScaledLinear inside InputScaledLinear ...
inline constexpr Index kMaxSeqLen = Index{1} << 20;

// A layer read back: the layer and the dense weight it applies (what restore() would run).
struct LoadedLayer {
  std::shared_ptr<const LinearLayer> layer;
  Matrix effective_weight;
};

// Where a reader finds its layer and what it must be.
struct LayerSlot {
  const io::TensorMap& map;
  std::string prefix;
  Index out_features;
  Index in_features;
  const ModelFileOptions& options;
  int depth;
};

// One layer kind: `put` stores `layer` under `prefix` and returns true when the layer is of its
// type (false leaves the map untouched); `get` rebuilds it.
struct LayerCodec {
  const char* kind;
  bool (*put)(io::TensorMap& map, const std::string& prefix, const LinearLayer& layer, int depth);
  LoadedLayer (*get)(const LayerSlot& slot);
};

inline const std::vector<LayerCodec>& layer_codecs();

inline std::string layer_kind_list() {
  std::string s;
  for (const LayerCodec& c : layer_codecs()) s += (s.empty() ? "" : ", ") + std::string(c.kind);
  return s;
}

// Stores `layer` under `prefix` with the first codec that recognises it.
inline void put_layer(io::TensorMap& map, const std::string& prefix, const LinearLayer& layer,
                      int depth) {
  require<ArgumentError>(depth <= kMaxLayerNesting, "save_compressed_model: layer '", prefix,
                         "' nests more than ", kMaxLayerNesting, " wrapped layers");
  for (const LayerCodec& codec : layer_codecs()) {
    if (codec.put(map, prefix, layer, depth)) {
      map.metadata[prefix + ".kind"] = codec.kind;
      return;
    }
  }
  throw ArgumentError(slim::detail::concat(
      "save_compressed_model: layer '", prefix, "' is a '", layer.describe(),
      "' layer of a type the model file has no kind for; expected one of: ", layer_kind_list()));
}

// Rebuilds the layer stored under slot.prefix. Every failure is a FormatError naming the layer.
inline LoadedLayer get_layer(const LayerSlot& slot) {
  require<FormatError>(slot.depth <= kMaxLayerNesting, "layer '", slot.prefix, "' nests more than ",
                       kMaxLayerNesting, " wrapped layers");
  const std::string& kind = io::detail::metadata_field(slot.map, slot.prefix + ".kind");
  for (const LayerCodec& codec : layer_codecs()) {
    if (kind != codec.kind) continue;
    LoadedLayer loaded;
    try {
      loaded = codec.get(slot);
    } catch (const FormatError&) {
      throw;
    } catch (const Error& e) {  // a factory or constructor refused the stored values
      throw FormatError(
          slim::detail::concat("layer '", slot.prefix, "' (kind ", kind, "): ", e.what()));
    }
    require<FormatError>(loaded.layer->out_features() == slot.out_features &&
                             loaded.layer->in_features() == slot.in_features,
                         "layer '", slot.prefix, "' (kind ", kind, ") is ",
                         loaded.layer->out_features(), " x ", loaded.layer->in_features(),
                         "; expected ", slot.out_features, " x ", slot.in_features);
    return loaded;
  }
  throw FormatError(slim::detail::concat("metadata '", slot.prefix, ".kind' is '", kind,
                                         "'; expected one of: ", layer_kind_list()));
}

// ---- tensor helpers --------------------------------------------------------------------------

inline const io::Tensor& tensor_as(const io::TensorMap& map, const std::string& name,
                                   io::DType dtype, const std::vector<std::int64_t>& shape) {
  const io::Tensor& t = map.at(name);
  require<FormatError>(t.dtype == dtype && t.shape == shape, "tensor '", name, "' is ",
                       io::dtype_name(t.dtype), " ", io::TensorMap::shape_string(t.shape),
                       "; expected ", io::dtype_name(dtype), " ",
                       io::TensorMap::shape_string(shape));
  return t;
}

// The shape of a 2-D tensor `name`, whose first dimension must be `rows` (FormatError otherwise).
inline std::vector<std::int64_t> shape_2d(const io::TensorMap& map, const std::string& name,
                                          const char* expected) {
  const io::Tensor& t = map.at(name);
  require<FormatError>(t.dtype == io::DType::F32 && t.shape.size() == 2, "tensor '", name, "' is ",
                       io::dtype_name(t.dtype), " ", io::TensorMap::shape_string(t.shape),
                       "; expected F32 ", expected);
  return t.shape;
}

inline Matrix f32_matrix(const io::TensorMap& map, const std::string& name, Index rows,
                         Index cols) {
  tensor_as(map, name, io::DType::F32, {rows, cols});
  return map.matrix(name);
}

inline void put_f32(io::TensorMap& map, const std::string& name, const float* data,
                    std::vector<std::int64_t> shape) {
  io::Tensor t{io::DType::F32, std::move(shape), {}};
  t.bytes.resize(static_cast<std::size_t>(t.numel()) * sizeof(float));
  if (!t.bytes.empty()) std::memcpy(t.bytes.data(), data, t.bytes.size());
  map.put(name, std::move(t));
}

inline std::vector<float> get_f32(const io::TensorMap& map, const std::string& name,
                                  const std::vector<std::int64_t>& shape) {
  const io::Tensor& t = tensor_as(map, name, io::DType::F32, shape);
  std::vector<float> out(static_cast<std::size_t>(t.numel()));
  if (!out.empty()) std::memcpy(out.data(), t.bytes.data(), t.bytes.size());
  return out;
}

// Unsigned integers as U8 [count, sizeof(T)], little-endian (safetensors has no U16/U32 here).
template <typename T>
void put_uints(io::TensorMap& map, const std::string& name, const std::vector<T>& values) {
  std::vector<std::uint8_t> bytes(values.size() * sizeof(T));
  if (!bytes.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  map.put_bytes(name, io::DType::U8,
                {static_cast<std::int64_t>(values.size()), static_cast<std::int64_t>(sizeof(T))},
                std::move(bytes));
}

template <typename T>
std::vector<T> get_uints(const io::TensorMap& map, const std::string& name, Index count) {
  const io::Tensor& t =
      tensor_as(map, name, io::DType::U8, {count, static_cast<std::int64_t>(sizeof(T))});
  std::vector<T> out(static_cast<std::size_t>(count));
  if (!out.empty()) std::memcpy(out.data(), t.bytes.data(), t.bytes.size());
  return out;
}

// The number of entries of a U8 [count, width] tensor.
inline Index uint_count(const io::TensorMap& map, const std::string& name, std::int64_t width) {
  const io::Tensor& t = map.at(name);
  require<FormatError>(t.dtype == io::DType::U8 && t.shape.size() == 2 && t.shape[1] == width,
                       "tensor '", name, "' is ", io::dtype_name(t.dtype), " ",
                       io::TensorMap::shape_string(t.shape), "; expected U8 [count, ", width, "]");
  return static_cast<Index>(t.shape[0]);
}

inline bool metadata_bool(const io::TensorMap& map, const std::string& key) {
  const std::string& text = io::detail::metadata_field(map, key);
  require<FormatError>(text == "true" || text == "false", "metadata '", key, "' is '", text,
                       "'; expected true or false");
  return text == "true";
}

inline void require_metadata_integer(const io::TensorMap& map, const std::string& key,
                                     Index expected) {
  const std::int64_t value = io::detail::metadata_integer(map, key);
  require<FormatError>(value == expected, "metadata '", key, "' is ", value, "; expected ",
                       expected);
}

// Checks CSR structure: offsets start at 0, never decrease and end at nnz; columns strictly
// increase within a row and lie below `cols`. `what` names the tensors' common prefix.
template <typename Column>
void check_csr(const std::vector<std::uint32_t>& offsets, const std::vector<Column>& columns,
               Index cols, const std::string& what) {
  require<FormatError>(offsets.front() == 0, "tensor '", what, ".row_offsets' starts at ",
                       offsets.front(), "; expected 0");
  for (std::size_t r = 0; r + 1 < offsets.size(); ++r) {
    require<FormatError>(offsets[r] <= offsets[r + 1] && offsets[r + 1] <= columns.size(),
                         "tensor '", what, ".row_offsets' entry ", r + 1, " is ", offsets[r + 1],
                         "; expected between ", offsets[r], " and ", columns.size());
    for (std::uint32_t k = offsets[r]; k < offsets[r + 1]; ++k) {
      require<FormatError>(
          static_cast<Index>(columns[k]) < cols && (k == offsets[r] || columns[k - 1] < columns[k]),
          "tensor '", what, ".col_indices' entry ", k, " (row ", r, ") is ",
          static_cast<std::uint64_t>(columns[k]),
          "; expected increasing columns below in_features ", cols);
    }
  }
  require<FormatError>(offsets.back() == columns.size(), "tensor '", what, ".row_offsets' ends at ",
                       offsets.back(), "; expected nnz ", columns.size());
}

// ---- quantized: quant::Linear ----------------------------------------------------------------

// The activation path of a layer on quant::Linear's kernels, kept as metadata
// "<prefix>.activations" ("int8" or "fp32") by the quantized and quantized_lowrank codecs.
inline void put_activation_path(io::TensorMap& map, const std::string& prefix,
                                quant::ActivationPath path) {
  map.metadata[prefix + ".activations"] = path == quant::ActivationPath::int8 ? "int8" : "fp32";
}

// quant::Linear options for a loaded layer: its stored activation path, the loader's threads.
inline quant::LinearOptions linear_options(const LayerSlot& s) {
  const std::string& path = io::detail::metadata_field(s.map, s.prefix + ".activations");
  require<FormatError>(path == "int8" || path == "fp32", "metadata '", s.prefix,
                       ".activations' is '", path, "'; expected int8 or fp32");
  quant::LinearOptions options;
  options.activations = path == "int8" ? quant::ActivationPath::int8 : quant::ActivationPath::fp32;
  options.threads = s.options.threads;
  return options;
}

inline bool put_quantized_layer(io::TensorMap& map, const std::string& prefix,
                                const LinearLayer& layer, int) {
  const auto* q = dynamic_cast<const quant::Linear*>(&layer);
  if (q == nullptr) return false;
  io::put_quantized(map, prefix, q->quantized());
  put_activation_path(map, prefix, q->options().activations);
  return true;
}

inline LoadedLayer get_quantized_layer(const LayerSlot& s) {
  const quant::LinearOptions options = linear_options(s);
  // The stored codes are rows x packed(cols): check their shape before anything is allocated.
  const io::Tensor& codes = s.map.at(s.prefix + ".qweight");
  require<FormatError>(codes.shape.size() == 2 && codes.shape[0] == s.out_features, "tensor '",
                       s.prefix, ".qweight' has shape ", io::TensorMap::shape_string(codes.shape),
                       "; expected ", s.out_features, " rows");
  require_metadata_integer(s.map, s.prefix + ".in_features", s.in_features);
  quant::QuantizedMatrix q = io::get_quantized(s.map, s.prefix);
  LoadedLayer out;
  out.effective_weight = q.dequantize();
  out.layer = std::make_shared<quant::Linear>(q, options);
  return out;
}

// ---- csr / nm: prune::SparseLinear ----------------------------------------------------------

inline bool put_csr_layer(io::TensorMap& map, const std::string& prefix, const LinearLayer& layer,
                          int) {
  const auto* sparse = dynamic_cast<const prune::SparseLinear*>(&layer);
  const prune::CsrMatrix* csr =
      sparse != nullptr ? std::get_if<prune::CsrMatrix>(&sparse->storage()) : nullptr;
  if (csr == nullptr) return false;
  map.metadata[prefix + ".in_features"] = std::to_string(csr->cols());
  put_f32(map, prefix + ".values", csr->values().data(), {csr->nonzeros()});
  if (csr->narrow_indices()) {
    put_uints(map, prefix + ".col_indices", csr->indices16());
  } else {
    put_uints(map, prefix + ".col_indices", csr->indices32());
  }
  put_uints(map, prefix + ".row_offsets", csr->row_offsets());
  return true;
}

template <typename Column>
LoadedLayer rebuild_csr(const LayerSlot& s, const std::vector<std::uint32_t>& offsets,
                        const std::vector<Column>& columns, const std::vector<float>& values,
                        bool windowed = false) {
  check_csr(offsets, columns, s.in_features, s.prefix);
  Matrix w = Matrix::Zero(s.out_features, s.in_features);
  prune::Mask mask(prune::MaskMatrix::Zero(s.out_features, s.in_features));
  for (Index r = 0; r < s.out_features; ++r) {
    for (std::uint32_t k = offsets[std::size_t(r)]; k < offsets[std::size_t(r) + 1]; ++k) {
      w(r, Index(columns[k])) = values[k];
      mask.set(r, Index(columns[k]), true);
    }
  }
  LoadedLayer out;
  const kernels::SparseKernelOptions options{s.options.threads};
  if (windowed) {
    out.layer = std::make_shared<prune::SparseLinear>(prune::WindowedCsrMatrix::from_mask(w, mask),
                                                      options);  // keeps stored zeros
  } else {
    out.layer =
        std::make_shared<prune::SparseLinear>(prune::CsrMatrix::from_mask(w, mask), options);
  }
  out.effective_weight = std::move(w);
  return out;
}

// Windowed CSR is stored as plain CSR (values, 16- or 32-bit column indices, row offsets) and
// rebuilt into windows on load: the same entries, explicit zeros included.
inline bool put_windowed_layer(io::TensorMap& map, const std::string& prefix,
                               const LinearLayer& layer, int) {
  const auto* sparse = dynamic_cast<const prune::SparseLinear*>(&layer);
  const prune::WindowedCsrMatrix* win =
      sparse != nullptr ? std::get_if<prune::WindowedCsrMatrix>(&sparse->storage()) : nullptr;
  if (win == nullptr) return false;
  map.metadata[prefix + ".in_features"] = std::to_string(win->cols());
  std::vector<std::uint32_t> columns;
  columns.reserve(std::size_t(win->nonzeros()));
  const Index windows = win->windows_per_row();
  for (Index r = 0; r < win->rows(); ++r) {
    std::size_t k = win->row_offsets()[std::size_t(r)];
    for (Index q = 0; q < windows; ++q) {
      for (unsigned i = 0; i < win->counts()[std::size_t(r * windows + q)]; ++i, ++k) {
        columns.push_back(
            static_cast<std::uint32_t>(q * prune::WindowedCsrMatrix::kWindow + win->offsets()[k]));
      }
    }
  }
  put_f32(map, prefix + ".values", win->values().data(), {win->nonzeros()});
  if (win->cols() <= 65536) {
    put_uints(map, prefix + ".col_indices",
              std::vector<std::uint16_t>(columns.begin(), columns.end()));
  } else {
    put_uints(map, prefix + ".col_indices", columns);
  }
  put_uints(map, prefix + ".row_offsets", win->row_offsets());
  return true;
}

inline LoadedLayer get_sparse_rows(const LayerSlot& s, bool windowed) {
  require_metadata_integer(s.map, s.prefix + ".in_features", s.in_features);
  const auto offsets =
      get_uints<std::uint32_t>(s.map, s.prefix + ".row_offsets", s.out_features + 1);
  const bool narrow = s.in_features <= 65536;  // CsrMatrix's index width
  const std::string indices = s.prefix + ".col_indices";
  const Index nnz = uint_count(s.map, indices, narrow ? 2 : 4);
  const std::vector<float> values = get_f32(s.map, s.prefix + ".values", {nnz});
  if (narrow) {
    return rebuild_csr(s, offsets, get_uints<std::uint16_t>(s.map, indices, nnz), values, windowed);
  }
  return rebuild_csr(s, offsets, get_uints<std::uint32_t>(s.map, indices, nnz), values, windowed);
}

inline LoadedLayer get_windowed_layer(const LayerSlot& s) { return get_sparse_rows(s, true); }

inline LoadedLayer get_csr_layer(const LayerSlot& s) { return get_sparse_rows(s, false); }

inline bool put_nm_layer(io::TensorMap& map, const std::string& prefix, const LinearLayer& layer,
                         int) {
  const auto* sparse = dynamic_cast<const prune::SparseLinear*>(&layer);
  const prune::NmMatrix* nm =
      sparse != nullptr ? std::get_if<prune::NmMatrix>(&sparse->storage()) : nullptr;
  if (nm == nullptr) return false;
  map.metadata[prefix + ".n"] = std::to_string(nm->n());
  map.metadata[prefix + ".m"] = std::to_string(nm->m());
  map.metadata[prefix + ".in_features"] = std::to_string(nm->cols());
  const std::vector<float> values = nm->row_major_values();
  put_f32(map, prefix + ".values", values.data(), {nm->rows(), nm->values_per_row()});
  const std::vector<std::uint32_t> words = nm->row_major_codes();
  const std::size_t row_bytes = sizeof(std::uint32_t) * std::size_t(nm->words_per_row());
  std::vector<std::uint8_t> codes(row_bytes * std::size_t(nm->rows()));
  if (!codes.empty()) std::memcpy(codes.data(), words.data(), codes.size());
  map.put_bytes(prefix + ".codes", io::DType::U8,
                {nm->rows(), static_cast<std::int64_t>(row_bytes)}, std::move(codes));
  return true;
}

inline LoadedLayer get_nm_layer(const LayerSlot& s) {
  const std::int64_t n = io::detail::metadata_integer(s.map, s.prefix + ".n");
  const std::int64_t m = io::detail::metadata_integer(s.map, s.prefix + ".m");
  require_metadata_integer(s.map, s.prefix + ".in_features", s.in_features);
  require<FormatError>(m >= 1 && m <= 256 && n >= 1 && n <= m && s.in_features % m == 0,
                       "metadata '", s.prefix, ".n' / '.m' are ", n, ":", m,
                       "; expected 1 <= n <= m <= 256 with m dividing in_features ", s.in_features);
  // NmMatrix's layout: ceil(log2 m) bits per position, floor(32 / bits) positions per word.
  int bits = 1;
  while ((std::int64_t{1} << bits) < m) ++bits;
  const Index per_word = 32 / bits;
  const Index values_per_row = s.in_features / m * n;
  const Index words_per_row = (values_per_row + per_word - 1) / per_word;
  const std::vector<float> values =
      get_f32(s.map, s.prefix + ".values", {s.out_features, values_per_row});
  const io::Tensor& codes =
      tensor_as(s.map, s.prefix + ".codes", io::DType::U8, {s.out_features, 4 * words_per_row});
  std::vector<std::uint32_t> words(static_cast<std::size_t>(s.out_features * words_per_row));
  if (!words.empty()) std::memcpy(words.data(), codes.bytes.data(), codes.bytes.size());

  Matrix w = Matrix::Zero(s.out_features, s.in_features);
  prune::Mask mask(prune::MaskMatrix::Zero(s.out_features, s.in_features));
  for (Index r = 0; r < s.out_features; ++r) {
    for (Index k = 0; k < values_per_row; ++k) {
      const std::uint32_t word = words[std::size_t(r * words_per_row + k / per_word)];
      const Index j = Index((word >> (bits * (k % per_word))) & ((1u << bits) - 1u));
      require<FormatError>(j < m, "tensor '", s.prefix, ".codes' holds position ", j, " at row ", r,
                           " value ", k, "; expected below m ", m);
      const Index c = (k / n) * m + j;
      w(r, c) = values[std::size_t(r * values_per_row + k)];
      mask.set(r, c, true);
    }
  }
  prune::NmMatrix nm = prune::NmMatrix::from_mask(w, mask, n, m);
  // The stored words must be exactly what NmMatrix builds (increasing positions, zero padding),
  // or the rebuilt layer would not be the stored one.
  require<FormatError>(nm.words_per_row() == words_per_row && nm.row_major_codes() == words,
                       "tensor '", s.prefix,
                       ".codes' is not canonical N:M storage (positions must strictly increase "
                       "within each group and unused bits be zero)");
  LoadedLayer out;
  out.effective_weight = nm.to_dense();
  out.layer = std::make_shared<prune::SparseLinear>(
      std::move(nm), kernels::SparseKernelOptions{s.options.threads});
  return out;
}

// ---- lowrank: lowrank::Linear ----------------------------------------------------------------

// True when lowrank::Linear exposes its sparse residual as `sparse()`.
template <typename L, typename = void>
struct exposes_sparse_residual : std::false_type {};
template <typename L>
struct exposes_sparse_residual<L, std::void_t<decltype(std::declval<const L&>().sparse())>>
    : std::true_type {};

inline void put_sparse_residual(io::TensorMap& map, const std::string& prefix,
                                const lowrank::SparseMatrix& s) {
  std::vector<float> values;
  std::vector<std::uint32_t> columns, offsets{0};
  for (Index r = 0; r < s.outerSize(); ++r) {
    for (lowrank::SparseMatrix::InnerIterator it(s, r); it; ++it) {
      values.push_back(it.value());
      columns.push_back(static_cast<std::uint32_t>(it.col()));
    }
    offsets.push_back(static_cast<std::uint32_t>(values.size()));
  }
  map.metadata[prefix + ".sparse_residual"] = "true";
  put_f32(map, prefix + ".residual.values", values.data(), {Index(values.size())});
  put_uints(map, prefix + ".residual.col_indices", columns);
  put_uints(map, prefix + ".residual.row_offsets", offsets);
}

template <typename L>
void put_lowrank_residual(io::TensorMap& map, const std::string& prefix, const L& layer) {
  if constexpr (exposes_sparse_residual<L>::value) {
    if (layer.sparse().nonZeros() > 0) {
      put_sparse_residual(map, prefix, layer.sparse());
      return;
    }
  } else {
    const std::size_t factor_bytes =
        sizeof(float) * static_cast<std::size_t>(layer.factors().params());
    require<ArgumentError>(layer.bytes() == factor_bytes, "save_compressed_model: layer '", prefix,
                           "' (", layer.describe(),
                           ") holds a sparse residual that lowrank::Linear does not expose; "
                           "expected factors only");
  }
  map.metadata[prefix + ".sparse_residual"] = "false";
}

inline bool put_lowrank_layer(io::TensorMap& map, const std::string& prefix,
                              const LinearLayer& layer, int) {
  const auto* l = dynamic_cast<const lowrank::Linear*>(&layer);
  if (l == nullptr) return false;
  put_lowrank_residual(map, prefix, *l);
  const lowrank::Factors& f = l->factors();
  map.put_matrix(prefix + ".U", f.U);
  map.put_matrix(prefix + ".V", f.V);
  return true;
}

inline LoadedLayer get_lowrank_layer(const LayerSlot& s) {
  const auto u_shape = shape_2d(s.map, s.prefix + ".U", "[out, rank]");
  require<FormatError>(u_shape[0] == s.out_features && u_shape[1] > 0, "tensor '", s.prefix,
                       ".U' has shape ", io::TensorMap::shape_string(u_shape), "; expected [",
                       s.out_features, ", rank > 0]");
  const Index rank = static_cast<Index>(u_shape[1]);
  lowrank::Factors f;
  f.U = s.map.matrix(s.prefix + ".U");
  f.V = f32_matrix(s.map, s.prefix + ".V", rank, s.in_features);
  LoadedLayer out;
  out.effective_weight = f.reconstruct();
  if (!metadata_bool(s.map, s.prefix + ".sparse_residual")) {
    out.layer = std::make_shared<lowrank::Linear>(std::move(f));
    return out;
  }
  const std::string what = s.prefix + ".residual";
  const auto offsets = get_uints<std::uint32_t>(s.map, what + ".row_offsets", s.out_features + 1);
  const Index nnz = uint_count(s.map, what + ".col_indices", 4);
  const auto columns = get_uints<std::uint32_t>(s.map, what + ".col_indices", nnz);
  const std::vector<float> values = get_f32(s.map, what + ".values", {nnz});
  check_csr(offsets, columns, s.in_features, what);
  require<FormatError>(nnz <= std::numeric_limits<int>::max(), "tensor '", what, ".values' holds ",
                       nnz, " entries; expected fewer than 2^31");
  std::vector<int> outer(offsets.begin(), offsets.end()), inner(columns.begin(), columns.end());
  lowrank::DenseSparse split;
  split.sparse = Eigen::Map<const lowrank::SparseMatrix>(s.out_features, s.in_features, nnz,
                                                         outer.data(), inner.data(), values.data());
  split.factors = std::move(f);
  out.effective_weight += Matrix(split.sparse);
  out.layer = std::make_shared<lowrank::Linear>(std::move(split));
  return out;
}

// ---- input_scaled: pipeline::InputScaledLinear (AWQ) ----------------------------------------

inline bool put_input_scaled_layer(io::TensorMap& map, const std::string& prefix,
                                   const LinearLayer& layer, int depth) {
  const auto* l = dynamic_cast<const InputScaledLinear*>(&layer);
  if (l == nullptr) return false;
  require<ArgumentError>(l->inner() != nullptr, "save_compressed_model: layer '", prefix,
                         "' wraps no inner layer");
  map.put_vector(prefix + ".inverse_scales", l->inverse_scales());
  put_layer(map, prefix + ".inner", *l->inner(), depth + 1);
  return true;
}

inline LoadedLayer get_input_scaled_layer(const LayerSlot& s) {
  const std::vector<float> scales = get_f32(s.map, s.prefix + ".inverse_scales", {s.in_features});
  LoadedLayer inner = get_layer(
      LayerSlot{s.map, s.prefix + ".inner", s.out_features, s.in_features, s.options, s.depth + 1});
  const Vector inverse = Eigen::Map<const Vector>(scales.data(), s.in_features);
  LoadedLayer out;
  // y = (x diag(s)) W^T = x (W diag(s))^T
  out.effective_weight = inner.effective_weight * inverse.asDiagonal();
  out.layer = std::make_shared<InputScaledLinear>(inverse, std::move(inner.layer));
  return out;
}

// ---- dense: slim::DenseLinear ----------------------------------------------------------------

inline bool put_dense_layer(io::TensorMap& map, const std::string& prefix, const LinearLayer& layer,
                            int) {
  const auto* l = dynamic_cast<const DenseLinear*>(&layer);
  if (l == nullptr) return false;
  map.put_matrix(prefix + ".weight", l->weight());
  return true;
}

// ---- quantized_lowrank: lowrank::QuantizedLinear (each factor as a quantized matrix) -------

inline bool put_quantized_lowrank_layer(io::TensorMap& map, const std::string& prefix,
                                        const LinearLayer& layer, int) {
  const auto* q = dynamic_cast<const lowrank::QuantizedLinear*>(&layer);
  if (q == nullptr) return false;
  io::put_quantized(map, prefix + ".U", q->u_layer().quantized());
  io::put_quantized(map, prefix + ".V", q->v_layer().quantized());
  put_activation_path(map, prefix, q->options().activations);
  return true;
}

inline LoadedLayer get_quantized_lowrank_layer(const LayerSlot& s) {
  const quant::LinearOptions options = linear_options(s);
  lowrank::QuantizedFactors f{io::get_quantized(s.map, s.prefix + ".U"),
                              io::get_quantized(s.map, s.prefix + ".V")};
  require<FormatError>(
      f.U.rows() == s.out_features && f.V.cols() == s.in_features && f.U.cols() == f.V.rows(),
      "layer '", s.prefix, "': factors are ", f.U.rows(), " x ", f.U.cols(), " and ", f.V.rows(),
      " x ", f.V.cols(), "; expected ", s.out_features, " x r and r x ", s.in_features);
  LoadedLayer out;
  out.effective_weight = f.dequantize().reconstruct();
  try {
    out.layer = std::make_shared<lowrank::QuantizedLinear>(f, options);
  } catch (const ArgumentError& e) {
    throw FormatError(slim::detail::concat("layer '", s.prefix, "': ", e.what()));
  }
  return out;
}

inline LoadedLayer get_dense_layer(const LayerSlot& s) {
  LoadedLayer out;
  out.effective_weight = f32_matrix(s.map, s.prefix + ".weight", s.out_features, s.in_features);
  out.layer = std::make_shared<DenseLinear>(out.effective_weight);
  return out;
}

// The layer kinds, one row each: adding a kind is adding a row (and its two functions).
inline const std::vector<LayerCodec>& layer_codecs() {
  static const std::vector<LayerCodec> codecs = {
      {"quantized", put_quantized_layer, get_quantized_layer},
      {"csr", put_csr_layer, get_csr_layer},
      {"windowed_csr", put_windowed_layer, get_windowed_layer},
      {"nm", put_nm_layer, get_nm_layer},
      {"lowrank", put_lowrank_layer, get_lowrank_layer},
      {"input_scaled", put_input_scaled_layer, get_input_scaled_layer},
      {"quantized_lowrank", put_quantized_lowrank_layer, get_quantized_lowrank_layer},
      {"dense", put_dense_layer, get_dense_layer},
  };
  return codecs;
}

// ---- the model -------------------------------------------------------------------------------

// out x in of the linear layer `name` ("layers.<i>.attention.wq", ..., "output") under `c`.
inline std::pair<Index, Index> linear_shape(const model::Config& c, const std::string& name) {
  const auto ends_with = [&name](const char* suffix) {
    const std::size_t n = std::strlen(suffix);
    return name.size() >= n && name.compare(name.size() - n, n, suffix) == 0;
  };
  if (name == "output") return {c.vocab_size, c.dim};
  if (ends_with(".wk") || ends_with(".wv")) return {c.kv_dim(), c.dim};
  if (ends_with(".w1") || ends_with(".w3")) return {c.hidden_dim, c.dim};
  if (ends_with(".w2")) return {c.dim, c.hidden_dim};
  return {c.dim, c.dim};  // wq, wo
}

inline model::Config read_config(const io::TensorMap& map) {
  model::Config c;
  c.dim = static_cast<Index>(io::detail::metadata_integer(map, "dim"));
  c.hidden_dim = static_cast<Index>(io::detail::metadata_integer(map, "hidden_dim"));
  c.n_layers = static_cast<Index>(io::detail::metadata_integer(map, "n_layers"));
  c.n_heads = static_cast<Index>(io::detail::metadata_integer(map, "n_heads"));
  c.n_kv_heads = static_cast<Index>(io::detail::metadata_integer(map, "n_kv_heads"));
  c.vocab_size = static_cast<Index>(io::detail::metadata_integer(map, "vocab_size"));
  c.seq_len = static_cast<Index>(io::detail::metadata_integer(map, "seq_len"));
  c.shared_classifier = metadata_bool(map, "shared_classifier");
  io::detail::require_valid_config(c, "model metadata");
  require<FormatError>(c.seq_len <= kMaxSeqLen, "metadata 'seq_len' is ", c.seq_len,
                       "; expected at most ", kMaxSeqLen);
  // Parameter names depend only on n_layers; each layer needs tensors, which bounds it.
  require<FormatError>(static_cast<std::size_t>(c.n_layers) <= map.tensors.size(),
                       "metadata 'n_layers' is ", c.n_layers, " but the file holds only ",
                       map.tensors.size(), " tensors");
  return c;
}

inline void check_format(const io::TensorMap& map) {
  const std::string& format = io::detail::metadata_field(map, "slim.format");
  require<FormatError>(format == kModelFileFormat, "metadata 'slim.format' is '", format,
                       "'; expected '", kModelFileFormat, "'");
  const std::int64_t version = io::detail::metadata_integer(map, "slim.format_version");
  require<FormatError>(version == kModelFileVersion, "metadata 'slim.format_version' is ", version,
                       "; this reader supports version ", kModelFileVersion);
}

}  // namespace detail

// Adds `model` (config, dense parameters, replaced layers in packed form), the format marker and
// `metadata` (as "user.<key>") to `map`. Throws ArgumentError naming the layer when a replaced
// layer is of a type no layer kind stores.
inline void put_compressed_model(io::TensorMap& map, const model::Transformer& model,
                                 const ModelMetadata& metadata = {}) {
  io::put_model(map, model.weights());
  for (const std::string& name : model.linear_names()) {
    const auto layer = model.replacement(name);
    if (layer == nullptr) continue;
    map.tensors.erase(name + ".weight");  // the compressed storage replaces the dense weight
    detail::put_layer(map, name, *layer, 0);
  }
  for (const auto& [key, value] : metadata) map.metadata["user." + key] = value;
  map.metadata["slim.format"] = kModelFileFormat;
  map.metadata["slim.format_version"] = std::to_string(kModelFileVersion);
}

// The caller's metadata stored by put_compressed_model.
inline ModelMetadata compressed_model_metadata(const io::TensorMap& map) {
  ModelMetadata out;
  const std::string prefix = "user.";
  for (const auto& [key, value] : map.metadata) {
    if (key.compare(0, prefix.size(), prefix) == 0) out[key.substr(prefix.size())] = value;
  }
  return out;
}

// Rebuilds the model stored by put_compressed_model: dense parameters as stored, each replaced
// layer as the same kind over the same storage (so it runs the same kernels and gives the same
// outputs). A replaced layer's dense weight in weights() is the weight it effectively applies
// (dequantized, densified, U V ...; the original weight is not in the file). Throws FormatError
// naming the key or tensor that is missing, malformed or of the wrong shape.
inline model::Transformer get_compressed_model(const io::TensorMap& map,
                                               const ModelFileOptions& options = {}) {
  require<ArgumentError>(options.threads >= 1, "load_compressed_model: threads ", options.threads,
                         " must be at least 1");
  detail::check_format(map);
  const model::Config c = detail::read_config(map);
  // The embedding backs dim and vocab_size with data before anything is allocated from them.
  const io::Tensor& embedding = map.at("tok_embeddings.weight");
  require<FormatError>(embedding.shape == std::vector<std::int64_t>{c.vocab_size, c.dim},
                       "tensor 'tok_embeddings.weight' has shape ",
                       io::TensorMap::shape_string(embedding.shape), "; expected [", c.vocab_size,
                       ", ", c.dim, "]");

  // Linear names from a skeleton of the same depth (the Transformer owns their order).
  model::Config skeleton;
  skeleton.dim = 2;
  skeleton.hidden_dim = skeleton.n_heads = skeleton.n_kv_heads = 1;
  skeleton.vocab_size = skeleton.seq_len = 1;
  skeleton.n_layers = c.n_layers;
  skeleton.shared_classifier = c.shared_classifier;
  const std::vector<std::string> names =
      model::Transformer(model::Weights::zeros(skeleton)).linear_names();

  // In execution order, so that each layer's out_features (always backed by stored rows) is
  // checked before a later layer uses it as in_features.
  std::vector<std::pair<std::string, detail::LoadedLayer>> replaced;
  for (const std::string& name : names) {
    const auto [out, in] = detail::linear_shape(c, name);
    if (map.metadata.count(name + ".kind") != 0) {
      replaced.emplace_back(name,
                            detail::get_layer(detail::LayerSlot{map, name, out, in, options, 0}));
    } else if (!(name == "output" && c.shared_classifier)) {
      const io::Tensor& t = map.at(name + ".weight");
      require<FormatError>(t.shape == std::vector<std::int64_t>{out, in}, "tensor '", name,
                           ".weight' has shape ", io::TensorMap::shape_string(t.shape),
                           "; expected [", out, ", ", in, "]");
    }
  }

  model::Weights w = model::Weights::zeros(c);
  std::map<std::string, const Matrix*> effective;
  for (const auto& [name, loaded] : replaced) effective[name] = &loaded.effective_weight;
  w.for_each_parameter([&](const std::string& name, auto p) {
    const auto it = effective.find(name);
    if (it != effective.end()) {
      p = *it->second;
    } else if (io::detail::is_norm_parameter(name)) {
      p.row(0) = map.vector(name + ".weight", p.cols()).transpose();
    } else {
      p = map.matrix(name + ".weight", p.rows(), p.cols());
    }
  });
  model::Transformer m(std::move(w));
  for (auto& [name, loaded] : replaced) m.replace(name, std::move(loaded.layer));
  return m;
}

#if defined(SLIM_IO_HAVE_SAFETENSORS)

struct LoadedModel {
  model::Transformer model;
  ModelMetadata metadata;
};

// Writes `model` and `metadata` to `path` as one safetensors file, atomically (a temporary file
// renamed into place). Throws ArgumentError for a layer type no kind stores (nothing is written),
// IoError when the file system refuses.
inline void save_compressed_model(const std::string& path, const model::Transformer& model,
                                  const ModelMetadata& metadata = {}) {
  io::TensorMap map;
  put_compressed_model(map, model, metadata);
  io::write_safetensors(path, map);
}

// Reads a file written by save_compressed_model: the model and the caller's metadata. Throws
// IoError if unreadable, FormatError (prefixed with the path) if malformed.
inline LoadedModel read_compressed_model(const std::string& path,
                                         const ModelFileOptions& options = {}) {
  const io::TensorMap map = io::read_safetensors(path);
  try {
    return LoadedModel{get_compressed_model(map, options), compressed_model_metadata(map)};
  } catch (const FormatError& e) {
    throw FormatError(slim::detail::concat("'", path, "': ", e.what()));
  }
}

// The model alone (see read_compressed_model).
inline model::Transformer load_compressed_model(const std::string& path,
                                                const ModelFileOptions& options = {}) {
  return read_compressed_model(path, options).model;
}

#endif  // SLIM_IO_HAVE_SAFETENSORS

}  // namespace slim::pipeline

// Reference-model checkpoints as named tensors (safetensors). Tensor names are llama2.c's
// model.py state-dict names (model::Weights::for_each_parameter plus ".weight"):
//   tok_embeddings.weight                 [vocab_size, dim]
//   layers.<i>.attention_norm.weight      [dim]
//   layers.<i>.attention.wq.weight        [dim, dim]        (out x in, as every linear)
//   layers.<i>.attention.wk.weight        [kv_dim, dim]
//   layers.<i>.attention.wv.weight        [kv_dim, dim]
//   layers.<i>.attention.wo.weight        [dim, dim]
//   layers.<i>.ffn_norm.weight            [dim]
//   layers.<i>.feed_forward.w1.weight     [hidden_dim, dim]  (gate)
//   layers.<i>.feed_forward.w2.weight     [dim, hidden_dim]  (down)
//   layers.<i>.feed_forward.w3.weight     [hidden_dim, dim]  (up)
//   norm.weight                           [dim]
//   output.weight                         [vocab_size, dim]  (only when the classifier is untied)
// and the config in metadata: "dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads",
// "vocab_size", "seq_len" (decimal) and "shared_classifier" ("true"/"false"). Loading accepts any
// float dtype per tensor and ignores tensors it does not know (e.g. quantized copies stored with
// put_quantized beside the float weights).
#pragma once

#include <slim/core/error.hpp>
#include <slim/io/quantized.hpp>
#include <slim/io/safetensors.hpp>
#include <slim/io/tensor.hpp>
#include <slim/model/config.hpp>
#include <slim/model/weights.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace slim::io {

namespace detail {

// Number of scalar parameters a model of `c` holds, or nothing if it overflows 64 bits. Lets
// readers check a header against the bytes really present before allocating anything.
inline std::optional<std::uint64_t> checked_parameter_count(const model::Config& c) {
  const auto u = [](Index v) { return static_cast<std::uint64_t>(v); };
  std::uint64_t embedding = 0, attention = 0, kv = 0, mlp = 0, per_layer = 0, layers = 0, total = 0;
  const std::uint64_t kv_dim = u(c.head_size()) * u(c.n_kv_heads);  // <= dim, no overflow
  bool ok = checked_mul(u(c.vocab_size), u(c.dim), embedding) &&
            checked_mul(u(c.dim), u(c.dim), attention) && checked_mul(kv_dim, u(c.dim), kv) &&
            checked_mul(u(c.hidden_dim), u(c.dim), mlp);
  std::uint64_t terms[6] = {};
  ok = ok && checked_mul(attention, 2, terms[0]) && checked_mul(kv, 2, terms[1]) &&
       checked_mul(mlp, 3, terms[2]) && checked_mul(u(c.dim), 2, terms[3]);
  for (int i = 0; ok && i < 4; ++i) ok = checked_add(per_layer, terms[i], per_layer);
  ok = ok && checked_mul(per_layer, u(c.n_layers), layers) &&
       checked_add(layers, embedding, total) && checked_add(total, u(c.dim), total);
  if (ok && !c.shared_classifier) ok = checked_add(total, embedding, total);
  if (!ok) return std::nullopt;
  return total;
}

inline bool is_norm_parameter(const std::string& name) {
  const std::string suffix = "_norm";
  return name == "norm" || (name.size() >= suffix.size() &&
                            name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0);
}

inline void require_valid_config(const model::Config& c, const char* where) {
  try {
    c.validate();
  } catch (const ArgumentError& e) {
    throw FormatError(slim::detail::concat(where, ": ", e.what()));
  }
}

}  // namespace detail

// Adds every parameter of `w` (converted to the float `dtype`) and its config to `map`. Throws
// ShapeError (from model::Weights::validate) if `w` does not match its config.
inline void put_model(TensorMap& map, const model::Weights& w, DType dtype = DType::F32) {
  w.validate();
  const model::Config& c = w.config;
  map.metadata["dim"] = std::to_string(c.dim);
  map.metadata["hidden_dim"] = std::to_string(c.hidden_dim);
  map.metadata["n_layers"] = std::to_string(c.n_layers);
  map.metadata["n_heads"] = std::to_string(c.n_heads);
  map.metadata["n_kv_heads"] = std::to_string(c.n_kv_heads);
  map.metadata["vocab_size"] = std::to_string(c.vocab_size);
  map.metadata["seq_len"] = std::to_string(c.seq_len);
  map.metadata["shared_classifier"] = c.shared_classifier ? "true" : "false";
  w.for_each_parameter([&](const std::string& name, const auto& p) {
    if (detail::is_norm_parameter(name)) {
      map.put_vector(name + ".weight", p.row(0).transpose(), dtype);
    } else {
      map.put_matrix(name + ".weight", p, dtype);
    }
  });
}

// Rebuilds the model stored by put_model. Throws FormatError naming the metadata key or tensor
// that is missing, malformed or of the wrong shape for the stored config.
inline model::Weights get_model(const TensorMap& map) {
  model::Config c;
  c.dim = static_cast<Index>(detail::metadata_integer(map, "dim"));
  c.hidden_dim = static_cast<Index>(detail::metadata_integer(map, "hidden_dim"));
  c.n_layers = static_cast<Index>(detail::metadata_integer(map, "n_layers"));
  c.n_heads = static_cast<Index>(detail::metadata_integer(map, "n_heads"));
  c.n_kv_heads = static_cast<Index>(detail::metadata_integer(map, "n_kv_heads"));
  c.vocab_size = static_cast<Index>(detail::metadata_integer(map, "vocab_size"));
  c.seq_len = static_cast<Index>(detail::metadata_integer(map, "seq_len"));
  const std::string& shared = detail::metadata_field(map, "shared_classifier");
  require<FormatError>(shared == "true" || shared == "false", "metadata 'shared_classifier' is '",
                       shared, "'; expected true or false");
  c.shared_classifier = shared == "true";
  detail::require_valid_config(c, "model metadata");

  // Allocate only what the stored tensors can fill: the config's parameter count must not exceed
  // the elements present (each tensor's shape is checked exactly below).
  std::uint64_t present = 0;
  for (const auto& item : map.tensors) present += item.second.numel();
  const auto needed = detail::checked_parameter_count(c);
  if (!needed.has_value() || *needed > present) {
    // Name the first missing tensor if there is one: parameter names depend only on n_layers
    // and the tied classifier, so a skeleton with tiny widths lists them cheaply.
    require<FormatError>(static_cast<std::size_t>(c.n_layers) <= map.tensors.size(),
                         "metadata 'n_layers' is ", c.n_layers, " but the file holds only ",
                         map.tensors.size(), " tensors");
    model::Config skeleton;
    skeleton.dim = 2;
    skeleton.hidden_dim = skeleton.n_heads = skeleton.n_kv_heads = 1;
    skeleton.vocab_size = skeleton.seq_len = 1;
    skeleton.n_layers = c.n_layers;
    skeleton.shared_classifier = c.shared_classifier;
    model::Weights::zeros(skeleton).for_each_parameter(
        [&](const std::string& name, const auto&) { map.at(name + ".weight"); });
  }
  require<FormatError>(needed.has_value() && *needed <= present, "model metadata describes ",
                       needed ? std::to_string(*needed) : std::string("more than 2^64"),
                       " parameters but the file holds only ", present, " tensor elements");

  model::Weights w = model::Weights::zeros(c);
  w.for_each_parameter([&](const std::string& name, auto p) {
    const std::string key = name + ".weight";
    if (detail::is_norm_parameter(name)) {
      p.row(0) = map.vector(key, p.cols()).transpose();
    } else {
      p = map.matrix(key, p.rows(), p.cols());
    }
  });
  return w;
}

#if defined(SLIM_IO_HAVE_SAFETENSORS)

// Writes `w` as a safetensors checkpoint (names above) atomically, converting to `dtype`.
inline void write_model_safetensors(const std::string& path, const model::Weights& w,
                                    DType dtype = DType::F32) {
  TensorMap map;
  put_model(map, w, dtype);
  write_safetensors(path, map);
}

// Reads a checkpoint written by write_model_safetensors (or any file with the names above).
inline model::Weights read_model_safetensors(const std::string& path) {
  const TensorMap map = read_safetensors(path);
  try {
    return get_model(map);
  } catch (const FormatError& e) {
    throw FormatError(slim::detail::concat("'", path, "': ", e.what()));
  }
}

#endif  // SLIM_IO_HAVE_SAFETENSORS

}  // namespace slim::io

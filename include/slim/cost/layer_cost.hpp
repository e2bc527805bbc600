// Arithmetic and byte counts of one linear layer Y = X W^T (W out x in, X tokens x in) in dense,
// quantized, sparse (CSR, N:M) and low-rank form: the inputs of the energy model (energy.hpp,
// Horowitz ISSCC 2014) and of the roofline (roofline.hpp). Every count is per call of T tokens.
//
// A form is a plain LayerForm; later modules describe their layers with one. What each counts:
//
//   all forms   activations enter and leave in fp32: activation_in_bytes = 4*T*in,
//               activation_out_bytes = 4*T*out. A multiply-accumulate (MAC) is one multiply
//               plus one add (the add into a zero accumulator counts too), so flops = 2 * macs.
//               Address arithmetic, loop control, conversions and compares are not counted,
//               except where listed below.
//   dense       macs = T*out*in, each an fp32 mult + fp32 add. Weights: out*in values of
//               value_bits (32 = fp32, 16 = fp16/bf16 widened to fp32 for free).
//   quantized   b-bit codes packed per row, ceil(in*b/8) bytes a row, as QuantizedMatrix stores
//               them; per group of `group_size` inputs of a row (0 = one group per row) one
//               scale of scale_bits and, with zero_point, one b-bit zero packed across the matrix
//               (ceil(groups*b/8) bytes). macs = T*out*in. Two activation paths:
//                 fp32 (weight-only): every weight is dequantized once per call, w = s*(q - z):
//                   out*in fp32 mult (+ out*in int32 add with zero_point; without one the codes
//                   are taken as signed), then T*out*in fp32 MACs.
//                 int8 (dynamic per-token int8 activations, b <= 8): quantizing X costs T*in fp32
//                   add (the abs-max compare) + T*in fp32 mult; the int8 copy of X is an
//                   intermediate of T*in bytes. The product is T*out*in int8 mult + int32 add.
//                   Per (token, output, group) the int32 partial sum is rescaled by the group's
//                   weight scale and accumulated: 1 fp32 mult + 1 fp32 add; per (token, output)
//                   the token's scale: 1 fp32 mult. With zero_point, per (token, output, group)
//                   z * sum(x over group) is subtracted: 1 int32 mult + 1 int32 add, and the
//                   group sums of x cost T*in int32 add.
//   sparse_csr  nnz = round((1 - sparsity)*out*in) values of value_bits, nnz column indices of
//               index_bits (16 needs in <= 65536) and out+1 32-bit row pointers. macs = T*nnz
//               fp32 MACs.
//   sparse_n_m  N kept of every M consecutive inputs (in must be a multiple of M): nnz =
//               out*in*N/M values of value_bits plus ceil(log2 M) bits of position per kept value
//               (2 bits for 2:4, as NVIDIA's sparse tensor cores store it), packed across the
//               matrix. macs = T*nnz fp32 MACs.
//   low_rank    W ~ U V with U out x r, V r x in, Y = (X V^T) U^T: r*(out+in) values of
//               value_bits, macs = T*r*(in+out) fp32 MACs; the T x r fp32 product X V^T is an
//               intermediate of 4*T*r bytes.
//
// bytes_moved = weight_bytes + activation_in_bytes + activation_out_bytes + 2*intermediate_bytes
// (each intermediate is written once and read once): the compulsory traffic of one call.
// Not modelled: combined forms (e.g. 2:4 sparse with int4 values), per-tensor scales, biases.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/types.hpp>

#include <cmath>
#include <string>

namespace slim::cost {

enum class Format { dense, quantized, sparse_csr, sparse_n_m, low_rank };

// How the activations of a quantized layer meet its weights (see the header comment).
enum class ActivationPath { fp32, int8 };

// Arithmetic operations of one call, by type; energy.hpp prices each, roofline.hpp times them.
struct OperationCounts {
  double fp32_mult = 0.0;
  double fp32_add = 0.0;
  double int8_mult = 0.0;
  double int8_add = 0.0;  // no built-in form uses it; available to forms that add int8 values
  double int32_mult = 0.0;
  double int32_add = 0.0;

  double fp32_ops() const { return fp32_mult + fp32_add; }
  double integer_ops() const { return int8_mult + int8_add + int32_mult + int32_add; }

  OperationCounts& operator+=(const OperationCounts& o) {
    fp32_mult += o.fp32_mult;
    fp32_add += o.fp32_add;
    int8_mult += o.int8_mult;
    int8_add += o.int8_add;
    int32_mult += o.int32_mult;
    int32_add += o.int32_add;
    return *this;
  }
};

// The dense layer being replaced: W is out_features x in_features, X is tokens x in_features.
struct LayerShape {
  Index out_features = 0;
  Index in_features = 0;
  Index tokens = 1;
};

// The storage form of a layer. Only the fields of `format` are read; the static functions
// build the usual forms: LayerForm::quantized(4, 128), LayerForm::sparse_n_m(2, 4), ...
struct LayerForm {
  Format format = Format::dense;
  int value_bits = 32;  // dense weights, sparse values, low-rank factors: 32 (fp32) or 16
  // quantized (defaults: GPTQ's 4-bit, group 128, asymmetric, fp16 scales)
  int bits = 4;                                       // 1..32 (1..8 with int8 activations)
  Index group_size = 128;                             // inputs per group; 0 = one group per row
  bool zero_point = true;                             // asymmetric: a b-bit zero per group
  int scale_bits = 16;                                // 1..32
  ActivationPath activations = ActivationPath::fp32;  // weight-only or int8 activations
  // sparse_csr (default: 50%, the SparseGPT / Wanda headline sparsity)
  double sparsity = 0.5;  // fraction of zero weights, in [0, 1)
  int index_bits = 32;    // 16 or 32
  // sparse_n_m (default 2:4)
  int n = 2;
  int m = 4;
  // low_rank
  Index rank = 0;  // 1..min(out, in)

  static LayerForm dense(int value_bits = 32) {
    LayerForm f;
    f.value_bits = value_bits;
    return f;
  }
  static LayerForm quantized(int bits, Index group_size = 128, bool zero_point = true,
                             ActivationPath activations = ActivationPath::fp32) {
    LayerForm f;
    f.format = Format::quantized;
    f.bits = bits;
    f.group_size = group_size;
    f.zero_point = zero_point;
    f.activations = activations;
    return f;
  }
  static LayerForm sparse_csr(double sparsity, int index_bits = 32, int value_bits = 32) {
    LayerForm f;
    f.format = Format::sparse_csr;
    f.sparsity = sparsity;
    f.index_bits = index_bits;
    f.value_bits = value_bits;
    return f;
  }
  static LayerForm sparse_n_m(int n, int m, int value_bits = 32) {
    LayerForm f;
    f.format = Format::sparse_n_m;
    f.n = n;
    f.m = m;
    f.value_bits = value_bits;
    return f;
  }
  static LayerForm low_rank(Index rank, int value_bits = 32) {
    LayerForm f;
    f.format = Format::low_rank;
    f.rank = rank;
    f.value_bits = value_bits;
    return f;
  }
};

// What one call of a layer costs. All counts are doubles so that model totals of billions
// stay exact (below 2^53) and sum without overflow.
struct LayerCost {
  double macs = 0.0;    // multiply-accumulates of the layer's products
  double flops = 0.0;   // 2 * macs
  OperationCounts ops;  // every counted operation, overheads included
  double weight_bytes = 0.0;
  double activation_in_bytes = 0.0;
  double activation_out_bytes = 0.0;
  double intermediate_bytes = 0.0;  // written once and read once per call
  double bytes_moved = 0.0;         // weight + in + out + 2 * intermediate
  double dense_weights = 0.0;       // out * in: the weights of the layer this form replaces

  double bits_per_weight() const {
    return dense_weights > 0.0 ? 8.0 * weight_bytes / dense_weights : 0.0;
  }
  // flops per byte of compulsory traffic.
  double arithmetic_intensity() const { return bytes_moved > 0.0 ? flops / bytes_moved : 0.0; }

  // Sums the costs of several layers (a block, a model). Apply roofline() per layer, not to a
  // sum: the cache decision depends on each layer's own working set.
  LayerCost& operator+=(const LayerCost& o) {
    macs += o.macs;
    flops += o.flops;
    ops += o.ops;
    weight_bytes += o.weight_bytes;
    activation_in_bytes += o.activation_in_bytes;
    activation_out_bytes += o.activation_out_bytes;
    intermediate_bytes += o.intermediate_bytes;
    bytes_moved += o.bytes_moved;
    dense_weights += o.dense_weights;
    return *this;
  }
};

namespace detail {

inline double packed_bytes(double count, int bits) {
  return std::ceil(count * static_cast<double>(bits) / 8.0);
}

inline void validate_value_bits(int value_bits, const char* fn) {
  require<ArgumentError>(value_bits == 16 || value_bits == 32, fn, ": value_bits ", value_bits,
                         " is not supported; expected 16 or 32");
}

inline void validate(const LayerShape& s, const LayerForm& f) {
  constexpr const char* fn = "cost::layer_cost";
  require<ShapeError>(s.out_features > 0, fn, ": out_features ", s.out_features,
                      " must be positive");
  require<ShapeError>(s.in_features > 0, fn, ": in_features ", s.in_features, " must be positive");
  require<ShapeError>(s.tokens > 0, fn, ": tokens ", s.tokens, " must be positive");
  switch (f.format) {
    case Format::dense:
      validate_value_bits(f.value_bits, fn);
      break;
    case Format::quantized: {
      require<ArgumentError>(f.bits >= 1 && f.bits <= 32, fn, ": bits ", f.bits,
                             " is outside 1..32");
      require<ArgumentError>(f.activations != ActivationPath::int8 || f.bits <= 8, fn, ": bits ",
                             f.bits, " do not fit the int8 activation path; expected 1..8");
      require<ArgumentError>(f.scale_bits >= 1 && f.scale_bits <= 32, fn, ": scale_bits ",
                             f.scale_bits, " is outside 1..32");
      require<ArgumentError>(f.group_size >= 0, fn, ": group_size ", f.group_size,
                             " must be positive, or 0 for one group per row");
      require<ArgumentError>(f.group_size == 0 || s.in_features % f.group_size == 0, fn,
                             ": group_size ", f.group_size, " does not divide in_features ",
                             s.in_features);
      break;
    }
    case Format::sparse_csr:
      validate_value_bits(f.value_bits, fn);
      require<ArgumentError>(f.sparsity >= 0.0 && f.sparsity < 1.0, fn, ": sparsity ", f.sparsity,
                             " is outside [0, 1)");
      require<ArgumentError>(f.index_bits == 16 || f.index_bits == 32, fn, ": index_bits ",
                             f.index_bits, " is not supported; expected 16 or 32");
      require<ArgumentError>(f.index_bits == 32 || s.in_features <= 65536, fn,
                             ": 16-bit column indices cannot address in_features ", s.in_features,
                             "; expected at most 65536");
      break;
    case Format::sparse_n_m:
      validate_value_bits(f.value_bits, fn);
      require<ArgumentError>(f.m >= 1, fn, ": M ", f.m, " must be positive");
      require<ArgumentError>(f.n >= 1 && f.n <= f.m, fn, ": N ", f.n, " is outside 1..M = ", f.m);
      require<ShapeError>(s.in_features % f.m == 0, fn, ": in_features ", s.in_features,
                          " is not a multiple of M = ", f.m);
      break;
    case Format::low_rank: {
      validate_value_bits(f.value_bits, fn);
      const Index max_rank = s.out_features < s.in_features ? s.out_features : s.in_features;
      require<ArgumentError>(f.rank >= 1 && f.rank <= max_rank, fn, ": rank ", f.rank,
                             " is outside 1..min(out_features, in_features) = ", max_rank);
      break;
    }
    default:
      throw ArgumentError(
          slim::detail::concat(fn, ": unknown format ", static_cast<int>(f.format)));
  }
}

// Bits of position metadata per kept value of an N:M pattern: ceil(log2 M).
inline int n_m_index_bits(int m) {
  int bits = 0;
  while ((1 << bits) < m) ++bits;
  return bits;
}

}  // namespace detail

// The cost of one call of a layer of `shape` stored in `form` (see the header comment for what
// is counted). Throws ShapeError for non-positive sizes or in_features not a multiple of M, and
// ArgumentError for bits, sparsity, rank, group size, N:M or index widths out of range.
inline LayerCost layer_cost(const LayerShape& shape, const LayerForm& form) {
  detail::validate(shape, form);
  const double out = static_cast<double>(shape.out_features);
  const double in = static_cast<double>(shape.in_features);
  const double tokens = static_cast<double>(shape.tokens);

  LayerCost c;
  c.dense_weights = out * in;
  c.activation_in_bytes = 4.0 * tokens * in;
  c.activation_out_bytes = 4.0 * tokens * out;
  const double value_bytes = static_cast<double>(form.value_bits) / 8.0;

  auto fp32_macs = [&c](double macs) {
    c.macs = macs;
    c.ops.fp32_mult += macs;
    c.ops.fp32_add += macs;
  };

  switch (form.format) {
    case Format::dense:
      c.weight_bytes = out * in * value_bytes;
      fp32_macs(tokens * out * in);
      break;
    case Format::quantized: {
      const double group = form.group_size == 0 ? in : static_cast<double>(form.group_size);
      const double groups_per_row = in / group;
      const double groups = out * groups_per_row;
      c.weight_bytes = out * detail::packed_bytes(in, form.bits) +
                       detail::packed_bytes(groups, form.scale_bits) +
                       (form.zero_point ? detail::packed_bytes(groups, form.bits) : 0.0);
      if (form.activations == ActivationPath::fp32) {
        c.ops.fp32_mult += out * in;                       // s * (q - z)
        if (form.zero_point) c.ops.int32_add += out * in;  // q - z
        fp32_macs(tokens * out * in);
      } else {
        c.macs = tokens * out * in;
        c.ops.fp32_add += tokens * in;   // abs-max of each token
        c.ops.fp32_mult += tokens * in;  // x / scale
        c.intermediate_bytes = tokens * in;
        c.ops.int8_mult += c.macs;
        c.ops.int32_add += c.macs;
        c.ops.fp32_mult += tokens * out * groups_per_row + tokens * out;  // group and token scale
        c.ops.fp32_add += tokens * out * groups_per_row;
        if (form.zero_point) {
          c.ops.int32_add += tokens * in;  // group sums of x
          c.ops.int32_mult += tokens * out * groups_per_row;
          c.ops.int32_add += tokens * out * groups_per_row;
        }
      }
      break;
    }
    case Format::sparse_csr: {
      const double nnz = std::round((1.0 - form.sparsity) * out * in);
      c.weight_bytes =
          nnz * (value_bytes + static_cast<double>(form.index_bits) / 8.0) + 4.0 * (out + 1.0);
      fp32_macs(tokens * nnz);
      break;
    }
    case Format::sparse_n_m: {
      const double nnz = out * (in / static_cast<double>(form.m)) * static_cast<double>(form.n);
      c.weight_bytes =
          nnz * value_bytes + detail::packed_bytes(nnz, detail::n_m_index_bits(form.m));
      fp32_macs(tokens * nnz);
      break;
    }
    case Format::low_rank: {
      const double rank = static_cast<double>(form.rank);
      c.weight_bytes = rank * (out + in) * value_bytes;
      c.intermediate_bytes = 4.0 * tokens * rank;
      fp32_macs(tokens * rank * (in + out));
      break;
    }
  }
  c.flops = 2.0 * c.macs;
  c.bytes_moved =
      c.weight_bytes + c.activation_in_bytes + c.activation_out_bytes + 2.0 * c.intermediate_bytes;
  return c;
}

// A short name for tables: "dense fp32", "int4 g128 asym", "int8 per-row sym, int8 activations",
// "csr 50% idx16", "2:4", "low-rank r64".
inline std::string describe(const LayerForm& f) {
  const std::string fp = f.value_bits == 16 ? " fp16" : "";
  switch (f.format) {
    case Format::dense:
      return f.value_bits == 16 ? "dense fp16" : "dense fp32";
    case Format::quantized: {
      std::string s = "int" + std::to_string(f.bits) + " ";
      s += f.group_size == 0 ? "per-row" : "g" + std::to_string(f.group_size);
      s += f.zero_point ? " asym" : " sym";
      if (f.activations == ActivationPath::int8) s += ", int8 activations";
      return s;
    }
    case Format::sparse_csr: {
      const long percent = std::lround(100.0 * f.sparsity);
      return "csr " + std::to_string(percent) + "% idx" + std::to_string(f.index_bits) + fp;
    }
    case Format::sparse_n_m:
      return std::to_string(f.n) + ":" + std::to_string(f.m) + fp;
    case Format::low_rank:
      return "low-rank r" + std::to_string(f.rank) + fp;
  }
  return "unknown";
}

}  // namespace slim::cost

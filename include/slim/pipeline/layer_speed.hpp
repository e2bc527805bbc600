// Per-layer speed of a compressed format at a given shape: the layer is built from seeded random
// weights (the kernels' speed does not depend on the values), and its forward() at T tokens is
// timed against the dense fp32 Eigen product Y = X W^T of the same shape in the same call,
// alternating the two (median of each after a warm-up, within a time budget). `slim compare`
// prints it for each method at LLaMA-7B's linear shapes, where the weights no longer fit in cache
// and compression pays.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/half.hpp>
#include <slim/core/linear.hpp>
#include <slim/core/random.hpp>
#include <slim/lowrank/factors.hpp>
#include <slim/lowrank/linear.hpp>
#include <slim/prune/mask.hpp>
#include <slim/prune/sparse_linear.hpp>
#include <slim/quant/linear.hpp>
#include <slim/quant/quantized_matrix.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace slim::pipeline {

enum class LayerFormat {
  dense,      // fp32 weights, Eigen (DenseLinear)
  quantized,  // quant::Linear: 4- or 8-bit codes, int8 or fp32 activations
  sparse,     // unstructured: prune::SparseLinear::unstructured
  n_m,        // N:M: prune::SparseLinear::n_m
  low_rank,   // lowrank::Linear at rank lowrank::rank_for_budget(out, in, fraction)
};

// The storage format of a layer whose speed is measured. Only the fields of `format` are read;
// the static functions build the usual ones.
struct FormatSpec {
  LayerFormat format = LayerFormat::dense;
  // quantized
  int bits = 4;           // 4 or 8 (the kernels' formats)
  Index group_size = 32;  // inputs per group; 0 = one group per output row (per-channel)
  bool symmetric = false;
  quant::ActivationPath activations = quant::ActivationPath::int8;
  // sparse
  double sparsity = 0.5;  // fraction pruned, [0, 1)
  // n_m
  Index n = 2;
  Index m = 4;
  // low_rank
  double fraction = 0.5;  // parameters kept, (0, 1]

  static FormatSpec dense() { return {}; }
  static FormatSpec quantized(int bits, Index group_size, bool symmetric = false,
                              quant::ActivationPath activations = quant::ActivationPath::int8) {
    FormatSpec s;
    s.format = LayerFormat::quantized;
    s.bits = bits;
    s.group_size = group_size;
    s.symmetric = symmetric;
    s.activations = activations;
    return s;
  }
  static FormatSpec unstructured(double sparsity) {
    FormatSpec s;
    s.format = LayerFormat::sparse;
    s.sparsity = sparsity;
    return s;
  }
  static FormatSpec n_m(Index n, Index m) {
    FormatSpec s;
    s.format = LayerFormat::n_m;
    s.n = n;
    s.m = m;
    return s;
  }
  static FormatSpec low_rank(double fraction) {
    FormatSpec s;
    s.format = LayerFormat::low_rank;
    s.fraction = fraction;
    return s;
  }

  // "dense fp32", "int4 g32 asym x int8", "sparse 50%", "sparse 2:4", "low-rank 50% params".
  std::string name() const {
    switch (format) {
      case LayerFormat::dense:
        return "dense fp32";
      case LayerFormat::quantized:
        return "int" + std::to_string(bits) + " " +
               (group_size > 0 ? "g" + std::to_string(group_size) : std::string("per-channel")) +
               (symmetric ? " sym" : " asym") +
               (activations == quant::ActivationPath::int8 ? " x int8" : " x fp32");
      case LayerFormat::sparse:
        return "sparse " + std::to_string(static_cast<int>(sparsity * 100.0 + 0.5)) + "%";
      case LayerFormat::n_m:
        return "sparse " + std::to_string(n) + ":" + std::to_string(m);
      case LayerFormat::low_rank:
        return "low-rank " + std::to_string(static_cast<int>(fraction * 100.0 + 0.5)) + "% params";
    }
    return "unknown";
  }
};

// Throws ArgumentError unless `spec` can be built at out x in (ShapeError for a non-positive
// shape). quant::Linear checks the group sizes its kernels take when the layer is built.
inline void validate(const FormatSpec& spec, Index out, Index in, const char* fn) {
  require<ShapeError>(out > 0 && in > 0, fn, ": shape ", out, " x ", in,
                      " must be positive (out_features x in_features)");
  switch (spec.format) {
    case LayerFormat::dense:
      break;
    case LayerFormat::quantized:
      require<ArgumentError>(spec.bits == 4 || spec.bits == 8, fn, ": bits ", spec.bits,
                             " has no kernel; expected 4 or 8");
      require<ArgumentError>(spec.group_size >= 0, fn, ": group_size ", spec.group_size,
                             " is negative; expected 0 (per-channel) or a positive size");
      require<ArgumentError>(spec.group_size == 0 || in % spec.group_size == 0, fn, ": group_size ",
                             spec.group_size, " does not divide in_features ", in);
      break;
    case LayerFormat::sparse:
      require<ArgumentError>(spec.sparsity >= 0.0 && spec.sparsity < 1.0, fn, ": sparsity ",
                             spec.sparsity, " is outside [0, 1)");
      break;
    case LayerFormat::n_m:
      require<ArgumentError>(spec.m >= 1 && spec.n >= 1 && spec.n <= spec.m, fn, ": N:M ", spec.n,
                             ":", spec.m, " is invalid; expected 1 <= n <= m");
      require<ArgumentError>(in % spec.m == 0, fn, ": N:M group length m ", spec.m,
                             " does not divide in_features ", in);
      break;
    case LayerFormat::low_rank:
      require<ArgumentError>(spec.fraction > 0.0 && spec.fraction <= 1.0, fn, ": fraction ",
                             spec.fraction, " is outside (0, 1]");
      require<ArgumentError>(spec.fraction * double(out) * double(in) >= double(out + in), fn,
                             ": fraction ", spec.fraction, " of ", out, " x ", in,
                             " is below one rank (", out + in, " parameters)");
      break;
  }
}

// A layer of `spec` built from seeded random weights.
struct BuiltLayer {
  std::shared_ptr<const LinearLayer> layer;
  Matrix dense_weight;      // W, out x in: the dense baseline's operand (the sparse values)
  Matrix effective_weight;  // the weights `layer` computes with; empty unless asked for
};

namespace detail {

// Uniform weights in [-1, 1) / sqrt(in): cheap to draw for 45 M entries, and like a trained
// layer's scale (values do not change the kernels' speed).
inline Matrix random_weight(Index out, Index in, std::uint64_t seed) {
  random::Generator g(seed);
  Matrix w(out, in);
  const double scale = 1.0 / std::sqrt(static_cast<double>(in));
  for (Index i = 0; i < w.size(); ++i)
    w.data()[i] = static_cast<float>((2.0 * g.uniform() - 1.0) * scale);
  return w;
}

// Random codes, fp16 scales and zero-points: the bench_linear way of making a quantized matrix
// of any shape in one pass.
inline quant::QuantizedMatrix random_quantized(Index out, Index in, const FormatSpec& spec,
                                               std::uint64_t seed) {
  quant::Scheme scheme;
  scheme.bits = spec.bits;
  scheme.symmetric = spec.symmetric;
  if (spec.group_size > 0) {
    scheme.granularity = quant::Granularity::per_group;
    scheme.group_size = spec.group_size;
  } else {
    scheme.granularity = quant::Granularity::per_channel;
    scheme.group_size = 0;
  }
  quant::QuantizedMatrix q(out, in, scheme);
  random::Generator g(seed);
  const std::size_t stride = q.row_stride_bytes();
  const float base = 0.5f / static_cast<float>(scheme.maxq()) /
                     static_cast<float>(std::sqrt(static_cast<double>(in)));
  for (Index r = 0; r < out; ++r) {
    std::uint8_t* codes = q.row_codes(r);
    for (std::size_t i = 0; i < stride; ++i) codes[i] = static_cast<std::uint8_t>(g.next() >> 56);
    for (Index grp = 0; grp < q.groups_per_row(); ++grp) {
      quant::GroupParams p;
      p.scale = round_to_fp16(base * static_cast<float>(1.0 + g.uniform()));
      p.zero = static_cast<int>(g.below(static_cast<std::uint64_t>(scheme.maxq()) + 1));
      q.set_params(r, grp, p);
    }
  }
  return q;
}

// Keeps exactly `keep` of every row's columns, chosen uniformly (Knuth's selection sampling).
inline prune::Mask random_row_mask(Index out, Index in, Index keep, std::uint64_t seed) {
  random::Generator g(seed);
  prune::MaskMatrix bits(out, in);
  for (Index r = 0; r < out; ++r) {
    Index needed = keep;
    for (Index c = 0; c < in; ++c) {
      const bool take =
          g.below(static_cast<std::uint64_t>(in - c)) < static_cast<std::uint64_t>(needed);
      bits(r, c) = take ? 1 : 0;
      needed -= take;
    }
  }
  return prune::Mask(std::move(bits));
}

// Keeps exactly n of every m consecutive inputs of each row, chosen uniformly.
inline prune::Mask random_n_m_mask(Index out, Index in, Index n, Index m, std::uint64_t seed) {
  random::Generator g(seed);
  prune::MaskMatrix bits(out, in);
  for (Index r = 0; r < out; ++r) {
    for (Index start = 0; start < in; start += m) {
      Index needed = n;
      for (Index c = 0; c < m; ++c) {
        const bool take =
            g.below(static_cast<std::uint64_t>(m - c)) < static_cast<std::uint64_t>(needed);
        bits(r, start + c) = take ? 1 : 0;
        needed -= take;
      }
    }
  }
  return prune::Mask(std::move(bits));
}

// Sets OpenMP's and Eigen's thread counts for its lifetime and restores them afterwards (the
// sparse kernels' default of 0 threads and Eigen's GEMM read these).
class ThreadScope {
 public:
  explicit ThreadScope(int threads) : eigen_(Eigen::nbThreads()) {
#if defined(_OPENMP)
    openmp_ = omp_get_max_threads();
    omp_set_num_threads(threads);
#endif
    Eigen::setNbThreads(threads);
  }
  ~ThreadScope() {
#if defined(_OPENMP)
    omp_set_num_threads(openmp_);
#endif
    Eigen::setNbThreads(eigen_);
  }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int eigen_ = 1;
  int openmp_ = 1;
};

inline double seconds_between(std::chrono::steady_clock::time_point a,
                              std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

inline double median(std::vector<double> v) {
  const auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  return *mid;
}

}  // namespace detail

// Builds a layer of `spec` at out x in from seed-determined random weights: dense fp32,
// quantized (random codes, fp16 scales and zero-points, through quant::Linear with `threads`),
// unstructured sparse (exactly round((1 - sparsity) * in) weights kept per row, at random;
// SparseLinear::unstructured's default storage), N:M (n random of every m) or low-rank (random
// factors at rank_for_budget(out, in, fraction)). With `effective_weight` the returned
// effective_weight is what the layer computes with (dequantized codes, the masked W, U V).
// Throws what validate throws, and quant::Linear's ArgumentError for a group size its kernels do
// not take.
inline BuiltLayer build_format_layer(const FormatSpec& spec, Index out, Index in, int threads = 1,
                                     std::uint64_t seed = 1, bool effective_weight = false) {
  validate(spec, out, in, "build_format_layer");
  require<ArgumentError>(threads >= 1, "build_format_layer: threads ", threads,
                         " must be at least 1");
  BuiltLayer built;
  built.dense_weight = detail::random_weight(out, in, seed);
  switch (spec.format) {
    case LayerFormat::dense:
      built.layer = std::make_shared<DenseLinear>(built.dense_weight);
      if (effective_weight) built.effective_weight = built.dense_weight;
      break;
    case LayerFormat::quantized: {
      const quant::QuantizedMatrix q = detail::random_quantized(out, in, spec, seed + 1);
      built.layer = std::make_shared<quant::Linear>(
          q, quant::LinearOptions{.activations = spec.activations, .threads = threads});
      if (effective_weight) built.effective_weight = q.dequantize();
      break;
    }
    case LayerFormat::sparse: {
      const Index pruned = prune::detail::pruned_count(spec.sparsity, in);
      const prune::Mask mask = detail::random_row_mask(out, in, in - pruned, seed + 1);
      built.layer = std::make_shared<prune::SparseLinear>(prune::SparseLinear::unstructured(
          built.dense_weight, mask, prune::UnstructuredFormat::fastest));
      if (effective_weight) built.effective_weight = mask.apply(built.dense_weight);
      break;
    }
    case LayerFormat::n_m: {
      const prune::Mask mask = detail::random_n_m_mask(out, in, spec.n, spec.m, seed + 1);
      built.layer = std::make_shared<prune::SparseLinear>(
          prune::SparseLinear::n_m(built.dense_weight, mask, spec.n, spec.m));
      if (effective_weight) built.effective_weight = mask.apply(built.dense_weight);
      break;
    }
    case LayerFormat::low_rank: {
      const Index rank = lowrank::rank_for_budget(out, in, spec.fraction);
      lowrank::Factors factors;
      factors.U = detail::random_weight(out, rank, seed + 1);
      factors.V = detail::random_weight(rank, in, seed + 2);
      if (effective_weight) built.effective_weight = factors.reconstruct();
      built.layer = std::make_shared<lowrank::Linear>(std::move(factors));
      break;
    }
  }
  return built;
}

struct LayerSpeedOptions {
  Index tokens = 1;      // T: rows of X (1 = one decode step, a GEMV)
  int threads = 1;       // for the compressed kernels and Eigen (see layer_speed)
  double seconds = 0.2;  // timing budget per call, both products together, after the warm-up
  int min_repetitions = 3;
  std::uint64_t seed = 1;
};

struct LayerSpeed {
  double dense_ms = 0.0;        // median Y = X W^T, Eigen fp32, W row-major out x in
  double compressed_ms = 0.0;   // median forward() of the compressed layer
  double speedup = 0.0;         // dense_ms / compressed_ms (> 1: the compressed layer is faster)
  std::size_t bytes = 0;        // the compressed layer's bytes()
  std::size_t dense_bytes = 0;  // 4 * out * in
  std::string layer;            // the layer's describe()
};

// Times spec's layer (build_format_layer) against the dense product of the same shape: one
// warm-up call each, then the two alternate until options.seconds have passed (at least
// min_repetitions each), and each time is the median of its runs, so slow drifts of the machine
// hit both alike. The kernels run with options.threads threads, and so do Eigen and OpenMP
// (their settings are restored afterwards): Eigen's GEMV (T = 1) is single-threaded whatever the
// setting, so with threads > 1 the decode-step speedup includes the kernels' parallelism. Building
// a 11008 x 4096 layer takes about a second and ~0.5 GB. Throws as build_format_layer, and
// ArgumentError for tokens, threads, seconds or min_repetitions out of range.
inline LayerSpeed layer_speed(const FormatSpec& spec, Index out, Index in,
                              const LayerSpeedOptions& options = {}) {
  require<ArgumentError>(options.tokens >= 1, "layer_speed: tokens ", options.tokens,
                         " must be at least 1");
  require<ArgumentError>(options.threads >= 1, "layer_speed: threads ", options.threads,
                         " must be at least 1");
  require<ArgumentError>(options.seconds >= 0.0 && std::isfinite(options.seconds),
                         "layer_speed: seconds ", options.seconds,
                         " must be finite and non-negative");
  require<ArgumentError>(options.min_repetitions >= 1, "layer_speed: min_repetitions ",
                         options.min_repetitions, " must be at least 1");
  validate(spec, out, in, "layer_speed");
  detail::ThreadScope scope(options.threads);
  const BuiltLayer built = build_format_layer(spec, out, in, options.threads, options.seed);
  const Matrix& w = built.dense_weight;
  const Matrix x = detail::random_weight(options.tokens, in, options.seed + 7);
  Matrix y_dense(options.tokens, out);
  Matrix y_layer(options.tokens, out);

  using Clock = std::chrono::steady_clock;
  auto time_dense = [&] {
    const auto start = Clock::now();
    y_dense.noalias() = x * w.transpose();
    return detail::seconds_between(start, Clock::now());
  };
  auto time_layer = [&] {
    const auto start = Clock::now();
    built.layer->forward(x, y_layer);
    return detail::seconds_between(start, Clock::now());
  };
  time_dense();
  time_layer();
  std::vector<double> dense_runs;
  std::vector<double> layer_runs;
  const auto begin = Clock::now();
  const auto enough = static_cast<std::size_t>(options.min_repetitions);
  while (dense_runs.size() < enough ||
         (detail::seconds_between(begin, Clock::now()) < options.seconds &&
          dense_runs.size() < 10000)) {
    dense_runs.push_back(time_dense());
    layer_runs.push_back(time_layer());
  }
  LayerSpeed s;
  s.dense_ms = 1e3 * detail::median(dense_runs);
  s.compressed_ms = 1e3 * detail::median(layer_runs);
  // The clock ticks in nanoseconds; a zero median would only come from a coarser clock.
  s.speedup = s.dense_ms / std::max(s.compressed_ms, 1e-6);
  s.bytes = built.layer->bytes();
  s.dense_bytes = sizeof(float) * static_cast<std::size_t>(out) * static_cast<std::size_t>(in);
  s.layer = built.layer->describe();
  return s;
}

// A linear layer shape, out_features x in_features, with a name to print.
struct LayerShape {
  std::string name;
  Index out_features = 0;
  Index in_features = 0;
};

// LLaMA-7B's linear shapes (hidden 4096, MLP 11008): the attention projections q, k, v, o
// (4096 x 4096) and the MLP's gate and up projections (11008 x 4096; down is its transpose).
inline std::vector<LayerShape> llama7b_shapes() {
  return {{"attention 4096x4096", 4096, 4096}, {"MLP 11008x4096", 11008, 4096}};
}

}  // namespace slim::pipeline

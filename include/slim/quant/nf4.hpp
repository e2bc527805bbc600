// NF4, bitsandbytes' 4-bit NormalFloat (Dettmers et al., "QLoRA", 2023, section 3):
// block-wise absmax scaling of the flattened row-major weight followed by nearest-value rounding
// to a fixed 16-entry code book, two codes per byte, with QLoRA's optional double quantization of
// the absmax values. Defaults (block 64, double-quant block 256) are bitsandbytes' quantize_4bit.
//
// Layout and arithmetic, as bitsandbytes' kQuantizeBlockwise / dQuantizeNF4 / kDequantize:
//   - W is flattened row-major into n = rows*cols values and cut into ceil(n / block_size) blocks;
//     the last block may be shorter (bitsandbytes' tail block), with its own absmax. Any positive
//     block size is accepted (bitsandbytes' kernels take powers of two from 64 to 4096); codes are
//     packed over the flat stream, which is bitsandbytes' layout whenever block_size is even.
//   - absmax_b = max |w| over block b (fp32); a weight is normalised as w * (1 / absmax_b).
//   - code = the number of the 15 fp32 decision thresholds of dQuantizeNF4 (the midpoints of
//     adjacent code values) that the normalised value exceeds strictly: nearest value, and a value
//     exactly on a threshold goes to the LOWER code (dQuantizeNF4 tests x > threshold).
//     An all-zero block gets absmax 0 and code 7 (value 0), so it dequantizes to exact zeros
//     whatever the codes (bitsandbytes' kernel does not special-case it and computes 0 * (1/0)).
//   - Two codes per byte, the FIRST of each pair in the HIGH nibble; an odd count pads the last
//     low nibble with code 7 (the code of 0, as bitsandbytes' zero-filled load does).
//   - Dequantization: w~ = code_book[code] * absmax_b (fp32).
// Double quantization (bitsandbytes quantize_4bit(compress_statistics=True)): offset = mean of
// the absmax values; the centred values absmax - offset are quantized block-wise (block 256)
// with absmax scaling to the nearest entry of bitsandbytes' 8-bit signed dynamic map
// (create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)); stored are one uint8 per
// absmax, one fp32 scale per 256 absmax values and the fp32 offset; the absmax used to
// dequantize is dynamic_map[q] * scale + offset. Differences from bitsandbytes, each able to
// change a result only in the last bit of the offset or at an exact tie: the mean is summed in
// double (PyTorch sums fp32 pairwise), ties between two dynamic-map entries go to the lower entry
// (the CUDA binary search is not symmetric in its tie rule), and the map is rebuilt with PyTorch's
// fp32 linspace arithmetic.
#pragma once

#include <slim/core/checks.hpp>
#include <slim/core/error.hpp>
#include <slim/core/types.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

namespace slim::quant {

// The NF4 code book of bitsandbytes (csrc/kernels.cu, nf4_data), ascending: 7 negative values,
// an exact 0 and 8 positive values, the extremes exactly -1 and 1.
inline constexpr std::array<float, 16> nf4_code_book = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

// The code of a value of 0, used for all-zero blocks and for padding.
inline constexpr std::uint8_t nf4_zero_code = 7;

struct Nf4Options {
  Index block_size = 64;                // weights per absmax (bitsandbytes' blocksize)
  bool double_quant = false;            // QLoRA double quantization of the absmax values
  Index double_quant_block_size = 256;  // absmax values per second-level scale
};

namespace detail {

// dQuantizeNF4's decision thresholds: fp32 midpoints of adjacent code values, ascending.
inline constexpr std::array<float, 15> nf4_thresholds = {
    -0.8480964004993439f,  -0.6106329262256622f,  -0.4599952697753906f,   -0.33967943489551544f,
    -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
    0.1202552504837513f,   0.2035212516784668f,   0.2920137718319893f,    0.3893125355243683f,
    0.5016634166240692f,   0.6427869200706482f,   0.8614784181118011f,
};

// The NF4 code of a normalised value x in [-1, 1]: how many thresholds x exceeds strictly
// (the same answer as dQuantizeNF4's binary decision tree, without its branches).
inline std::uint8_t nf4_encode(float x) {
  int code = 0;
  for (const float t : nf4_thresholds) code += x > t ? 1 : 0;
  return static_cast<std::uint8_t>(code);
}

// bitsandbytes' signed 8-bit dynamic map (create_dynamic_map(True, 7, 8)), 256 ascending fp32
// values: for i = 0..6, the 2^i midpoints of linspace(0.1, 1, 2^i + 1) times 10^(i-6), both
// signs, plus 0 and 1. Arithmetic in fp32 as PyTorch does it (linspace's step, midpoints, scale).
inline const std::array<float, 256>& dynamic_map() {
  static const std::array<float, 256> map = [] {
    std::vector<float> data;
    data.reserve(256);
    for (int i = 0; i < 7; ++i) {
      const std::int64_t steps = (std::int64_t{1} << i) + 1;
      const float start = 0.1f;
      const float end = 1.0f;
      const float step = (end - start) / static_cast<float>(steps - 1);
      const std::int64_t halfway = steps / 2;
      std::vector<float> boundaries(static_cast<std::size_t>(steps));
      for (std::int64_t k = 0; k < steps; ++k) {
        boundaries[static_cast<std::size_t>(k)] =
            k < halfway ? start + step * static_cast<float>(k)
                        : end - step * static_cast<float>(steps - k - 1);
      }
      const float scale = static_cast<float>(std::pow(10.0, i - 6));
      for (std::size_t k = 0; k + 1 < boundaries.size(); ++k) {
        const float mean = (boundaries[k] + boundaries[k + 1]) / 2.0f;
        data.push_back(scale * mean);
        data.push_back(-scale * mean);
      }
    }
    data.push_back(0.0f);
    data.push_back(1.0f);
    std::sort(data.begin(), data.end());
    std::array<float, 256> out{};
    std::copy(data.begin(), data.end(), out.begin());
    return out;
  }();
  return map;
}

// Index of the dynamic-map entry nearest to x (ties to the lower entry).
inline std::uint8_t dynamic_encode(float x) {
  const auto& map = dynamic_map();
  const auto it = std::lower_bound(map.begin(), map.end(), x);
  if (it == map.begin()) return 0;
  if (it == map.end()) return 255;
  const auto hi = static_cast<std::size_t>(it - map.begin());
  const std::size_t lo = hi - 1;
  return static_cast<std::uint8_t>(x - map[lo] <= map[hi] - x ? lo : hi);
}

}  // namespace detail

class Nf4Matrix;

// Quantizes W (any shape, flattened row-major) to NF4. Throws ShapeError for an empty W,
// ArgumentError for a non-positive block size and NumericalError for non-finite weights.
Nf4Matrix quantize_nf4(const Eigen::Ref<const Matrix>& w, const Nf4Options& options = {});

// An NF4-quantized matrix: packed 4-bit codes plus fp32 absmax values (or, with double
// quantization, uint8 absmax codes, fp32 second-level scales and one fp32 offset).
class Nf4Matrix {
 public:
  Nf4Matrix() = default;

  Index rows() const { return rows_; }
  Index cols() const { return cols_; }
  const Nf4Options& options() const { return options_; }
  Index block_size() const { return options_.block_size; }
  bool double_quant() const { return options_.double_quant; }
  // Number of absmax blocks, ceil(rows*cols / block_size).
  Index blocks() const { return blocks_; }

  // The 4-bit code of flat (row-major) element i.
  std::uint8_t code(Index i) const {
    const std::uint8_t byte = codes_[static_cast<std::size_t>(i / 2)];
    return static_cast<std::uint8_t>(i % 2 == 0 ? byte >> 4 : byte & 0x0F);
  }

  // The absmax that dequantization multiplies block b's code values by (after double
  // quantization, the reconstructed value).
  float absmax(Index b) const {
    const auto k = static_cast<std::size_t>(b);
    if (!options_.double_quant) return absmax_[k];
    const auto group = static_cast<std::size_t>(b / options_.double_quant_block_size);
    float a = detail::dynamic_map()[absmax_codes_[k]] * absmax_scales_[group];
    a += absmax_offset_;
    return a;
  }

  Matrix dequantize() const {
    Matrix w(rows_, cols_);
    float* out = w.data();
    const Index n = rows_ * cols_;
    for (Index b = 0; b < blocks_; ++b) {
      const float a = absmax(b);
      const Index end = std::min(n, (b + 1) * options_.block_size);
      for (Index i = b * options_.block_size; i < end; ++i) out[i] = nf4_code_book[code(i)] * a;
    }
    return w;
  }

  // Bytes really stored: packed codes, plus fp32 absmax per block, or with double quantization
  // one byte per block, one fp32 scale per double_quant_block_size blocks and the fp32 offset.
  // The code book and the dynamic map are constants of the format and are not counted.
  std::size_t bytes() const {
    std::size_t b = codes_.size();
    if (options_.double_quant) {
      b += absmax_codes_.size() + absmax_scales_.size() * sizeof(float) + sizeof(float);
    } else {
      b += absmax_.size() * sizeof(float);
    }
    return b;
  }
  double bits_per_weight() const {
    return 8.0 * static_cast<double>(bytes()) / static_cast<double>(rows_ * cols_);
  }

  // Raw storage, bitsandbytes' layout.
  const std::vector<std::uint8_t>& packed_codes() const { return codes_; }
  const std::vector<float>& absmax_fp32() const { return absmax_; }  // empty with double quant
  const std::vector<std::uint8_t>& absmax_codes() const { return absmax_codes_; }
  const std::vector<float>& absmax_scales() const { return absmax_scales_; }
  float absmax_offset() const { return absmax_offset_; }

 private:
  friend Nf4Matrix quantize_nf4(const Eigen::Ref<const Matrix>& w, const Nf4Options& options);

  Index rows_ = 0;
  Index cols_ = 0;
  Nf4Options options_{};
  Index blocks_ = 0;
  std::vector<std::uint8_t> codes_;
  std::vector<float> absmax_;
  std::vector<std::uint8_t> absmax_codes_;
  std::vector<float> absmax_scales_;
  float absmax_offset_ = 0.0f;
};

inline Nf4Matrix quantize_nf4(const Eigen::Ref<const Matrix>& w, const Nf4Options& options) {
  require_nonempty(w, "quantize_nf4: W");
  require<ArgumentError>(options.block_size > 0, "quantize_nf4: block_size ", options.block_size,
                         " must be positive");
  require<ArgumentError>(!options.double_quant || options.double_quant_block_size > 0,
                         "quantize_nf4: double_quant_block_size ", options.double_quant_block_size,
                         " must be positive");
  require_finite(w, "quantize_nf4: W");

  Matrix copy;  // only when W is a block with an outer stride: NF4 flattens W row-major
  if (w.outerStride() != w.cols()) copy = w;
  const float* x = copy.size() > 0 ? copy.data() : w.data();
  const Index n = w.size();
  const Index bs = options.block_size;

  Nf4Matrix q;
  q.rows_ = w.rows();
  q.cols_ = w.cols();
  q.options_ = options;
  q.blocks_ = (n + bs - 1) / bs;
  q.codes_.assign(static_cast<std::size_t>((n + 1) / 2),
                  static_cast<std::uint8_t>(nf4_zero_code << 4 | nf4_zero_code));
  std::vector<float> absmax(static_cast<std::size_t>(q.blocks_));

  for (Index b = 0; b < q.blocks_; ++b) {
    const Index begin = b * bs;
    const Index end = std::min(n, begin + bs);
    float amax = 0.0f;
    for (Index i = begin; i < end; ++i) amax = std::max(amax, std::fabs(x[i]));
    absmax[static_cast<std::size_t>(b)] = amax;
    const float inv = amax > 0.0f ? 1.0f / amax : 0.0f;
    for (Index i = begin; i < end; ++i) {
      const std::uint8_t c = amax > 0.0f ? detail::nf4_encode(x[i] * inv) : nf4_zero_code;
      std::uint8_t& byte = q.codes_[static_cast<std::size_t>(i / 2)];
      byte = i % 2 == 0 ? static_cast<std::uint8_t>((byte & 0x0F) | (c << 4))
                        : static_cast<std::uint8_t>((byte & 0xF0) | c);
    }
  }

  if (!options.double_quant) {
    q.absmax_ = std::move(absmax);
    return q;
  }
  double sum = 0.0;
  for (const float a : absmax) sum += a;
  const auto offset = static_cast<float>(sum / static_cast<double>(absmax.size()));
  q.absmax_offset_ = offset;
  for (float& a : absmax) a -= offset;
  const Index dbs = options.double_quant_block_size;
  const Index groups = (q.blocks_ + dbs - 1) / dbs;
  q.absmax_codes_.resize(absmax.size());
  q.absmax_scales_.resize(static_cast<std::size_t>(groups));
  for (Index g = 0; g < groups; ++g) {
    const Index begin = g * dbs;
    const Index end = std::min(q.blocks_, begin + dbs);
    float amax = 0.0f;
    for (Index i = begin; i < end; ++i) {
      amax = std::max(amax, std::fabs(absmax[static_cast<std::size_t>(i)]));
    }
    q.absmax_scales_[static_cast<std::size_t>(g)] = amax;
    const float inv = amax > 0.0f ? 1.0f / amax : 0.0f;
    for (Index i = begin; i < end; ++i) {
      const auto k = static_cast<std::size_t>(i);
      q.absmax_codes_[k] = detail::dynamic_encode(absmax[k] * inv);
    }
  }
  return q;
}

// quantize_nf4(w, options).dequantize(): the weights an NF4 layer really computes with.
inline Matrix fake_quantize_nf4(const Eigen::Ref<const Matrix>& w, const Nf4Options& options = {}) {
  return quantize_nf4(w, options).dequantize();
}

}  // namespace slim::quant

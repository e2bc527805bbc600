// The weight layout slim's quantized matmul kernels read: a QuantizedMatrix (4- or 8-bit codes,
// fp16 scales, optional zero-points) repacked once into blocks of 4 output rows whose bytes are
// interleaved so that one sequential pass over a block produces 4 outputs (see int8_matmul.hpp
// for the arithmetic and the reason for every byte's position).
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/half.hpp>
#include <slim/core/types.hpp>
#include <slim/quant/quantized_matrix.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <vector>

// The SIMD paths compiled in, from the target flags (-march=native, -mavx2 -mfma -mf16c, ...).
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__F16C__)
#define SLIM_KERNELS_AVX512 1
#if defined(__AVX512VNNI__)
#define SLIM_KERNELS_AVX512VNNI 1
#endif
#endif
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define SLIM_KERNELS_AVX2 1
#endif
#if defined(SLIM_KERNELS_AVX512) || defined(SLIM_KERNELS_AVX2)
#include <immintrin.h>
#endif

namespace slim::kernels {

namespace detail {

// std::allocator with 64-byte (cache line, zmm) alignment.
template <typename T>
struct CacheAlignedAllocator {
  using value_type = T;
  CacheAlignedAllocator() = default;
  template <typename U>
  CacheAlignedAllocator(const CacheAlignedAllocator<U>&) {}
  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{64}));
  }
  void deallocate(T* p, std::size_t) { ::operator delete (p, std::align_val_t{64}); }
  template <typename U>
  bool operator==(const CacheAlignedAllocator<U>&) const {
    return true;
  }
  template <typename U>
  bool operator!=(const CacheAlignedAllocator<U>&) const {
    return false;
  }
};

template <typename T>
using AlignedVector = std::vector<T, CacheAlignedAllocator<T>>;

inline Index round_up(Index n, Index m) { return (n + m - 1) / m * m; }

}  // namespace detail

// Rows per packed block, inputs per chunk (one 64-byte activation vector), inputs per sub-block.
inline constexpr Index kBlockRows = 4;
inline constexpr Index kChunk = 64;
inline constexpr Index kSubBlock = 32;

// Layout of one block of 4 rows (rows 4b .. 4b+3; rows past the end are zero with scale 0):
//   codes: for chunk c (inputs 64c .. 64c+63), for pair p (rows 2p, 2p+1), a 64-byte unit
//     (4-bit) or two 64-byte units lo, hi (8-bit). Within a unit, byte 8j + 4h + b holds row
//     2p+h's code of input 64c + 4j + b (lo) and, for 4-bit in the high nibble, or for 8-bit in
//     the second unit, of input 64c + 32 + 4j + b (hi). So 32-bit lane 2j+h of a unit is four
//     consecutive inputs of row 2p+h: even lanes belong to row 2p, odd lanes to row 2p+1.
//   scales: fp16, [group][row in block] (param_groups x 4).
//   zeros: (asymmetric only) uint8, [group][row in block].
// in_features is padded to a multiple of 64 with code 0; the padding's activations are 0, so it
// contributes nothing. With group size 32 a padded chunk's phantom group has scale 0.
struct PackedWeights {
  int bits = 4;
  bool symmetric = true;
  Index rows = 0;
  Index cols = 0;
  Index cols_padded = 0;
  Index row_blocks = 0;
  Index group_size = 0;         // effective group size (cols for per-channel and per-tensor)
  Index groups = 0;             // real groups per row
  Index groups_padded = 0;      // groups the kernels visit (covers cols_padded for group size 32)
  Index param_groups = 0;       // groups stored per row: groups_padded rounded up to 4 (scale 0)
  bool split = false;           // group size 32: the lo and hi halves of a chunk are two groups
  Index chunks_per_group = 0;   // when !split: chunks that make one group
  std::size_t unit_bytes = 64;  // bytes per (chunk, pair): 64 for 4-bit, 128 for 8-bit
  std::size_t scale_offset = 0;
  std::size_t zero_offset = 0;
  std::size_t block_stride = 0;
  detail::AlignedVector<std::uint8_t> data;

  Index chunks() const { return cols_padded / kChunk; }
  int zero_point() const { return 1 << (bits - 1); }  // symmetric schemes' implicit zero
  std::size_t bytes() const { return data.size(); }
  const std::uint8_t* block(Index b) const {
    return data.data() + static_cast<std::size_t>(b) * block_stride;
  }
  std::uint8_t* block(Index b) { return data.data() + static_cast<std::size_t>(b) * block_stride; }
  const std::uint16_t* block_scales(Index b) const {
    return reinterpret_cast<const std::uint16_t*>(block(b) + scale_offset);
  }
  const std::uint8_t* block_zeros(Index b) const {
    return symmetric ? nullptr : block(b) + zero_offset;
  }
  // Byte offset inside a block of row rr's (0..3) code for input k; for 4-bit, `high` tells
  // whether it is the high nibble.
  std::size_t code_offset(Index rr, Index k, bool& high) const {
    const Index c = k / kChunk, kk = k % kChunk, half = kk / kSubBlock;
    const Index j = (kk % kSubBlock) / 4, b = kk % 4, p = rr / 2, h = rr % 2;
    const auto pos = static_cast<std::size_t>(8 * j + 4 * h + b);
    const auto unit = static_cast<std::size_t>(c * 2 + p) * unit_bytes;
    high = bits == 4 && half == 1;
    return unit + (bits == 8 && half == 1 ? 64 : 0) + pos;
  }
  // The stored code of row r, input k (0 for padding).
  int code(Index r, Index k) const {
    bool high = false;
    const std::uint8_t byte = block(r / kBlockRows)[code_offset(r % kBlockRows, k, high)];
    return bits == 8 ? byte : (high ? byte >> 4 : byte & 0x0f);
  }
  float scale(Index r, Index g) const {
    return fp16_to_fp32(block_scales(r / kBlockRows)[g * kBlockRows + r % kBlockRows]);
  }
  int zero(Index r, Index g) const {
    return symmetric ? zero_point() : block_zeros(r / kBlockRows)[g * kBlockRows + r % kBlockRows];
  }
};

// True if the kernels can run `m` without repacking errors: 4- or 8-bit codes, and one group
// per row or a group size of 32 or a multiple of 64.
inline bool packable(const quant::QuantizedMatrix& m) {
  if (m.bits() != 4 && m.bits() != 8) return false;
  const Index gs = m.group_size();
  return m.groups_per_row() == 1 || gs == kSubBlock || gs % kChunk == 0;
}

// Repacks `m` into the kernels' layout. Throws ArgumentError for a format the kernels do not
// take (see packable()).
inline PackedWeights pack(const quant::QuantizedMatrix& m) {
  require<ArgumentError>(m.bits() == 4 || m.bits() == 8, "kernels::pack: bits ", m.bits(),
                         " is not supported; expected 4 or 8");
  require<ArgumentError>(packable(m), "kernels::pack: group_size ", m.group_size(),
                         " is not supported; expected 32, a multiple of 64, or one group per row");
  PackedWeights p;
  p.bits = m.bits();
  p.symmetric = m.scheme().symmetric;
  p.rows = m.rows();
  p.cols = m.cols();
  p.cols_padded = detail::round_up(m.cols(), kChunk);
  p.row_blocks = detail::round_up(m.rows(), kBlockRows) / kBlockRows;
  p.group_size = m.group_size();
  p.groups = m.groups_per_row();
  p.split = p.groups > 1 && p.group_size == kSubBlock;
  p.groups_padded = p.split ? p.cols_padded / kSubBlock : p.groups;
  p.chunks_per_group = p.split ? 0 : (p.groups == 1 ? p.chunks() : p.group_size / kChunk);
  p.unit_bytes = p.bits == 4 ? 64 : 128;
  const std::size_t code_bytes = static_cast<std::size_t>(p.chunks()) * 2 * p.unit_bytes;
  p.param_groups = detail::round_up(p.groups_padded, 4);
  const auto params = static_cast<std::size_t>(p.param_groups * kBlockRows);
  p.scale_offset = code_bytes;
  p.zero_offset = code_bytes + params * sizeof(std::uint16_t);
  const std::size_t end = p.zero_offset + (p.symmetric ? 0 : params);
  p.block_stride = static_cast<std::size_t>(detail::round_up(static_cast<Index>(end), 64));
  p.data.assign(p.block_stride * static_cast<std::size_t>(p.row_blocks), 0);

  std::vector<std::uint8_t> codes(static_cast<std::size_t>(m.cols()));
  for (Index r = 0; r < m.rows(); ++r) {
    const std::uint8_t* src = m.row_codes(r);
    if (p.bits == 8) {
      std::memcpy(codes.data(), src, codes.size());
    } else {
      for (Index k = 0; k < m.cols(); ++k)
        codes[static_cast<std::size_t>(k)] =
            static_cast<std::uint8_t>(k % 2 ? src[k / 2] >> 4 : src[k / 2] & 0x0f);
    }
    const Index rr = r % kBlockRows;
    std::uint8_t* block = p.block(r / kBlockRows);
    for (Index k = 0; k < m.cols(); ++k) {
      bool high = false;
      const std::size_t at = p.code_offset(rr, k, high);
      const std::uint8_t q = codes[static_cast<std::size_t>(k)];
      block[at] = static_cast<std::uint8_t>(block[at] | (high ? q << 4 : q));
    }
    auto* scales = reinterpret_cast<std::uint16_t*>(block + p.scale_offset);
    for (Index g = 0; g < p.groups; ++g) {
      const quant::GroupParams gp = m.params(r, g);
      scales[g * kBlockRows + rr] = fp32_to_fp16(gp.scale);
      if (!p.symmetric)
        block[p.zero_offset + static_cast<std::size_t>(g * kBlockRows + rr)] =
            static_cast<std::uint8_t>(gp.zero);
    }
  }
  return p;
}

// Writes the dequantized weights of block b (4 rows x cols_padded, row-major) to out: row
// 4b + rr's weight k at out[rr * cols_padded + k]; padding rows and columns are 0.
inline void dequantize_block(const PackedWeights& p, Index b, float* out) {
  const std::uint8_t* block = p.block(b);
  for (Index c = 0; c < p.chunks(); ++c) {
    for (Index half = 0; half < 2; ++half) {
      const Index k0 = c * kChunk + half * kSubBlock;
      const Index g = p.split ? k0 / kSubBlock : k0 / (p.chunks_per_group * kChunk);
      for (Index rr = 0; rr < kBlockRows; ++rr) {
        const Index r = b * kBlockRows + rr;
        const float s = fp16_to_fp32(p.block_scales(b)[g * kBlockRows + rr]);
        const int z = p.symmetric ? p.zero_point() : p.block_zeros(b)[g * kBlockRows + rr];
        const std::uint8_t* unit = block + static_cast<std::size_t>(c * 2 + rr / 2) * p.unit_bytes +
                                   (p.bits == 8 ? 64 * half : 0) + 4 * (rr % 2);
        float* dst = out + rr * p.cols_padded + k0;
        for (Index j = 0; j < 8; ++j)
          for (Index i = 0; i < 4; ++i) {
            const int byte = unit[8 * j + i];
            const int q = p.bits == 8 ? byte : (half ? byte >> 4 : byte & 0x0f);
            dst[4 * j + i] =
                r < p.rows && k0 + 4 * j + i < p.cols ? s * static_cast<float>(q - z) : 0.0f;
          }
      }
    }
  }
}

// The whole packed matrix dequantized (rows x cols): equals QuantizedMatrix::dequantize().
inline Matrix dequantize(const PackedWeights& p) {
  Matrix w(p.rows, p.cols);
  std::vector<float> tile(static_cast<std::size_t>(kBlockRows * p.cols_padded));
  for (Index b = 0; b < p.row_blocks; ++b) {
    dequantize_block(p, b, tile.data());
    for (Index rr = 0; rr < kBlockRows && b * kBlockRows + rr < p.rows; ++rr)
      for (Index k = 0; k < p.cols; ++k) w(b * kBlockRows + rr, k) = tile[rr * p.cols_padded + k];
  }
  return w;
}

}  // namespace slim::kernels

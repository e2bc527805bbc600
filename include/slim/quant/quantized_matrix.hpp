// QuantizedMatrix: the packed result of uniform quantization. Codes are packed densely per row
// (see detail/bitpack.hpp; 4-bit two per byte, 8-bit one per byte, 2/3-bit with no wasted bits),
// scales are fp16, one per group (per row for per-channel, one for per-tensor), and asymmetric
// zero-points are b-bit integers packed like the codes. bytes() is what is really stored.
// Dequantization of code q in group g of row r: scale(r, g) * (q - zero(r, g)).
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/half.hpp>
#include <slim/core/types.hpp>
#include <slim/quant/detail/bitpack.hpp>
#include <slim/quant/scheme.hpp>

#include <cstdint>
#include <vector>

namespace slim::quant {

class QuantizedMatrix {
 public:
  QuantizedMatrix() = default;

  // An all-zero-code matrix of the given shape under `scheme` (validated).
  QuantizedMatrix(Index rows, Index cols, const Scheme& scheme)
      : rows_(rows), cols_(cols), scheme_(scheme) {
    require<ShapeError>(rows > 0 && cols > 0, "QuantizedMatrix: shape ", rows, " x ", cols,
                        " must be positive");
    validate(scheme, cols, "QuantizedMatrix");
    group_size_ = effective_group_size(scheme, cols);
    groups_per_row_ = cols / group_size_;
    row_stride_ = detail::packed_bytes(static_cast<std::size_t>(cols), scheme.bits);
    codes_.assign(row_stride_ * static_cast<std::size_t>(rows), 0);
    const std::size_t n_params = static_cast<std::size_t>(param_rows() * groups_per_row_);
    scales_.assign(n_params, fp32_to_fp16(1.0f));
    if (!scheme.symmetric) zeros_.assign(detail::packed_bytes(n_params, scheme.bits), 0);
  }

  Index rows() const { return rows_; }
  Index cols() const { return cols_; }
  const Scheme& scheme() const { return scheme_; }
  int bits() const { return scheme_.bits; }
  Index group_size() const { return group_size_; }
  Index groups_per_row() const { return groups_per_row_; }

  std::uint32_t code(Index r, Index c) const {
    return detail::get_bits(row_codes(r), static_cast<std::size_t>(c), scheme_.bits);
  }
  void set_code(Index r, Index c, std::uint32_t q) {
    detail::set_bits(row_codes(r), static_cast<std::size_t>(c), scheme_.bits, q);
  }

  GroupParams params(Index r, Index g) const {
    const std::size_t k = param_index(r, g);
    GroupParams p;
    p.scale = fp16_to_fp32(scales_[k]);
    p.zero = scheme_.symmetric ? (1 << (scheme_.bits - 1))
                               : static_cast<int>(detail::get_bits(zeros_.data(), k, scheme_.bits));
    return p;
  }
  // Stores the parameters of group g of row r (for per-tensor, any r writes the single group).
  // The scale is stored in fp16; pass an fp16-exact scale (fit_group returns one).
  void set_params(Index r, Index g, GroupParams p) {
    const std::size_t k = param_index(r, g);
    scales_[k] = fp32_to_fp16(p.scale);
    if (!scheme_.symmetric) {
      detail::set_bits(zeros_.data(), k, scheme_.bits, static_cast<std::uint32_t>(p.zero));
    }
  }

  float dequantized(Index r, Index c) const {
    return dequantize_code(static_cast<int>(code(r, c)), params(r, c / group_size_));
  }

  // Writes row r's cols() dequantized weights to out.
  void dequantize_row(Index r, float* out) const {
    const std::uint8_t* row = row_codes(r);
    for (Index g = 0; g < groups_per_row_; ++g) {
      const GroupParams p = params(r, g);
      const Index begin = g * group_size_;
      for (Index c = begin; c < begin + group_size_; ++c) {
        const auto q =
            static_cast<int>(detail::get_bits(row, static_cast<std::size_t>(c), scheme_.bits));
        out[c] = dequantize_code(q, p);
      }
    }
  }

  Matrix dequantize() const {
    Matrix w(rows_, cols_);
    for (Index r = 0; r < rows_; ++r) dequantize_row(r, w.row(r).data());
    return w;
  }

  // Bytes of codes, fp16 scales and packed zero-points: what the matrix really occupies.
  std::size_t bytes() const {
    return codes_.size() + scales_.size() * sizeof(std::uint16_t) + zeros_.size();
  }
  double bits_per_weight() const {
    return 8.0 * static_cast<double>(bytes()) / static_cast<double>(rows_ * cols_);
  }

  // Raw storage, for kernels that repack and for serialisation.
  std::size_t row_stride_bytes() const { return row_stride_; }
  const std::uint8_t* row_codes(Index r) const {
    return codes_.data() + static_cast<std::size_t>(r) * row_stride_;
  }
  std::uint8_t* row_codes(Index r) {
    return codes_.data() + static_cast<std::size_t>(r) * row_stride_;
  }
  const std::vector<std::uint8_t>& codes() const { return codes_; }
  const std::vector<std::uint16_t>& scales_fp16() const { return scales_; }
  const std::vector<std::uint8_t>& zeros_packed() const { return zeros_; }

 private:
  Index param_rows() const { return scheme_.granularity == Granularity::per_tensor ? 1 : rows_; }
  std::size_t param_index(Index r, Index g) const {
    const Index row = scheme_.granularity == Granularity::per_tensor ? 0 : r;
    return static_cast<std::size_t>(row * groups_per_row_ + g);
  }

  Index rows_ = 0;
  Index cols_ = 0;
  Scheme scheme_{};
  Index group_size_ = 0;
  Index groups_per_row_ = 0;
  std::size_t row_stride_ = 0;
  std::vector<std::uint8_t> codes_;
  std::vector<std::uint16_t> scales_;
  std::vector<std::uint8_t> zeros_;
};

}  // namespace slim::quant

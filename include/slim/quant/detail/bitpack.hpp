// Dense little-endian bit packing of b-bit codes (b in 1..8): code i of a row occupies bits
// [i*b, i*b + b) of the row's byte stream, least significant bit first. For b = 4 this puts
// code 2k in the low nibble and code 2k+1 in the high nibble of byte k (the GPTQ / ggml order);
// b = 8 is one code per byte; b = 2 and b = 3 pack with no wasted bits inside a row.
#pragma once

#include <cstddef>
#include <cstdint>

namespace slim::quant::detail {

inline std::size_t packed_bytes(std::size_t count, int bits) {
  return (count * static_cast<std::size_t>(bits) + 7) / 8;
}

inline std::uint32_t get_bits(const std::uint8_t* stream, std::size_t index, int bits) {
  const std::size_t bit = index * static_cast<std::size_t>(bits);
  const std::size_t byte = bit / 8;
  const unsigned shift = static_cast<unsigned>(bit % 8);
  std::uint32_t word = stream[byte];
  if (shift + static_cast<unsigned>(bits) > 8)
    word |= static_cast<std::uint32_t>(stream[byte + 1]) << 8;
  return (word >> shift) & ((1u << bits) - 1u);
}

inline void set_bits(std::uint8_t* stream, std::size_t index, int bits, std::uint32_t value) {
  const std::size_t bit = index * static_cast<std::size_t>(bits);
  const std::size_t byte = bit / 8;
  const unsigned shift = static_cast<unsigned>(bit % 8);
  const std::uint32_t mask = ((1u << bits) - 1u) << shift;
  const std::uint32_t v = (value << shift) & mask;
  stream[byte] = static_cast<std::uint8_t>((stream[byte] & ~mask) | v);
  if (shift + static_cast<unsigned>(bits) > 8) {
    stream[byte + 1] = static_cast<std::uint8_t>((stream[byte + 1] & ~(mask >> 8)) | (v >> 8));
  }
}

}  // namespace slim::quant::detail

namespace slim::quant::detail {

// Packs `count` codes (each < 2^bits) into `stream`, which must hold packed_bytes(count, bits)
// bytes; faster than set_bits one at a time.
inline void pack_codes(const std::uint8_t* codes, std::size_t count, int bits,
                       std::uint8_t* stream) {
  if (bits == 8) {
    for (std::size_t i = 0; i < count; ++i) stream[i] = codes[i];
    return;
  }
  if (bits == 4) {
    const std::size_t pairs = count / 2;
    for (std::size_t i = 0; i < pairs; ++i) {
      stream[i] = static_cast<std::uint8_t>(codes[2 * i] | (codes[2 * i + 1] << 4));
    }
    if (count % 2) stream[pairs] = codes[count - 1];
    return;
  }
  std::uint32_t acc = 0;
  unsigned filled = 0;
  std::size_t out = 0;
  for (std::size_t i = 0; i < count; ++i) {
    acc |= static_cast<std::uint32_t>(codes[i]) << filled;
    filled += static_cast<unsigned>(bits);
    while (filled >= 8) {
      stream[out++] = static_cast<std::uint8_t>(acc & 0xffu);
      acc >>= 8;
      filled -= 8;
    }
  }
  if (filled > 0) stream[out] = static_cast<std::uint8_t>(acc & 0xffu);
}

}  // namespace slim::quant::detail

namespace slim::quant::detail {

// Inverse of pack_codes: unpacks `count` b-bit codes from `stream` into one byte each.
inline void unpack_codes(const std::uint8_t* stream, std::size_t count, int bits,
                         std::uint8_t* codes) {
  if (bits == 8) {
    for (std::size_t i = 0; i < count; ++i) codes[i] = stream[i];
    return;
  }
  if (bits == 4) {
    const std::size_t pairs = count / 2;
    for (std::size_t i = 0; i < pairs; ++i) {
      codes[2 * i] = stream[i] & 0x0fu;
      codes[2 * i + 1] = static_cast<std::uint8_t>(stream[i] >> 4);
    }
    if (count % 2) codes[count - 1] = stream[pairs] & 0x0fu;
    return;
  }
  for (std::size_t i = 0; i < count; ++i)
    codes[i] = static_cast<std::uint8_t>(get_bits(stream, i, bits));
}

}  // namespace slim::quant::detail

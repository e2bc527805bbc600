// slim's typed errors. Bad input from a caller throws a subclass of slim::Error whose message
// names the function, the argument, the value and what was expected; internal invariants use
// assert. See DESIGN.md, "Errors and bad input".
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace slim {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Shapes that do not fit together (W's columns vs X's width, H's size vs W).
class ShapeError : public Error {
 public:
  using Error::Error;
};

// An argument outside its documented range (bits, group size, sparsity, rank, temperature).
class ArgumentError : public Error {
 public:
  using Error::Error;
};

// Non-finite input, or a factorisation that fails even after the documented dampening.
class NumericalError : public Error {
 public:
  using Error::Error;
};

// A file whose contents are malformed, truncated or inconsistent with its header.
class FormatError : public Error {
 public:
  using Error::Error;
};

// The file system refused: a file that cannot be opened, read, written or renamed.
class IoError : public Error {
 public:
  using Error::Error;
};

namespace detail {

template <typename... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}

}  // namespace detail

// Throws E with the parts streamed together when `condition` is false:
//   slim::require<ArgumentError>(bits >= 2, "quantize: bits ", bits, " is outside 2..8");
template <typename E, typename... Parts>
void require(bool condition, Parts&&... parts) {
  if (!condition) throw E(detail::concat(std::forward<Parts>(parts)...));
}

}  // namespace slim

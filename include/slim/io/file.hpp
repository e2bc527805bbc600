// File primitives shared by slim's checkpoint readers and writers: whole-file reads that throw
// IoError, atomic writes (a temporary file in the target's folder, flushed, then renamed over the
// target, so a failure never leaves a half-written file where a good one was), and bounds-checked
// little-endian decoding of an in-memory byte span (FormatError, never an out-of-bounds read).
#pragma once

#include <slim/core/error.hpp>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "slim/io reads and writes little-endian files by copying memory: a little-endian host only"
#endif

namespace slim::io {

namespace detail {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

// a * b into `out`; false if the product does not fit in 64 bits.
inline bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  if (a != 0 && b > UINT64_MAX / a) return false;
  out = a * b;
  return true;
}

inline bool checked_add(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  if (b > UINT64_MAX - a) return false;
  out = a + b;
  return true;
}

}  // namespace detail

// Reads the whole file at `path`. Throws IoError if it cannot be opened or read.
inline std::vector<std::uint8_t> read_file(const std::string& path) {
  detail::FilePtr file(std::fopen(path.c_str(), "rb"));
  require<IoError>(file != nullptr, "read_file: cannot open '", path, "': ", std::strerror(errno));
  std::vector<std::uint8_t> bytes;
  constexpr std::size_t chunk = std::size_t{1} << 20;
  for (;;) {
    const std::size_t old_size = bytes.size();
    bytes.resize(old_size + chunk);
    const std::size_t got = std::fread(bytes.data() + old_size, 1, chunk, file.get());
    bytes.resize(old_size + got);
    if (got < chunk) break;
  }
  require<IoError>(!std::ferror(file.get()), "read_file: reading '", path,
                   "' failed: ", std::strerror(errno));
  return bytes;
}

// Appends bytes to an in-memory buffer or to an open file; a short write throws IoError.
class ByteWriter {
 public:
  explicit ByteWriter(std::vector<std::uint8_t>& buffer) : buffer_(&buffer) {}
  ByteWriter(std::FILE* file, std::string path) : file_(file), path_(std::move(path)) {}

  void write(const void* data, std::size_t n) {
    if (n == 0) return;
    if (buffer_ != nullptr) {
      const auto* p = static_cast<const std::uint8_t*>(data);
      buffer_->insert(buffer_->end(), p, p + n);
    } else {
      require<IoError>(std::fwrite(data, 1, n, file_) == n, "write: writing ", n, " bytes to '",
                       path_, "' failed: ", std::strerror(errno));
    }
    written_ += n;
  }

  // Writes a trivially copyable value in the host's (little-endian) byte order.
  template <typename T>
  void write_value(const T& value) {
    static_assert(std::is_trivially_copyable_v<T>, "write_value needs a trivially copyable type");
    write(&value, sizeof value);
  }

  std::size_t written() const { return written_; }

 private:
  std::vector<std::uint8_t>* buffer_ = nullptr;
  std::FILE* file_ = nullptr;
  std::string path_;
  std::size_t written_ = 0;
};

// Writes `path` atomically: `fill` writes the contents to `path + ".tmp-XXXXXXXX"` in the same
// folder, which is flushed (and fsync'ed on POSIX) and renamed over `path`. If `fill` throws or
// any step fails, the temporary file is removed, `path` is left as it was and the exception
// propagates (IoError for file-system failures).
inline void write_file_atomic(const std::string& path,
                              const std::function<void(ByteWriter&)>& fill) {
  std::random_device entropy;
  std::string temp;
  detail::FilePtr file;
  for (int attempt = 0; attempt < 16 && file == nullptr; ++attempt) {
    char suffix[16];
    std::snprintf(suffix, sizeof suffix, ".tmp-%08x", static_cast<unsigned>(entropy()));
    temp = path + suffix;
    file.reset(std::fopen(temp.c_str(), "wbx"));  // "x": fail rather than reuse an existing file
    if (file == nullptr && errno != EEXIST) break;
  }
  require<IoError>(file != nullptr, "write_file_atomic: cannot create the temporary file '", temp,
                   "' for '", path, "': ", std::strerror(errno));
  try {
    ByteWriter writer(file.get(), temp);
    fill(writer);
    require<IoError>(std::fflush(file.get()) == 0, "write_file_atomic: flushing '", temp,
                     "' failed: ", std::strerror(errno));
#if defined(__unix__) || defined(__APPLE__)
    require<IoError>(::fsync(::fileno(file.get())) == 0, "write_file_atomic: fsync of '", temp,
                     "' failed: ", std::strerror(errno));
#endif
    const int closed = std::fclose(file.release());
    require<IoError>(closed == 0, "write_file_atomic: closing '", temp,
                     "' failed: ", std::strerror(errno));
    require<IoError>(std::rename(temp.c_str(), path.c_str()) == 0, "write_file_atomic: renaming '",
                     temp, "' to '", path, "' failed: ", std::strerror(errno));
  } catch (...) {
    file.reset();
    std::remove(temp.c_str());
    throw;
  }
}

// Bounds-checked reads from a byte span. Every read that would pass the end throws FormatError
// naming `context` (the format), the field being read, the offset and the bytes that remain.
class ByteReader {
 public:
  ByteReader(const std::uint8_t* data, std::size_t size, std::string context)
      : data_(data), size_(size), context_(std::move(context)) {}

  std::size_t position() const { return position_; }
  std::size_t remaining() const { return size_ - position_; }

  // Returns a pointer to the next n bytes and advances past them.
  const std::uint8_t* take(std::size_t n, const std::string& what) {
    require<FormatError>(n <= remaining(), context_, ": ", what, " needs ", n, " bytes at offset ",
                         position_, " but only ", remaining(), " remain");
    const std::uint8_t* p = data_ + position_;
    position_ += n;
    return p;
  }

  template <typename T>
  T read(const std::string& what) {
    static_assert(std::is_trivially_copyable_v<T>, "read needs a trivially copyable type");
    T value;
    std::memcpy(&value, take(sizeof value, what), sizeof value);
    return value;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t position_ = 0;
  std::string context_;
};

}  // namespace slim::io

// Measures a roofline Machine (roofline.hpp) on the running computer: DRAM read bandwidth from a
// single-threaded streaming read over a buffer far larger than the last-level cache (128 MiB),
// cache bandwidth from the same loop over a quarter of the cache, and the fp32 peak from an
// Eigen GEMM (384^3, on Eigen's threads). Best of 3 timings each, the GEMM's best of as many as
// fit in 0.1 s (which finds the quiet moments of a busy machine); 0.3 to 1.5 s in all.
// The int8 peak is not measured but assumed: int8_to_fp32_ratio (default 4, four int8 lanes per
// fp32 lane of the same SIMD width) times the fp32 peak.
//
// The cache size is the OS's last-level figure (glibc sysconf), capped at buffer_bytes / 4 so that
// the streaming buffer always exceeds it 4-fold: virtual machines may report a whole package's L3
// (508 MiB on an AMD EPYC guest) although one core only reaches its own slice. The read loop is
// single-threaded: one core's bandwidth, what a single-stream decode sees, below the socket's.
// The buffer is 128 MiB rather than 256 MiB because first-touching it dominates the run time
// (up to 1 s per 128 MiB on a loaded Firecracker guest, whose host backs pages lazily).
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/types.hpp>
#include <slim/cost/roofline.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace slim::cost {

struct MeasureOptions {
  std::size_t buffer_bytes = std::size_t{128} << 20;  // streaming-read buffer: >> last-level cache
  Index gemm_size = 384;                              // n of the n x n x n fp32 GEMM
  int repeats = 3;                                    // the best of `repeats` timings is kept
  double int8_to_fp32_ratio = 4.0;                    // assumed peak_int8_ops / peak_fp32_flops
  std::size_t cache_bytes = 0;  // last-level cache size; 0 = ask the OS (see above; fallback 8 MiB)
  double gemm_seconds = 0.1;    // the GEMM repeats (at least `repeats` times) for this long
};

namespace detail {

// Size of the last-level cache as the OS reports it (glibc sysconf), or 0 if unknown.
inline std::size_t os_last_level_cache_bytes() {
  long bytes = -1;
#if defined(_SC_LEVEL3_CACHE_SIZE)
  bytes = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
#if defined(_SC_LEVEL2_CACHE_SIZE)
  if (bytes <= 0) bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
  return bytes > 0 ? static_cast<std::size_t>(bytes) : 0;
}

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Sums n words, so that no read can be skipped.
inline std::uint64_t streaming_read(const std::uint64_t* data, std::size_t n) {
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < n; ++i) sum += data[i];
  return sum;
}

// `words` 64-bit words backed by real memory. On Linux an mmap(MAP_POPULATE) mapping, whose
// pages the kernel maps in one batch (about 4x faster than faulting them in one by one while
// filling a vector, which matters on VMs with costly faults); elsewhere a filled vector.
class ReadBuffer {
 public:
  explicit ReadBuffer(std::size_t words) : words_(words) {
#if defined(__linux__) && defined(MAP_POPULATE)
    void* p = mmap(nullptr, bytes(), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p != MAP_FAILED) {
      mapped_ = static_cast<std::uint64_t*>(p);
      return;
    }
#endif
    fallback_.assign(words, 1);
  }
  ~ReadBuffer() {
#if defined(__linux__)
    if (mapped_ != nullptr) munmap(mapped_, bytes());
#endif
  }
  ReadBuffer(const ReadBuffer&) = delete;
  ReadBuffer& operator=(const ReadBuffer&) = delete;

  const std::uint64_t* data() const { return mapped_ != nullptr ? mapped_ : fallback_.data(); }
  std::size_t bytes() const { return words_ * sizeof(std::uint64_t); }

 private:
  std::size_t words_ = 0;
  std::uint64_t* mapped_ = nullptr;
  std::vector<std::uint64_t> fallback_;
};

// Best read bandwidth (bytes/s) over the first `words` words of `buffer`, each timing reading
// them `passes` times. An untimed first pass maps the pages and primes the caches.
inline double read_bandwidth(const ReadBuffer& buffer, std::size_t words, std::size_t passes,
                             int repeats) {
  double best = std::numeric_limits<double>::infinity();
  volatile std::uint64_t keep = 0;
  keep = keep + streaming_read(buffer.data(), words);
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    std::uint64_t sum = 0;
    for (std::size_t p = 0; p < passes; ++p) sum += streaming_read(buffer.data(), words);
    best = std::min(best, seconds_since(start));
    keep = keep + sum;
  }
  const double bytes = static_cast<double>(words * passes * sizeof(std::uint64_t));
  return bytes / std::max(best, 1e-9);
}

}  // namespace detail

// Measures the running machine (see the header comment). Throws ArgumentError for a buffer under
// 4 KiB, a GEMM size under 8, repeats < 1, a non-positive int8 ratio or gemm_seconds outside
// [0, 10]. Not for unit tests except
// with tiny sizes: at the defaults it fills 128 MiB and runs for 0.2 to 2 seconds.
inline Machine measure_machine(const MeasureOptions& options = {}) {
  constexpr const char* fn = "cost::measure_machine";
  require<ArgumentError>(options.buffer_bytes >= 4096, fn, ": buffer_bytes ", options.buffer_bytes,
                         " is below 4096");
  require<ArgumentError>(options.gemm_size >= 8, fn, ": gemm_size ", options.gemm_size,
                         " is below 8");
  require<ArgumentError>(options.repeats >= 1, fn, ": repeats ", options.repeats,
                         " must be at least 1");
  require<ArgumentError>(options.int8_to_fp32_ratio > 0.0, fn, ": int8_to_fp32_ratio ",
                         options.int8_to_fp32_ratio, " must be positive");
  require<ArgumentError>(options.gemm_seconds >= 0.0 && options.gemm_seconds <= 10.0, fn,
                         ": gemm_seconds ", options.gemm_seconds, " is outside [0, 10]");

  Machine machine;
  machine.threads = Eigen::nbThreads();
  std::size_t cache = options.cache_bytes;
  if (cache == 0) {
    cache = std::min(detail::os_last_level_cache_bytes(), options.buffer_bytes / 4);
    if (cache == 0) cache = std::min(std::size_t{8} << 20, options.buffer_bytes / 4);
  }
  machine.cache_bytes = static_cast<double>(cache);

  const std::size_t words = options.buffer_bytes / sizeof(std::uint64_t);
  const detail::ReadBuffer buffer(words);
  machine.memory_bandwidth = detail::read_bandwidth(buffer, words, 1, options.repeats);
  // The cache loop reads as many bytes in total as one pass over the big buffer.
  const std::size_t cache_words =
      std::max<std::size_t>(512, std::min(words, cache / 4 / sizeof(std::uint64_t)));
  const std::size_t passes = std::max<std::size_t>(1, words / cache_words);
  machine.cache_bandwidth = detail::read_bandwidth(buffer, cache_words, passes, options.repeats);

  const Index n = options.gemm_size;
  const Eigen::MatrixXf a = Eigen::MatrixXf::Constant(n, n, 0.5f);
  const Eigen::MatrixXf b = Eigen::MatrixXf::Constant(n, n, 0.25f);
  Eigen::MatrixXf c(n, n);
  c.noalias() = a * b;  // warm-up: packing buffers allocated, threads started
  double best = std::numeric_limits<double>::infinity();
  const auto gemm_start = std::chrono::steady_clock::now();
  for (int r = 0; r < options.repeats || detail::seconds_since(gemm_start) < options.gemm_seconds;
       ++r) {
    const auto start = std::chrono::steady_clock::now();
    c.noalias() = a * b;
    best = std::min(best, detail::seconds_since(start));
  }
  volatile float keep = c(n - 1, n - 1);
  (void)keep;
  const double flops =
      2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
  machine.peak_fp32_flops = flops / std::max(best, 1e-9);
  machine.peak_int8_ops = options.int8_to_fp32_ratio * machine.peak_fp32_flops;
  return machine;
}

}  // namespace slim::cost

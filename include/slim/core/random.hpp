// Seeded, platform-independent random numbers: xoshiro256** (Blackman & Vigna) seeded through
// splitmix64, Gaussian draws by the Box-Muller transform. The same seed gives bit-identical
// matrices with any compiler and standard library (std::normal_distribution does not promise that).
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/types.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace slim::random {

class Generator {
 public:
  explicit Generator(std::uint64_t seed) {
    std::uint64_t x = seed;
    for (auto& s : state_) s = splitmix64(x);
  }

  // Uniform 64-bit integer.
  std::uint64_t next() {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  // Uniform double in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  // Uniform integer in [0, n), n > 0 (Lemire's multiply-shift; bias below 2^-32 for n < 2^32).
  std::uint64_t below(std::uint64_t n) {
    return static_cast<std::uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
  }

  // Standard normal draw (Box-Muller; the second value of each pair is kept for the next call).
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1));
    const double angle = 6.283185307179586476925 * u2;
    spare_ = radius * std::sin(angle);
    has_spare_ = true;
    return radius * std::cos(angle);
  }

  // Student-t draw with integer `dof` degrees of freedom: Z / sqrt(chi2_dof / dof).
  double student_t(int dof) {
    const double z = normal();
    double chi2 = 0.0;
    for (int k = 0; k < dof; ++k) {
      const double g = normal();
      chi2 += g * g;
    }
    return z / std::sqrt(chi2 / dof);
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static std::uint64_t splitmix64(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }

  std::uint64_t state_[4];
  double spare_ = 0.0;
  bool has_spare_ = false;
};

// rows x cols matrix of N(0, stddev^2) entries.
inline Matrix gaussian(Index rows, Index cols, std::uint64_t seed, double stddev = 1.0) {
  require<ArgumentError>(rows >= 0 && cols >= 0, "random::gaussian: shape ", rows, " x ", cols,
                         " is negative");
  Generator g(seed);
  Matrix m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(stddev * g.normal());
  return m;
}

// rows x cols matrix of Student-t entries with `dof` degrees of freedom (heavy tails for dof 3..5).
inline Matrix student_t(Index rows, Index cols, int dof, std::uint64_t seed) {
  require<ArgumentError>(dof >= 1, "random::student_t: dof ", dof, " must be at least 1");
  Generator g(seed);
  Matrix m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(g.student_t(dof));
  return m;
}

// Options of the activation generator below.
struct ActivationOptions {
  Index rank = 16;              // rank of the shared low-rank component
  double noise = 0.1;           // stddev of the isotropic part, relative to the low-rank part
  Index outlier_channels = 4;   // channels whose magnitude is multiplied by outlier_scale
  double outlier_scale = 20.0;  // how much larger the outlier channels are
};

// tokens x width activations with the structure transformer activations have: strongly
// correlated channels (a rank-`rank` component plus small isotropic noise), per-channel scales
// that vary over an order of magnitude, and a few outlier channels tens of times larger (the
// channels SmoothQuant and AWQ are designed around). Seeded and deterministic.
inline Matrix correlated_activations(Index tokens, Index width, std::uint64_t seed,
                                     const ActivationOptions& options = {}) {
  require<ArgumentError>(tokens > 0 && width > 0, "random::correlated_activations: shape ", tokens,
                         " x ", width, " must be positive");
  require<ArgumentError>(options.rank > 0, "random::correlated_activations: rank ", options.rank,
                         " must be positive");
  Generator g(seed);
  Matrix latent(tokens, options.rank);
  for (Index i = 0; i < latent.size(); ++i) latent.data()[i] = static_cast<float>(g.normal());
  Matrix mixing(options.rank, width);
  for (Index i = 0; i < mixing.size(); ++i) {
    mixing.data()[i] = static_cast<float>(g.normal() / std::sqrt(double(options.rank)));
  }
  Matrix x = latent * mixing;
  for (Index i = 0; i < x.size(); ++i)
    x.data()[i] += static_cast<float>(options.noise * g.normal());
  for (Index c = 0; c < width; ++c) {
    const double scale = std::exp(g.normal() * 0.6);  // log-normal channel scales
    x.col(c) *= static_cast<float>(scale);
  }
  const Index outliers = std::min(options.outlier_channels, width);
  for (Index k = 0; k < outliers; ++k) {
    const Index c = static_cast<Index>(g.below(static_cast<std::uint64_t>(width)));
    x.col(c) *= static_cast<float>(options.outlier_scale);
  }
  return x;
}

}  // namespace slim::random

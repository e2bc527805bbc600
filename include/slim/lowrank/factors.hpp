// Low-rank factors of a weight W (out x in) ~ U (out x r) * V (r x in). Factorizers split the
// singular values evenly, U = U_r sqrt(S_r) and V = sqrt(S_r) V_r^T (as SVD-LLM does), so that
// both factors have the same dynamic range when they are quantized afterwards.
#pragma once

#include <slim/core/error.hpp>
#include <slim/core/types.hpp>

#include <algorithm>

namespace slim::lowrank {

struct Factors {
  Matrix U;  // out x r
  Matrix V;  // r x in

  Index rank() const { return V.rows(); }
  Index out_features() const { return U.rows(); }
  Index in_features() const { return V.cols(); }
  // Parameters of the factors: r * (out + in).
  Index params() const { return U.size() + V.size(); }
  Matrix reconstruct() const { return U * V; }
};

// The factorization of a layer with the full spectrum it was truncated from, so that callers
// can see what was discarded: singular_values are all min(out, in) of them (descending) for
// exact SVDs, and the rank + oversampling computed ones for randomized SVD.
struct Factorization {
  Factors factors;
  Vector singular_values;
};

// Largest rank whose factors cost no more than `budget` times the dense parameters:
// r (out + in) <= budget * out * in. The same bound holds for FLOPs, since Y = (X V^T) U^T takes
// T r (in + out) MACs against T out in. Throws ArgumentError for a budget outside (0, 1] or one
// too small for rank 1.
inline Index rank_for_budget(Index out, Index in, double budget) {
  require<ArgumentError>(out > 0 && in > 0, "lowrank::rank_for_budget: shape ", out, " x ", in,
                         " must be positive");
  require<ArgumentError>(budget > 0.0 && budget <= 1.0, "lowrank::rank_for_budget: budget ", budget,
                         " is outside (0, 1]");
  const double dense = static_cast<double>(out) * static_cast<double>(in);
  Index r = static_cast<Index>(budget * dense / static_cast<double>(out + in));
  r = std::min(r, std::min(out, in));
  require<ArgumentError>(r >= 1, "lowrank::rank_for_budget: budget ", budget,
                         " is below one rank (", out + in, " of ", dense, " parameters)");
  return r;
}

// Smallest rank whose singular values keep at least `energy` of sum sigma^2 (energy in (0, 1]).
inline Index rank_for_energy(const Vector& singular_values, double energy) {
  require<ArgumentError>(energy > 0.0 && energy <= 1.0, "lowrank::rank_for_energy: energy ", energy,
                         " is outside (0, 1]");
  require<ArgumentError>(singular_values.size() > 0,
                         "lowrank::rank_for_energy: singular_values is empty");
  const double total = singular_values.cast<double>().squaredNorm();
  if (total == 0.0) return 1;
  double kept = 0.0;
  for (Index r = 0; r < singular_values.size(); ++r) {
    kept += static_cast<double>(singular_values(r)) * singular_values(r);
    if (kept >= energy * total * (1.0 - 1e-12)) return r + 1;
  }
  return singular_values.size();
}

}  // namespace slim::lowrank

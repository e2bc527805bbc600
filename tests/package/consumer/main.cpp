// A user's program built against the installed slim: quantize a layer and check the error.
// It includes the two headers it uses, not the umbrella: this test checks the installed package
// (headers, target, dependencies), and the umbrella alone takes about two minutes to compile.
#include <slim/core.hpp>
#include <slim/quant.hpp>

#include <cstdio>

int main() {
  const slim::Matrix w = slim::random::gaussian(64, 128, /*seed=*/1);
  const auto q = slim::quant::quantize(w, slim::quant::Scheme{.bits = 4, .group_size = 32});
  const double err = slim::metrics::relative_frobenius(w, q.dequantize());
  std::printf("4-bit g32 relative error %.4f, %.3f bits/weight\n", err, q.bits_per_weight());
  return (err > 0.0 && err < 0.2) ? 0 : 1;
}

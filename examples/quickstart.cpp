// Quantize one layer to 4 bits and see what it costs: the five lines a user copies.
#include <slim/core.hpp>
#include <slim/quant.hpp>

#include <cstdio>

int main() {
  const slim::Matrix w = slim::random::gaussian(1024, 4096, /*seed=*/7, /*stddev=*/0.02);
  const slim::Matrix x = slim::random::correlated_activations(256, 4096, /*seed=*/8);
  for (int bits : {8, 4, 3}) {
    const auto q = slim::quant::quantize(w, slim::quant::Scheme{.bits = bits, .group_size = 128});
    std::printf("%-16s %6.3f bits/weight  weight error %.4f  output error %.4f\n",
                q.scheme().name().c_str(), q.bits_per_weight(),
                slim::metrics::relative_frobenius(w, q.dequantize()),
                slim::metrics::output_error(x, w, q.dequantize()));
  }
}

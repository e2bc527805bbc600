// Roofline latency of one call of a layer (Williams, Waterman & Patterson, "Roofline", CACM 2009):
// latency = max(compute time, memory time) on a Machine description. The machine has no defaults:
// describe it, or measure the running one with cost::measure_machine() (machine.hpp).
//
//   compute time = (fp32 mult + fp32 add) / peak_fp32_flops
//                + (int8 mult + int8 add + int32 mult + int32 add) / peak_int8_ops
//   working set  = weight_bytes + activation_in_bytes + activation_out_bytes + intermediate_bytes
//   weights come from DRAM when the working set exceeds cache_bytes, else from the cache
//   (WeightResidency::always_dram: always from DRAM - a layer of a model whose weights together
//   exceed the cache finds its own evicted by the other layers since its last call);
//   activations and intermediates (read/written bytes as in bytes_moved) come from DRAM when
//   they alone exceed cache_bytes, else from the cache;
//   memory time  = dram_bytes / memory_bandwidth + cache_bytes_read / cache_bandwidth.
//
// Compute and memory are assumed to overlap perfectly, and every byte to move once (the
// compulsory traffic); real kernels land above this bound, by how much is the benchmarks' job.
#pragma once

#include <slim/core/error.hpp>
#include <slim/cost/layer_cost.hpp>

#include <algorithm>
#include <cmath>

namespace slim::cost {

// Peak rates of a machine, for all `threads` threads together.
struct Machine {
  double peak_fp32_flops = 0.0;   // FLOP/s; a fused multiply-add counts as 2
  double peak_int8_ops = 0.0;     // integer op/s (int8 mult, int32 add, ...)
  double memory_bandwidth = 0.0;  // bytes/s read from DRAM
  double cache_bytes = 0.0;       // size of the last-level cache
  double cache_bandwidth = 0.0;   // bytes/s read from the last-level cache
  int threads = 1;                // threads the peaks were measured (or are quoted) with
};

// Where a layer's weights are before a call (see the header comment).
enum class WeightResidency { by_working_set, always_dram };

struct Latency {
  double compute_seconds = 0.0;
  double memory_seconds = 0.0;
  double seconds = 0.0;  // max(compute_seconds, memory_seconds)
  double dram_bytes = 0.0;
  double cache_bytes = 0.0;
  bool weights_from_dram = false;
  bool memory_bound = false;  // memory_seconds > compute_seconds
};

// Throws ArgumentError unless every rate is positive and finite, the cache size is finite and
// non-negative and threads >= 1. `fn` names the caller in the message.
inline void validate(const Machine& machine, const char* fn) {
  auto positive = [fn](double value, const char* name, const char* unit) {
    require<ArgumentError>(std::isfinite(value) && value > 0.0, fn, ": Machine::", name, " ", value,
                           " ", unit, "; expected a positive finite number");
  };
  positive(machine.peak_fp32_flops, "peak_fp32_flops", "FLOP/s");
  positive(machine.peak_int8_ops, "peak_int8_ops", "op/s");
  positive(machine.memory_bandwidth, "memory_bandwidth", "bytes/s");
  positive(machine.cache_bandwidth, "cache_bandwidth", "bytes/s");
  require<ArgumentError>(std::isfinite(machine.cache_bytes) && machine.cache_bytes >= 0.0, fn,
                         ": Machine::cache_bytes ", machine.cache_bytes,
                         "; expected a finite non-negative size");
  require<ArgumentError>(machine.threads >= 1, fn, ": Machine::threads ", machine.threads,
                         " must be at least 1");
}

// The roofline latency of one call of a layer with counts `cost` on `machine` (see above).
// Throws ArgumentError for an invalid machine (a zero bandwidth, a negative peak, ...).
inline Latency roofline(const LayerCost& cost, const Machine& machine,
                        WeightResidency residency = WeightResidency::by_working_set) {
  validate(machine, "cost::roofline");
  Latency l;
  l.compute_seconds = cost.ops.fp32_ops() / machine.peak_fp32_flops +
                      cost.ops.integer_ops() / machine.peak_int8_ops;

  const double activation_set =
      cost.activation_in_bytes + cost.activation_out_bytes + cost.intermediate_bytes;
  const double activation_traffic =
      cost.activation_in_bytes + cost.activation_out_bytes + 2.0 * cost.intermediate_bytes;
  l.weights_from_dram = residency == WeightResidency::always_dram ||
                        cost.weight_bytes + activation_set > machine.cache_bytes;
  (l.weights_from_dram ? l.dram_bytes : l.cache_bytes) += cost.weight_bytes;
  (activation_set > machine.cache_bytes ? l.dram_bytes : l.cache_bytes) += activation_traffic;

  l.memory_seconds =
      l.dram_bytes / machine.memory_bandwidth + l.cache_bytes / machine.cache_bandwidth;
  l.seconds = std::max(l.compute_seconds, l.memory_seconds);
  l.memory_bound = l.memory_seconds > l.compute_seconds;
  return l;
}

}  // namespace slim::cost

// Energy of one call of a layer from a per-operation table. The defaults are the 45 nm, 0.9 V
// figures of M. Horowitz, "Computing's energy problem", ISSCC 2014 (also used by Han et al.,
// "Learning both weights and connections", 2015), in picojoules:
//
//   fp32 mult 3.7   fp32 add 0.9   int8 mult 0.2   int8 add 0.03   int32 mult 3.1   int32 add 0.1
//   DRAM read, 32 bits 640          SRAM read, 32 bits (8 KB array) 5
//
// energy = sum over operation types of count * cost            (counts: layer_cost.hpp)
//        + weight_bytes / 4 * dram_read_32bit                   (weights from DRAM once per call)
//        + (activation_in_bytes + activation_out_bytes + 2 * intermediate_bytes) / 4
//          * sram_read_32bit                                    (activations from SRAM, each
//                                                                byte once; a write costs a read)
// Byte counts are divided by 4 without rounding (an int8 activation costs a quarter of a 32-bit
// read). The model ignores caches between SRAM and DRAM, leakage and the control overhead that
// dominates general-purpose CPUs; it ranks forms, it does not predict a power meter.
#pragma once

#include <slim/core/error.hpp>
#include <slim/cost/layer_cost.hpp>

#include <cmath>

namespace slim::cost {

// Picojoules per operation or per 32-bit memory read. Override any entry for another process.
struct EnergyTable {
  double fp32_mult = 3.7;
  double fp32_add = 0.9;
  double int8_mult = 0.2;
  double int8_add = 0.03;
  double int32_mult = 3.1;
  double int32_add = 0.1;
  double dram_read_32bit = 640.0;
  double sram_read_32bit = 5.0;
};

// The energy of one call, split by where it is spent. All in picojoules.
struct Energy {
  double compute_pj = 0.0;
  double weight_memory_pj = 0.0;      // weights from DRAM
  double activation_memory_pj = 0.0;  // activations and intermediates from SRAM
  double total_pj = 0.0;

  double joules() const { return total_pj * 1e-12; }
};

namespace detail {

inline void require_energy_entry(double value, const char* name) {
  require<ArgumentError>(std::isfinite(value) && value >= 0.0, "cost::energy: table entry ", name,
                         " = ", value, " pJ; expected a finite non-negative number");
}

}  // namespace detail

// The energy of one call of a layer whose counts are `cost`, priced by `table` (see above).
// Throws ArgumentError if a table entry is negative or not finite.
inline Energy energy(const LayerCost& cost, const EnergyTable& table = {}) {
  detail::require_energy_entry(table.fp32_mult, "fp32_mult");
  detail::require_energy_entry(table.fp32_add, "fp32_add");
  detail::require_energy_entry(table.int8_mult, "int8_mult");
  detail::require_energy_entry(table.int8_add, "int8_add");
  detail::require_energy_entry(table.int32_mult, "int32_mult");
  detail::require_energy_entry(table.int32_add, "int32_add");
  detail::require_energy_entry(table.dram_read_32bit, "dram_read_32bit");
  detail::require_energy_entry(table.sram_read_32bit, "sram_read_32bit");
  const OperationCounts& op = cost.ops;
  Energy e;
  e.compute_pj = op.fp32_mult * table.fp32_mult + op.fp32_add * table.fp32_add +
                 op.int8_mult * table.int8_mult + op.int8_add * table.int8_add +
                 op.int32_mult * table.int32_mult + op.int32_add * table.int32_add;
  e.weight_memory_pj = cost.weight_bytes / 4.0 * table.dram_read_32bit;
  e.activation_memory_pj =
      (cost.activation_in_bytes + cost.activation_out_bytes + 2.0 * cost.intermediate_bytes) / 4.0 *
      table.sram_read_32bit;
  e.total_pj = e.compute_pj + e.weight_memory_pj + e.activation_memory_pj;
  return e;
}

}  // namespace slim::cost

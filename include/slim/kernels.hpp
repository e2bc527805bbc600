// slim kernels module umbrella: includes every public header of slim/kernels/.
#pragma once

#include <slim/core.hpp>
#include <slim/kernels/dequant_matmul.hpp>
#include <slim/kernels/int8_matmul.hpp>
#include <slim/kernels/packed_weights.hpp>
#include <slim/kernels/sparse.hpp>

// slim quantization: schemes, RTN, packed QuantizedMatrix and the other formats and algorithms.
#pragma once

#include <slim/core.hpp>

#include <slim/quant/awq.hpp>
#include <slim/quant/ggml.hpp>
#include <slim/quant/gptq.hpp>
#include <slim/quant/linear.hpp>
#include <slim/quant/nf4.hpp>
#include <slim/quant/quantized_matrix.hpp>
#include <slim/quant/rtn.hpp>
#include <slim/quant/scheme.hpp>
#include <slim/quant/smoothquant.hpp>

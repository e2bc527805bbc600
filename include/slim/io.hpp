// slim io module umbrella: includes every public header of slim/io/. The safetensors readers and
// writers need nlohmann_json and are left out (SLIM_IO_HAVE_SAFETENSORS undefined) without it.
#pragma once

#include <slim/core.hpp>

#include <slim/io/file.hpp>
#include <slim/io/llama2c.hpp>
#include <slim/io/model.hpp>
#include <slim/io/quantized.hpp>
#include <slim/io/safetensors.hpp>
#include <slim/io/tensor.hpp>

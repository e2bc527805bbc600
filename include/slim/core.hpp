// slim core: types, errors, checks, random numbers, fp16/bf16, metrics, the LinearLayer interface.
#pragma once

#include <slim/core/checks.hpp>
#include <slim/core/error.hpp>
#include <slim/core/half.hpp>
#include <slim/core/linear.hpp>
#include <slim/core/metrics.hpp>
#include <slim/core/random.hpp>
#include <slim/core/types.hpp>

// slim low-rank factorization: truncated and randomized SVD, rank selection, ASVD, SVD-LLM,
// dense + sparse, the factorized layer and its quantized-factor variant.
#pragma once

#include <slim/core.hpp>
#include <slim/lowrank/activation_aware.hpp>
#include <slim/lowrank/dense_sparse.hpp>
#include <slim/lowrank/factors.hpp>
#include <slim/lowrank/linear.hpp>
#include <slim/lowrank/quantized_linear.hpp>
#include <slim/lowrank/svd.hpp>

// slim low-rank factorization: truncated and randomized SVD, rank selection, ASVD, SVD-LLM,
// dense + sparse, and the factorized layer.
#pragma once

#include <slim/core.hpp>
#include <slim/lowrank/activation_aware.hpp>
#include <slim/lowrank/dense_sparse.hpp>
#include <slim/lowrank/factors.hpp>
#include <slim/lowrank/linear.hpp>
#include <slim/lowrank/svd.hpp>

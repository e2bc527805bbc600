// slim prune module umbrella: includes every public header of slim/prune/.
#pragma once

#include <slim/core.hpp>
#include <slim/prune/magnitude.hpp>
#include <slim/prune/mask.hpp>
#include <slim/prune/obs.hpp>
#include <slim/prune/sparse_linear.hpp>
#include <slim/prune/sparse_storage.hpp>
#include <slim/prune/sparsegpt.hpp>
#include <slim/prune/structured.hpp>
#include <slim/prune/wanda.hpp>

// slim: header-only transformer compression primitives over Eigen. Including this umbrella
// pulls in every module; include a module's own header (slim/quant.hpp, ...) to pay for less.
#pragma once

#include <slim/calib.hpp>
#include <slim/core.hpp>
#include <slim/cost.hpp>
#include <slim/distill.hpp>
#include <slim/io.hpp>
#include <slim/kernels.hpp>
#include <slim/lowrank.hpp>
#include <slim/model.hpp>
#include <slim/pipeline.hpp>
#include <slim/prune.hpp>
#include <slim/quant.hpp>

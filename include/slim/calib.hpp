// slim calibration: streaming Hessian H = (2/n) X^T X and per-channel activation statistics.
#pragma once

#include <slim/calib/activation_stats.hpp>
#include <slim/calib/hessian.hpp>
#include <slim/calib/inverse.hpp>
#include <slim/core.hpp>

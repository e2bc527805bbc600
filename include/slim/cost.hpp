// slim cost module umbrella: includes every public header of slim/cost/.
#pragma once

#include <slim/core.hpp>

#include <slim/cost/energy.hpp>
#include <slim/cost/layer_cost.hpp>
#include <slim/cost/machine.hpp>
#include <slim/cost/roofline.hpp>
#include <slim/cost/score.hpp>

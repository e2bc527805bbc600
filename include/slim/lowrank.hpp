// slim lowrank module umbrella: includes every public header of slim/lowrank/.
#pragma once

#include <slim/core.hpp>

// slim calib module umbrella: includes every public header of slim/calib/.
#pragma once

#include <slim/core.hpp>

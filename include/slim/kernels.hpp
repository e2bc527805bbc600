// slim kernels module umbrella: includes every public header of slim/kernels/.
#pragma once

#include <slim/core.hpp>

// slim distill module umbrella: includes every public header of slim/distill/.
#pragma once

#include <slim/core.hpp>

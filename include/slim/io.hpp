// slim io module umbrella: includes every public header of slim/io/.
#pragma once

#include <slim/core.hpp>

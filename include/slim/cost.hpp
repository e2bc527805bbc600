// slim cost module umbrella: includes every public header of slim/cost/.
#pragma once

#include <slim/core.hpp>

// slim prune module umbrella: includes every public header of slim/prune/.
#pragma once

#include <slim/core.hpp>

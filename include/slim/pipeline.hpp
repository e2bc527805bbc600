// slim pipeline module umbrella: includes every public header of slim/pipeline/.
#pragma once

#include <slim/core.hpp>

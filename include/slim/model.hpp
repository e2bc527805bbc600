// slim model module umbrella: includes every public header of slim/model/.
#pragma once

#include <slim/core.hpp>

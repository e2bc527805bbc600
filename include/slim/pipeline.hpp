// slim pipeline: sequential whole-model compression, the standard methods as compressors, and the
// side-by-side comparison behind `slim compare`.
#pragma once

#include <slim/core.hpp>
#include <slim/pipeline/compare.hpp>
#include <slim/pipeline/methods.hpp>
#include <slim/pipeline/sequential.hpp>

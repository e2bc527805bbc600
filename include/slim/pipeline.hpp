// slim pipeline: sequential whole-model compression, the standard methods as compressors,
// whole-model methods (structured pruning + distillation, mixed precision), recipes, the
// compressed model file, and the side-by-side comparison behind `slim compare` (table, Pareto
// plot, per-layer speed-ups at LLaMA-7B shapes).
#pragma once

#include <slim/core.hpp>
#include <slim/pipeline/compare.hpp>
#include <slim/pipeline/layer_speed.hpp>
#include <slim/pipeline/methods.hpp>
#include <slim/pipeline/mixed_precision.hpp>
#include <slim/pipeline/model_methods.hpp>
#include <slim/pipeline/plot.hpp>
#include <slim/pipeline/recipe.hpp>
#include <slim/pipeline/sequential.hpp>

// The compressed model file is safetensors, whose header is JSON.
#if !defined(SLIM_NO_JSON) && __has_include(<nlohmann/json.hpp>)
#include <slim/pipeline/model_file.hpp>
#endif

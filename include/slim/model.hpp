// slim model module umbrella: includes every public header of slim/model/.
#pragma once

#include <slim/core.hpp>
#include <slim/model/config.hpp>
#include <slim/model/corpus.hpp>
#include <slim/model/distill.hpp>
#include <slim/model/evaluate.hpp>
#include <slim/model/reference.hpp>
#include <slim/model/sample.hpp>
#include <slim/model/tokenizer.hpp>
#include <slim/model/train.hpp>
#include <slim/model/transformer.hpp>
#include <slim/model/weights.hpp>

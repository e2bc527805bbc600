// slim distill module umbrella: includes every public header of slim/distill/.
#pragma once

#include <slim/core.hpp>
#include <slim/distill/attention_losses.hpp>
#include <slim/distill/hidden_losses.hpp>
#include <slim/distill/logit_losses.hpp>
#include <slim/distill/loss.hpp>
#include <slim/distill/optimizer.hpp>
#include <slim/distill/trainer.hpp>

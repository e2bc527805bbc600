// Recipes: what to do to which layers, as a JSON file `slim compress --recipe` reads. A recipe is
// a name and an ordered list of stages; each stage names a method, the layers it applies to and
// the method's options:
//
//   {"name": "minitron-kd-gptq4",
//    "stages": [{"method": "minitron-mlp", "fraction": 0.25},
//               {"method": "distill", "steps": 200},
//               {"method": "gptq", "bits": 4, "layers": "attention"},
//               {"method": "sparsegpt", "pattern": "2:4", "layers": "mlp"}]}
//
// Layer-wise methods (rtn, gptq, awq, nf4, magnitude, wanda, sparsegpt, svd, svd-llm) compress the
// selected layers with sequential calibration; "bits" on sparsegpt prunes then quantizes the
// survivors in one sweep, and on svd / svd-llm quantizes the factors (GPTQ, 4 or 8 bits); `layers`
// is "all" (every linear layer but the classifier, the default), "attention", "mlp", or a regular
// expression searched in layer names such as "layers.0.attention.wq". Whole-model methods:
// "minitron-mlp" (width pruning of the MLP, `fraction`), "distill" (KD from the original model,
// `steps`, `temperature`, `alpha`, `lr`, `batch`) and "mixed-precision" (`bits_per_weight`,
// `candidates`, `gptq`). Stages compose in order: structured pruning and distillation first (they
// need dense layers), then layer-wise stages on disjoint layers. A layer compressed by an earlier
// stage cannot be selected again: that is an error, not a silent overwrite.
#pragma once

#include <slim/core/error.hpp>
#include <slim/pipeline/methods.hpp>
#include <slim/pipeline/mixed_precision.hpp>
#include <slim/pipeline/model_methods.hpp>
#include <slim/pipeline/sequential.hpp>

#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#if !defined(SLIM_NO_JSON) && __has_include(<nlohmann/json.hpp>)
#include <nlohmann/json.hpp>
#define SLIM_RECIPE_JSON 1
#endif

namespace slim::pipeline {

struct Stage {
  std::string method;
  std::string layers = "all";
  std::map<std::string, double> numbers;  // numeric options (bits, sparsity, steps, ...)
  std::string pattern;                    // "2:4" style N:M pattern, when given
  std::vector<int> candidates;            // mixed-precision candidate widths, when given
};

struct Recipe {
  std::string name;
  std::vector<Stage> stages;
};

namespace detail {

// The options each method accepts, with their defaults.
inline const std::map<std::string, std::map<std::string, double>>& stage_defaults() {
  static const std::map<std::string, std::map<std::string, double>> d = {
      {"rtn", {{"bits", 4}, {"group_size", 32}}},
      {"gptq", {{"bits", 4}, {"group_size", 32}}},
      {"awq", {{"bits", 4}, {"group_size", 32}}},
      {"nf4", {}},
      {"magnitude", {{"sparsity", 0.5}}},
      {"wanda", {{"sparsity", 0.5}}},
      {"sparsegpt", {{"sparsity", 0.5}, {"bits", 0}, {"group_size", 32}}},
      {"svd", {{"budget", 0.5}, {"bits", 0}, {"group_size", 32}}},
      {"svd-llm", {{"budget", 0.5}, {"bits", 0}, {"group_size", 32}}},
      {"minitron-mlp", {{"fraction", 0.25}}},
      {"distill",
       {{"steps", 200}, {"temperature", 2.0}, {"alpha", 0.5}, {"lr", 1e-3}, {"batch", 16}}},
      {"mixed-precision", {{"bits_per_weight", 4.25}, {"group_size", 32}, {"gptq", 1}}},
  };
  return d;
}

inline bool whole_model(const std::string& method) {
  return method == "minitron-mlp" || method == "distill" || method == "mixed-precision";
}

inline double stage_number(const Stage& s, const std::string& key) {
  if (auto it = s.numbers.find(key); it != s.numbers.end()) return it->second;
  return stage_defaults().at(s.method).at(key);
}

inline std::string stage_label(std::size_t i, const Stage& s) {
  return "recipe stage " + std::to_string(i + 1) + " (" + s.method + ")";
}

inline LayerSelector stage_selector(std::size_t i, const Stage& s) {
  if (s.layers == "all") return all_but_classifier;
  if (s.layers == "attention") return attention_only;
  if (s.layers == "mlp") return mlp_only;
  try {
    const std::regex re(s.layers);
    return [re](const std::string& name) { return std::regex_search(name, re); };
  } catch (const std::regex_error& e) {
    throw ArgumentError(slim::detail::concat(stage_label(i, s), ": layers '", s.layers,
                                             "' is not all, attention, mlp or a valid regular "
                                             "expression (",
                                             e.what(), ")"));
  }
}

inline prune::Pattern stage_pattern(std::size_t i, const Stage& s) {
  if (s.pattern.empty()) return prune::Pattern::unstructured(stage_number(s, "sparsity"));
  const auto colon = s.pattern.find(':');
  int n = 0, m = 0;
  if (colon != std::string::npos) {
    n = std::atoi(s.pattern.substr(0, colon).c_str());
    m = std::atoi(s.pattern.substr(colon + 1).c_str());
  }
  require<ArgumentError>(n >= 1 && m > n, stage_label(i, s), ": pattern '", s.pattern,
                         "' is not N:M with 1 <= N < M (e.g. 2:4)");
  return prune::Pattern::n_m(n, m);
}

// The scheme a composed stage quantizes with ("bits" on sparsegpt, svd, svd-llm): 8 bits per
// channel, fewer in groups of group_size.
inline quant::Scheme composed_scheme(std::size_t i, const Stage& s) {
  const double bits = stage_number(s, "bits");
  require<ArgumentError>(bits >= 2 && bits <= 8 && bits == std::floor(bits), stage_label(i, s),
                         ": bits ", bits, " must be an integer in 2..8 (or 0: no quantization)");
  const auto group = static_cast<Index>(stage_number(s, "group_size"));
  require<ArgumentError>(group >= 1, stage_label(i, s), ": group_size ", group,
                         " must be positive");
  if (bits == 8) return quant::int8_per_channel();
  return quant::Scheme{.bits = static_cast<int>(bits), .group_size = group};
}

inline Method stage_method(std::size_t i, const Stage& s, int threads) {
  MethodOptions o;
  o.threads = threads;
  if (s.method == "rtn" || s.method == "gptq" || s.method == "awq") {
    const double bits = stage_number(s, "bits");
    require<ArgumentError>(bits >= 2 && bits <= 8 && bits == std::floor(bits), stage_label(i, s),
                           ": bits ", bits, " must be an integer in 2..8");
    o.group_size = static_cast<Index>(stage_number(s, "group_size"));
    require<ArgumentError>(o.group_size >= 1, stage_label(i, s), ": group_size ", o.group_size,
                           " must be positive");
    const int b = static_cast<int>(bits);
    if (s.method == "rtn") return rtn_method(b, o);
    if (s.method == "gptq") return gptq_method(b, o);
    return awq_method(b, o);
  }
  if (s.method == "nf4") return nf4_method();
  if (s.method == "magnitude" || s.method == "wanda" || s.method == "sparsegpt") {
    const prune::Pattern p = stage_pattern(i, s);
    require<ArgumentError>(p.sparsity >= 0.0 && p.sparsity < 1.0, stage_label(i, s), ": sparsity ",
                           p.sparsity, " is outside [0, 1)");
    if (s.method == "magnitude") return magnitude_method(p);
    if (s.method == "wanda") return wanda_method(p);
    if (stage_number(s, "bits") == 0) return sparsegpt_method(p);
    return sparsegpt_quantized_method(p, composed_scheme(i, s));
  }
  const double budget = stage_number(s, "budget");
  require<ArgumentError>(budget > 0.0 && budget <= 1.0, stage_label(i, s), ": budget ", budget,
                         " is outside (0, 1]");
  if (stage_number(s, "bits") != 0) {
    const quant::Scheme scheme = composed_scheme(i, s);
    require<ArgumentError>(scheme.bits == 4 || scheme.bits == 8, stage_label(i, s), ": bits ",
                           scheme.bits, " for the factors must be 4 or 8 (the kernels' widths)");
    return quantized_lowrank_method(budget, scheme, s.method == "svd-llm", o);
  }
  if (s.method == "svd") return svd_method(budget);
  return svd_llm_method(budget);
}

}  // namespace detail

// Checks every stage: a known method, only the keys it takes, values in range, a valid layer
// selection. Throws ArgumentError naming the stage and the key.
inline void validate(const Recipe& r) {
  require<ArgumentError>(!r.stages.empty(), "recipe '", r.name, "' has no stages");
  for (std::size_t i = 0; i < r.stages.size(); ++i) {
    const Stage& s = r.stages[i];
    const auto& defaults = detail::stage_defaults();
    auto it = defaults.find(s.method);
    if (it == defaults.end()) {
      std::string known;
      for (const auto& [name, _] : defaults) known += (known.empty() ? "" : ", ") + name;
      throw ArgumentError(slim::detail::concat("recipe stage ", i + 1, ": unknown method '",
                                               s.method, "'; expected one of ", known));
    }
    for (const auto& [key, value] : s.numbers) {
      require<ArgumentError>(it->second.count(key) > 0, detail::stage_label(i, s),
                             ": unknown option '", key, "'");
      require<ArgumentError>(std::isfinite(value), detail::stage_label(i, s), ": ", key, " is ",
                             value, "; expected a finite number");
    }
    require<ArgumentError>(s.pattern.empty() || s.method == "magnitude" || s.method == "wanda" ||
                               s.method == "sparsegpt",
                           detail::stage_label(i, s), ": 'pattern' applies to pruning stages only");
    require<ArgumentError>(s.candidates.empty() || s.method == "mixed-precision",
                           detail::stage_label(i, s),
                           ": 'candidates' applies to mixed-precision only");
    detail::stage_selector(i, s);
    if (!detail::whole_model(s.method)) {
      detail::stage_method(i, s, 1);
    } else if (s.method == "minitron-mlp") {
      const double f = detail::stage_number(s, "fraction");
      require<ArgumentError>(f > 0.0 && f < 1.0, detail::stage_label(i, s), ": fraction ", f,
                             " is outside (0, 1)");
    } else if (s.method == "distill") {
      require<ArgumentError>(
          detail::stage_number(s, "steps") >= 1 && detail::stage_number(s, "batch") >= 1 &&
              detail::stage_number(s, "lr") > 0 && detail::stage_number(s, "temperature") > 0,
          detail::stage_label(i, s),
          ": steps and batch must be at least 1, lr and temperature positive");
    }
  }
}

#ifdef SLIM_RECIPE_JSON
// Parses a recipe from JSON text (see the header comment) and validates it.
inline Recipe parse_recipe(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw ArgumentError(std::string("recipe: not valid JSON (") + e.what() + ")");
  }
  require<ArgumentError>(j.is_object() && j.contains("stages") && j["stages"].is_array(),
                         "recipe: expected an object with a \"stages\" array");
  Recipe r;
  if (j.contains("name")) {
    require<ArgumentError>(j["name"].is_string(), "recipe: \"name\" must be a string");
    r.name = j["name"].get<std::string>();
  }
  for (const auto& [key, _] : j.items()) {
    require<ArgumentError>(key == "name" || key == "stages", "recipe: unknown key '", key,
                           "'; expected name and stages");
  }
  for (std::size_t i = 0; i < j["stages"].size(); ++i) {
    const auto& js = j["stages"][i];
    require<ArgumentError>(js.is_object() && js.contains("method") && js["method"].is_string(),
                           "recipe stage ", i + 1, ": expected an object with a \"method\" string");
    Stage s;
    s.method = js["method"].get<std::string>();
    for (const auto& [key, value] : js.items()) {
      if (key == "method") continue;
      if (key == "layers" || key == "pattern") {
        require<ArgumentError>(value.is_string(), "recipe stage ", i + 1, ": \"", key,
                               "\" must be a string");
        (key == "layers" ? s.layers : s.pattern) = value.get<std::string>();
      } else if (key == "candidates") {
        require<ArgumentError>(value.is_array() && !value.empty(), "recipe stage ", i + 1,
                               ": \"candidates\" must be a non-empty array of bit widths");
        for (const auto& b : value) {
          require<ArgumentError>(b.is_number_integer(), "recipe stage ", i + 1,
                                 ": \"candidates\" must hold integers");
          s.candidates.push_back(b.get<int>());
        }
      } else if (value.is_number() || value.is_boolean()) {
        s.numbers[key] = value.is_boolean() ? (value.get<bool>() ? 1.0 : 0.0) : value.get<double>();
      } else {
        throw ArgumentError(slim::detail::concat("recipe stage ", i + 1, " (", s.method,
                                                 "): option '", key, "' must be a number"));
      }
    }
    r.stages.push_back(std::move(s));
  }
  validate(r);
  return r;
}
#endif

struct RecipeResult {
  model::Transformer model;
  CompressionReport report;  // the layers replaced by layer-wise and mixed-precision stages
  bool has_kernel = true;
  std::vector<std::string> log;  // one line per stage
};

// Applies the recipe to a copy of `original`. `ctx.calibration` feeds every calibration step (each
// layer-wise stage recalibrates on the model as compressed so far); distillation trains against
// `original` on `ctx.training`.
inline RecipeResult apply_recipe(const model::Transformer& original, const Recipe& recipe,
                                 const ModelContext& ctx) {
  validate(recipe);
  RecipeResult out{original, {}, true, {}};
  std::set<std::string> replaced;
  for (std::size_t i = 0; i < recipe.stages.size(); ++i) {
    const Stage& s = recipe.stages[i];
    const std::string label = detail::stage_label(i, s);
    const LayerSelector select = detail::stage_selector(i, s);
    bool any = false;
    for (const std::string& name : out.model.linear_names()) {
      if (!select(name)) continue;
      any = true;
      require<ArgumentError>(replaced.count(name) == 0, label, ": layer '", name,
                             "' was already compressed by an earlier stage");
    }
    require<ArgumentError>(any, label, ": layers '", s.layers,
                           "' match no linear layer (names look like layers.0.attention.wq, "
                           "layers.0.feed_forward.w1)");
    if (s.method == "minitron-mlp" || s.method == "distill") {
      require<ArgumentError>(replaced.empty(), label,
                             ": needs dense layers; put it before every layer-wise stage");
    }
    if (s.method == "minitron-mlp") {
      const double f = detail::stage_number(s, "fraction");
      out.model = prune_mlp_width(out.model, ctx.calibration, f).model;
      out.log.push_back(label + ": MLP hidden width now " +
                        std::to_string(out.model.config().hidden_dim));
    } else if (s.method == "distill") {
      model::DistillOptions o;
      o.train.steps = static_cast<Index>(detail::stage_number(s, "steps"));
      o.train.batch_size = static_cast<Index>(detail::stage_number(s, "batch"));
      o.train.learning_rate = detail::stage_number(s, "lr");
      o.train.min_learning_rate = o.train.learning_rate / 10;
      o.train.warmup_steps = std::min<Index>(o.train.warmup_steps, o.train.steps);
      o.train.threads = ctx.threads;
      o.temperature = detail::stage_number(s, "temperature");
      o.alpha = detail::stage_number(s, "alpha");
      const model::TrainResult t = model::distill(out.model, original, ctx.training, o);
      out.log.push_back(label + ": " + std::to_string(t.steps) + " steps, final loss " +
                        std::to_string(t.final_loss));
    } else if (s.method == "mixed-precision") {
      MixedPrecisionOptions o;
      o.bits_per_weight = detail::stage_number(s, "bits_per_weight");
      o.group_size = static_cast<Index>(detail::stage_number(s, "group_size"));
      o.gptq = detail::stage_number(s, "gptq") != 0.0;
      if (!s.candidates.empty()) o.bits = s.candidates;
      const ModelMethod method = mixed_precision_method(o);
      ModelContext stage_ctx = ctx;
      stage_ctx.select = select;
      TransformedModel t = method.transform(out.model, stage_ctx);
      out.model = std::move(t.model);
      out.has_kernel = out.has_kernel && t.has_kernel;
      for (LayerReport& l : t.report->layers) {
        replaced.insert(l.name);
        out.report.layers.push_back(std::move(l));
      }
      out.log.push_back(label + ": " + method.name);
    } else {
      const Method method = detail::stage_method(i, s, 1);
      const CompressionReport r =
          compress_sequential(out.model, ctx.calibration, method.compress, select);
      out.has_kernel = out.has_kernel && method.has_kernel;
      out.report.peak_activation_bytes =
          std::max(out.report.peak_activation_bytes, r.peak_activation_bytes);
      for (const LayerReport& l : r.layers) {
        replaced.insert(l.name);
        out.report.layers.push_back(l);
      }
      out.log.push_back(label + ": " + method.name + " on " + std::to_string(r.layers.size()) +
                        " layers");
    }
  }
  return out;
}

// A recipe as a whole-model method of the comparison table.
inline ModelMethod recipe_method(const Recipe& recipe, const std::string& family = "recipe") {
  validate(recipe);
  return {recipe.name, family,
          [recipe](const model::Transformer& original, const ModelContext& ctx) {
            RecipeResult r = apply_recipe(original, recipe, ctx);
            const bool structural = r.model.config() != original.config();
            TransformedModel t{std::move(r.model), std::nullopt, r.has_kernel};
            if (!structural) t.report = std::move(r.report);
            return t;
          }};
}

}  // namespace slim::pipeline

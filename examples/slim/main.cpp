// slim: the command-line tool. Trains, evaluates, samples, compresses (with a JSON recipe, into a
// compressed model file) and compares compression methods on the bundled reference model (the
// llama2.c architecture on Debian's fortunes, byte-level); with no model given it uses the default
// model, training it and caching it (in $SLIM_CACHE_DIR or ./slim-cache) on first use.
#include <slim/io/file.hpp>
#include <slim/model.hpp>
#include <slim/pipeline.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using slim::Index;
namespace model = slim::model;

struct Flag {
  std::string name;
  std::string value_name;  // empty: a switch without a value
  std::string help;
  std::string default_value;
};

struct Command {
  std::string name;
  std::string summary;
  std::vector<Flag> flags;
  std::function<int(const std::map<std::string, std::string>&)> run;
};

const std::vector<Flag> kCommonFlags = {
    {"model", "NAME",
     "bundled model: default (~0.8 M parameters) or test (tiny); eval and sample also take a "
     "file written by slim compress",
     "default"},
    {"json", "", "print the result as JSON on standard output instead of a table", ""},
    {"cache", "DIR", "cache folder for trained models ($SLIM_CACHE_DIR or ./slim-cache)", ""},
    {"corpus", "DIR", "fortunes folder", model::kFortunesDirectory},
    {"threads", "N", "OpenMP threads (0 = all cores)", "0"},
    {"seed", "N", "random seed: training windows (train, compare's distillation) or sampling", ""},
    {"help", "", "show this help", ""},
};

void print_help(const Command& c) {
  std::printf("usage: slim %s [options]\n\n%s\n\noptions:\n", c.name.c_str(), c.summary.c_str());
  auto show = [](const Flag& f) {
    std::string left = "  --" + f.name + (f.value_name.empty() ? "" : " " + f.value_name);
    std::printf("%-24s %s", left.c_str(), f.help.c_str());
    if (!f.default_value.empty()) std::printf(" [%s]", f.default_value.c_str());
    std::printf("\n");
  };
  for (const auto& f : c.flags) show(f);
  for (const auto& f : kCommonFlags) show(f);
}

std::string format_seconds(double s) {
  char buf[32];
  const long t = static_cast<long>(std::lround(s));
  if (t >= 60) {
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lds", t);
  }
  return buf;
}

long to_long(const std::map<std::string, std::string>& a, const std::string& key) {
  const std::string& s = a.at(key);
  char* end = nullptr;
  const long v = std::strtol(s.c_str(), &end, 10);
  slim::require<slim::ArgumentError>(!s.empty() && end != nullptr && *end == '\0', "slim: --", key,
                                     " '", s, "' is not an integer");
  return v;
}

double to_double(const std::map<std::string, std::string>& a, const std::string& key) {
  const std::string& s = a.at(key);
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  slim::require<slim::ArgumentError>(!s.empty() && end != nullptr && *end == '\0', "slim: --", key,
                                     " '", s, "' is not a number");
  return v;
}

model::Recipe recipe_for(const std::map<std::string, std::string>& a) {
  const std::string& name = a.at("model");
  model::Recipe r;
  if (name == "default") {
    r = model::default_recipe();
  } else if (name == "test") {
    r = model::test_recipe();
  } else {
    throw slim::ArgumentError("slim: --model '" + name + "' is unknown; expected default or test");
  }
  return r;
}

std::string cache_dir(const std::map<std::string, std::string>& a) {
  return a.at("cache").empty() ? model::cache_directory("slim-cache") : a.at("cache");
}

void progress_line(const model::TrainProgress& p) {
  std::fprintf(stderr, "\rstep %5ld/%ld  loss %.3f (%.2f bits/byte)  lr %.2e  %s elapsed  %s left ",
               static_cast<long>(p.step), static_cast<long>(p.steps), p.smoothed_loss,
               p.smoothed_loss / std::log(2.0), p.learning_rate,
               format_seconds(p.elapsed_seconds).c_str(),
               format_seconds(p.remaining_seconds).c_str());
  if (p.step == p.steps) std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

bool is_model_file(const std::string& name) {
  return name != "default" && name != "test" &&
         (std::filesystem::exists(name) || name.find('/') != std::string::npos ||
          name.find(".safetensors") != std::string::npos);
}

// The recipe's model, trained and cached on first use.
model::Transformer obtain_model(const std::map<std::string, std::string>& a,
                                const model::Corpus& corpus, int threads) {
  const model::Recipe r = recipe_for(a);
  const std::string dir = cache_dir(a);
  bool trained = false;
  bool announced = false;
  auto progress = [&](const model::TrainProgress& p) {
    if (!announced) {
      std::fprintf(stderr, "training the %s model (first use; cached in %s)\n", r.name.c_str(),
                   dir.c_str());
      announced = true;
    }
    progress_line(p);
  };
  return model::load_or_train(r, corpus, dir, &trained, progress, threads);
}

int run_train(const std::map<std::string, std::string>& a) {
  model::Recipe r = recipe_for(a);
  if (!a.at("seed").empty()) r.train.seed = static_cast<std::uint64_t>(to_long(a, "seed"));
  if (!a.at("steps").empty()) {
    r.train.steps = to_long(a, "steps");
    r.train.warmup_steps = std::min(r.train.warmup_steps, r.train.steps);
  }
  if (!a.at("batch").empty()) r.train.batch_size = to_long(a, "batch");
  if (!a.at("lr").empty()) {
    r.train.learning_rate = to_double(a, "lr");
    r.train.min_learning_rate = r.train.learning_rate / 10;
  }
  const int threads = static_cast<int>(to_long(a, "threads"));
  const model::Corpus corpus = model::load_fortunes(a.at("corpus"));
  const std::string dir = a.at("out").empty() ? cache_dir(a) : a.at("out");
  const std::string path = model::cache_path(r, corpus, dir);
  const std::string tag = model::recipe_tag(r, corpus);
  if (a.count("force") == 0 || a.at("force") != "1") {
    if (model::load_cached_model(path, tag)) {
      std::printf("%s is already trained with this recipe (use --force to retrain)\n",
                  path.c_str());
      return 0;
    }
  }
  std::filesystem::create_directories(dir);
  model::Transformer m(model::Weights::random(r.config, r.init_seed));
  std::printf("training the %s model: %ld parameters, %ld steps of %ld x %ld tokens, %d threads\n",
              r.name.c_str(), static_cast<long>(m.weights().parameter_count()),
              static_cast<long>(r.train.steps), static_cast<long>(r.train.batch_size),
              static_cast<long>(r.config.seq_len),
#ifdef _OPENMP
              threads > 0 ? threads : omp_get_max_threads()
#else
              1
#endif
  );
  model::TrainOptions options = r.train;
  options.threads = threads;
  options.progress = progress_line;
  const model::TrainResult result = model::train(m, corpus.train_tokens, options);
  model::save_cached_model(path, m.weights(), tag);
  const model::Perplexity val = model::evaluate(m, corpus.validation_tokens);
  std::printf("trained in %s; validation %.3f bits/byte (perplexity %.2f) over %ld tokens\n",
              format_seconds(result.seconds).c_str(), val.bits_per_token, val.perplexity,
              static_cast<long>(val.tokens));
  std::printf("saved %s\n", path.c_str());
  return 0;
}

// --model default|test (trained and cached on first use) or a compressed model file written by
// `slim compress`.
model::Transformer model_or_file(const std::map<std::string, std::string>& a,
                                 const model::Corpus& corpus, int threads) {
  const std::string& name = a.at("model");
  if (!is_model_file(name)) return obtain_model(a, corpus, threads);
  slim::pipeline::ModelFileOptions options;
  options.threads = std::max(1, threads);
  return slim::pipeline::load_compressed_model(name, options);
}

std::size_t model_bytes(const model::Transformer& m) {
  std::size_t total = 0;
  m.weights().for_each_parameter([&](const std::string& name, const auto& p) {
    bool replaced = false;
    for (const auto& l : m.linear_names()) replaced = replaced || name == l;
    if (!replaced || m.replacement(name) == nullptr) {
      total += sizeof(float) * static_cast<std::size_t>(p.size());
    }
  });
  for (const auto& l : m.linear_names()) {
    if (auto r = m.replacement(l)) total += r->bytes();
  }
  return total;
}

int run_eval(const std::map<std::string, std::string>& a) {
  const int threads = static_cast<int>(to_long(a, "threads"));
  const model::Corpus corpus = model::load_fortunes(a.at("corpus"));
  const model::Transformer m = model_or_file(a, corpus, threads);
  model::EvalOptions options;
  options.max_windows = to_long(a, "windows");
  const model::Perplexity val = model::evaluate(m, corpus.validation_tokens, options);
  const double unigram = model::unigram_bits(corpus.train_tokens, corpus.validation_tokens);
  std::size_t compressed = 0;
  for (const auto& l : m.linear_names()) compressed += m.replacement(l) ? 1 : 0;
  if (a.at("json") == "1") {
    nlohmann::json j = {{"model", a.at("model")},
                        {"parameters", m.weights().parameter_count()},
                        {"compressed_layers", compressed},
                        {"bytes", model_bytes(m)},
                        {"bits_per_byte", val.bits_per_token},
                        {"perplexity", val.perplexity},
                        {"tokens", val.tokens},
                        {"unigram_bits_per_byte", unigram}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("model            %s (%ld parameters, %zu compressed linear layers, %.3f MB)\n",
              a.at("model").c_str(), static_cast<long>(m.weights().parameter_count()), compressed,
              static_cast<double>(model_bytes(m)) / 1e6);
  std::printf("validation       %.4f bits/byte, perplexity %.3f, %ld tokens\n", val.bits_per_token,
              val.perplexity, static_cast<long>(val.tokens));
  std::printf("unigram baseline %.4f bits/byte\n", unigram);
  return 0;
}

int run_sample(const std::map<std::string, std::string>& a) {
  const int threads = static_cast<int>(to_long(a, "threads"));
  const model::Corpus corpus = model::load_fortunes(a.at("corpus"));
  const model::Transformer m = model_or_file(a, corpus, threads);
  model::SampleOptions options;
  options.temperature = to_double(a, "temperature");
  options.max_new_tokens = to_long(a, "tokens");
  if (!a.at("seed").empty()) options.seed = static_cast<std::uint64_t>(to_long(a, "seed"));
  const long count = to_long(a, "count");
  for (long i = 0; i < count; ++i) {
    std::vector<std::int32_t> prompt = model::ByteTokenizer::encode(a.at("prompt"), true);
    if (static_cast<Index>(prompt.size()) > m.config().seq_len) {
      prompt.resize(static_cast<std::size_t>(m.config().seq_len));
    }
    const auto out = model::generate(m, prompt, options);
    std::printf("%s%s\n", a.at("prompt").c_str(), model::ByteTokenizer::decode(out).c_str());
    if (i + 1 < count) std::printf("%%\n");
    options.seed += 1;
  }
  return 0;
}

// "a,b,c" -> {"a", "b", "c"} (empty entries dropped).
std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::string item;
  for (char c : s + ",") {
    if (c == ',') {
      if (!item.empty()) out.push_back(item);
      item.clear();
    } else {
      item += c;
    }
  }
  return out;
}

void write_compare_csv(const std::string& path,
                       const std::vector<slim::pipeline::MethodResult>& rows) {
  slim::io::write_file_atomic(path, [&](slim::io::ByteWriter& out) {
    std::string text =
        "method,family,bits_per_weight,size_mb,sparsity,bits_per_byte,perplexity,mean_kl,"
        "top1_agreement,latency_ms_per_token,energy_uj_per_token,score,has_kernel,compress_s\n";
    char line[512];
    for (const auto& r : rows) {
      std::snprintf(line, sizeof line,
                    "\"%s\",%s,%.4f,%.4f,%.4f,%.5f,%.5f,%.6f,%.5f,%.5f,%.4f,%.5f,%d,%.2f\n",
                    r.name.c_str(), r.family.c_str(), r.bits_per_weight, r.size_mb, r.sparsity,
                    r.bits_per_byte, r.perplexity, r.mean_kl, r.top1_agreement, r.latency_ms,
                    r.energy_uj, r.score, r.has_kernel ? 1 : 0, r.compress_seconds);
      text += line;
    }
    out.write(text.data(), text.size());
  });
}

// The format a method's layers run in, for timing at LLaMA-7B shapes; nullopt when there is no
// single one (the baseline, a mix of widths, or a structurally smaller dense model).
std::optional<slim::pipeline::FormatSpec> format_of(const slim::pipeline::MethodResult& r) {
  using slim::cost::Format;
  using slim::pipeline::FormatSpec;
  if (r.family == "baseline" || r.report.layers.empty()) return std::nullopt;
  if (!r.has_kernel) return FormatSpec::dense();
  const slim::cost::LayerForm& f = r.report.layers.front().form;
  for (const auto& l : r.report.layers) {
    if (l.form.format != f.format || l.form.bits != f.bits || l.form.n != f.n) return std::nullopt;
  }
  switch (f.format) {
    case Format::quantized:
      return FormatSpec::quantized(f.bits, f.bits == 8 ? 0 : f.group_size, !f.zero_point,
                                   f.activations == slim::cost::ActivationPath::int8
                                       ? slim::quant::ActivationPath::int8
                                       : slim::quant::ActivationPath::fp32);
    case Format::sparse_csr:
      return FormatSpec::unstructured(r.sparsity);
    case Format::sparse_n_m:
      return FormatSpec::n_m(f.n, f.m);
    case Format::low_rank:
      return FormatSpec::low_rank(r.bits_per_weight / 32.0);
    default:
      return std::nullopt;
  }
}

// Rows of {method, format, speed-up at 4096x4096, at 11008x4096}, one per comparison row; each
// distinct format is timed once.
std::vector<std::vector<std::string>> layer_speeds(
    const std::vector<slim::pipeline::MethodResult>& rows, int threads) {
  std::map<std::string, std::vector<std::string>> measured;
  std::vector<std::vector<std::string>> out;
  slim::pipeline::LayerSpeedOptions options;
  options.threads = std::max(1, threads);
  for (const auto& r : rows) {
    const auto spec = format_of(r);
    if (!spec) {
      bool dense = !r.report.layers.empty();
      for (const auto& l : r.report.layers) {
        dense = dense && l.form.format == slim::cost::Format::dense;
      }
      const char* label = r.family == "baseline" ? "dense fp32"
                          : dense                ? "dense fp32, smaller matrices"
                                                 : "(mixed formats)";
      out.push_back({r.name, label, "-", "-"});
      continue;
    }
    const std::string name = r.has_kernel ? spec->name() : "dense fp32 (no kernel)";
    if (!measured.count(name)) {
      std::fprintf(stderr, "\rtiming %-40s", name.c_str());
      std::fflush(stderr);
      std::vector<std::string> cells;
      for (const auto& shape : slim::pipeline::llama7b_shapes()) {
        const auto speed =
            slim::pipeline::layer_speed(*spec, shape.out_features, shape.in_features, options);
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.2fx", speed.speedup);
        cells.push_back(buf);
      }
      measured[name] = cells;
    }
    out.push_back({r.name, name, measured[name][0], measured[name][1]});
  }
  std::fprintf(stderr, "\r%60s\r", "");
  return out;
}

int run_compare(const std::map<std::string, std::string>& a) {
  const int threads = static_cast<int>(to_long(a, "threads"));
  const model::Corpus corpus = model::load_fortunes(a.at("corpus"));
  const model::Transformer m = obtain_model(a, corpus, threads);
  slim::pipeline::CompareOptions options;
  options.calibration_windows = to_long(a, "calibration");
  options.eval_windows = to_long(a, "windows");
  const std::string preset = a.at("preset");
  if (preset == "balanced") {
    options.weights = slim::cost::ScoreWeights::balanced();
  } else if (preset == "accuracy") {
    options.weights = slim::cost::ScoreWeights::accuracy_first();
  } else if (preset == "latency") {
    options.weights = slim::cost::ScoreWeights::latency_first();
  } else if (preset == "energy") {
    options.weights = slim::cost::ScoreWeights::energy_first();
  } else if (preset == "size") {
    options.weights = slim::cost::ScoreWeights::size_first();
  } else {
    throw slim::ArgumentError("slim compare: --preset '" + preset +
                              "' is unknown; expected balanced, accuracy, latency, energy or size");
  }
  options.threads = threads;
  std::vector<slim::pipeline::Method> methods;
  const auto wanted = split_list(a.at("methods"));
  auto wanted_name = [&](const std::string& name) {
    bool keep = wanted.empty();
    for (const auto& w : wanted) keep = keep || name.find(w) != std::string::npos;
    return keep;
  };
  for (auto& method : slim::pipeline::standard_methods()) {
    if (wanted_name(method.name)) methods.push_back(std::move(method));
  }
  const long kd_steps = to_long(a, "kd-steps");
  slim::require<slim::ArgumentError>(kd_steps >= 0, "slim compare: --kd-steps ", kd_steps,
                                     " must be non-negative");
  model::DistillOptions kd;
  if (!a.at("seed").empty()) kd.train.seed = static_cast<std::uint64_t>(to_long(a, "seed"));
  kd.train.progress = [](const model::TrainProgress& p) {
    std::fprintf(stderr, "\r  distillation step %ld/%ld, loss %.3f, %s left   ",
                 static_cast<long>(p.step), static_cast<long>(p.steps), p.smoothed_loss,
                 format_seconds(p.remaining_seconds).c_str());
    std::fflush(stderr);
  };
  std::vector<slim::pipeline::ModelMethod> model_methods;
  slim::pipeline::MixedPrecisionOptions mixed;
  mixed.bits_per_weight = 4.25;  // between GPTQ int3 g32 (3.6) and int4 g32 (5.0) in this table
  for (const auto& method : {slim::pipeline::minitron_mlp_method(0.5, 0),
                             slim::pipeline::minitron_mlp_method(0.5, kd_steps, kd),
                             slim::pipeline::mixed_precision_method(mixed)}) {
    if (method.name.find("KD") != std::string::npos && kd_steps == 0) continue;
    if (wanted_name(method.name)) model_methods.push_back(method);
  }
  slim::require<slim::ArgumentError>(!methods.empty() || !model_methods.empty(),
                                     "slim compare: --methods '", a.at("methods"),
                                     "' matches no method");
  const auto start = std::chrono::steady_clock::now();
  std::size_t done = 0;
  options.progress = [&](const std::string& name) {
    std::fprintf(
        stderr, "\r[%zu/%zu] %-28s %s elapsed ", ++done, methods.size() + model_methods.size(),
        name.c_str(),
        format_seconds(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count())
            .c_str());
    std::fflush(stderr);
  };
  const auto rows = slim::pipeline::compare(m, corpus, methods, options, model_methods);
  std::fprintf(stderr, "\n");
  const auto speeds = a.at("layer-speed") == "1" ? layer_speeds(rows, threads)
                                                 : std::vector<std::vector<std::string>>{};
  const std::string csv = a.at("csv");
  if (!csv.empty()) write_compare_csv(csv, rows);
  const std::string svg = a.at("svg");
  if (!svg.empty()) slim::pipeline::write_comparison_svg(svg, rows);
  if (a.at("json") == "1") {
    nlohmann::json j = nlohmann::json::array();
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const auto& r = rows[i];
      nlohmann::json row = {{"method", r.name},
                            {"family", r.family},
                            {"bits_per_weight", r.bits_per_weight},
                            {"size_mb", r.size_mb},
                            {"sparsity", r.sparsity},
                            {"bits_per_byte", r.bits_per_byte},
                            {"perplexity", r.perplexity},
                            {"mean_kl", r.mean_kl},
                            {"top1_agreement", r.top1_agreement},
                            {"latency_ms_per_token", r.latency_ms},
                            {"energy_uj_per_token", r.energy_uj},
                            {"score", r.score},
                            {"has_kernel", r.has_kernel},
                            {"compress_seconds", r.compress_seconds}};
      if (!speeds.empty()) {
        row["llama7b_format"] = speeds[i][1];
        row["llama7b_speedup_4096x4096"] = speeds[i][2];
        row["llama7b_speedup_11008x4096"] = speeds[i][3];
      }
      j.push_back(row);
    }
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  const double base_bpb = rows.front().bits_per_byte;
  std::printf("%-34s %6s %7s %6s %9s %7s %8s %6s %8s %9s %6s\n", "method", "bits/w", "size MB",
              "sparse", "bits/byte", "change", "KL", "top-1", "ms/token", "uJ/token", "score");
  for (const auto& r : rows) {
    std::printf("%-34s %6.2f %7.3f %5.0f%% %9.4f %+7.4f %8.5f %5.1f%% %7.3f%s %9.2f %6.3f\n",
                r.name.c_str(), r.bits_per_weight, r.size_mb, 100.0 * r.sparsity, r.bits_per_byte,
                r.bits_per_byte - base_bpb, r.mean_kl, 100.0 * r.top1_agreement, r.latency_ms,
                r.has_kernel ? " " : "*", r.energy_uj, r.score);
  }
  std::printf(
      "\nbits/w and sparsity over the compressed layers (all linear layers but the classifier);\n"
      "size is the whole model. * no kernel for this format yet: its size is the format's, its\n"
      "latency the dequantized fp32 path's. The model's matrices fit in cache, so latency here is\n"
      "not where compression pays: see the README's benchmark table for 4096-wide layers.\n"
      "score: cost::score, %s preset, ratios to the original (lower is better).\n",
      preset.c_str());
  if (!speeds.empty()) {
    std::printf(
        "\nPer-layer speed-up over dense fp32 Eigen at LLaMA-7B shapes (out x in, 1 token, "
        "%d thread%s, random weights in each method's format; this CPU):\n\n",
        std::max(1, threads), threads > 1 ? "s" : "");
    std::printf("%-34s %-26s %10s %11s\n", "method", "format", "4096x4096", "11008x4096");
    for (const auto& row : speeds) {
      std::printf("%-34s %-26s %10s %11s\n", row[0].c_str(), row[1].c_str(), row[2].c_str(),
                  row[3].c_str());
    }
  }
  if (!csv.empty()) std::printf("\nwrote %s\n", csv.c_str());
  if (!svg.empty()) std::printf("wrote %s (accuracy lost against size and latency)\n", svg.c_str());
  return 0;
}

int run_compress(const std::map<std::string, std::string>& a) {
  slim::require<slim::ArgumentError>(!a.at("recipe").empty(),
                                     "slim compress: --recipe FILE is required (see recipes/)");
  slim::require<slim::ArgumentError>(!a.at("out").empty(), "slim compress: --out FILE is required");
  std::ifstream in(a.at("recipe"));
  slim::require<slim::IoError>(static_cast<bool>(in), "slim compress: cannot read recipe '",
                               a.at("recipe"), "'");
  std::stringstream text;
  text << in.rdbuf();
  slim::pipeline::Recipe recipe = slim::pipeline::parse_recipe(text.str());
  if (recipe.name.empty()) recipe.name = std::filesystem::path(a.at("recipe")).stem().string();
  const int threads = static_cast<int>(to_long(a, "threads"));
  const model::Corpus corpus = model::load_fortunes(a.at("corpus"));
  const model::Transformer original = obtain_model(a, corpus, threads);
  const Index windows = to_long(a, "calibration");
  slim::require<slim::ArgumentError>(windows > 0, "slim compress: --calibration ", windows,
                                     " must be positive");
  const model::TokenPairs calibration =
      model::consecutive_windows(corpus.train_tokens, original.config().seq_len, windows);
  const auto start = std::chrono::steady_clock::now();
  slim::pipeline::ModelContext ctx{calibration.inputs, corpus.train_tokens, threads};
  const slim::pipeline::RecipeResult result = slim::pipeline::apply_recipe(original, recipe, ctx);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  model::EvalOptions eval;
  eval.max_windows = to_long(a, "windows");
  const model::Perplexity before = model::evaluate(original, corpus.validation_tokens, eval);
  const model::Perplexity after = model::evaluate(result.model, corpus.validation_tokens, eval);
  const model::Agreement agreement =
      model::compare(original, result.model, corpus.validation_tokens, eval);
  slim::pipeline::ModelMetadata metadata = {
      {"recipe", text.str()}, {"recipe_name", recipe.name}, {"source_model", a.at("model")}};
  slim::pipeline::save_compressed_model(a.at("out"), result.model, metadata);
  const auto file_bytes = std::filesystem::file_size(a.at("out"));
  const std::size_t dense = model_bytes(original), compressed = model_bytes(result.model);
  if (a.at("json") == "1") {
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& l : result.report.layers) {
      layers.push_back({{"name", l.name},
                        {"out_features", l.out_features},
                        {"in_features", l.in_features},
                        {"bytes", l.bytes},
                        {"dense_bytes", l.dense_bytes},
                        {"output_error", l.output_error}});
    }
    nlohmann::json j = {{"recipe", recipe.name},
                        {"stages", result.log},
                        {"layers", layers},
                        {"seconds", seconds},
                        {"bits_per_byte_before", before.bits_per_token},
                        {"bits_per_byte_after", after.bits_per_token},
                        {"mean_kl", agreement.mean_kl},
                        {"top1_agreement", agreement.top1_agreement},
                        {"model_bytes_before", dense},
                        {"model_bytes_after", compressed},
                        {"file", a.at("out")},
                        {"file_bytes", file_bytes}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("recipe %s on the %s model (%s)\n", recipe.name.c_str(), a.at("model").c_str(),
              format_seconds(seconds).c_str());
  for (const auto& line : result.log) std::printf("  %s\n", line.c_str());
  if (!result.report.layers.empty()) {
    std::printf("\n%-28s %12s %10s %10s %10s\n", "layer", "shape", "bytes", "fp32", "out err");
    for (const auto& l : result.report.layers) {
      const std::string shape =
          std::to_string(l.out_features) + "x" + std::to_string(l.in_features);
      std::printf("%-28s %12s %10zu %10zu %10.4f\n", l.name.c_str(), shape.c_str(), l.bytes,
                  l.dense_bytes, l.output_error);
    }
  }
  std::printf("\nvalidation      %.4f bits/byte (original %.4f, %+.4f), KL %.5f, top-1 %.1f%%\n",
              after.bits_per_token, before.bits_per_token,
              after.bits_per_token - before.bits_per_token, agreement.mean_kl,
              100.0 * agreement.top1_agreement);
  std::printf("model size      %.3f MB in memory (original %.3f MB)%s\n",
              static_cast<double>(compressed) / 1e6, static_cast<double>(dense) / 1e6,
              result.has_kernel ? "" : "; some layers have no kernel and run dequantized fp32");
  std::printf("wrote %s (%.3f MB); evaluate it with: slim eval --model %s\n", a.at("out").c_str(),
              static_cast<double>(file_bytes) / 1e6, a.at("out").c_str());
  return 0;
}

std::vector<Command> commands() {
  return {
      {"train",
       "Trains a bundled model on the fortunes training split and caches it.",
       {{"steps", "N", "training steps (default: the recipe's)", ""},
        {"batch", "N", "sequences per step (default: the recipe's)", ""},
        {"lr", "X", "peak learning rate (default: the recipe's)", ""},
        {"out", "DIR", "write the model here instead of the cache folder", ""},
        {"force", "", "retrain even if a valid cached model exists", ""}},
       run_train},
      {"eval",
       "Validation bits per byte and perplexity of a model (default, test, or a file written by "
       "slim compress), beside the unigram baseline.",
       {{"windows", "N", "validation windows of seq_len tokens (0 = all)", "0"}},
       run_eval},
      {"sample",
       "Generates text (greedy with --temperature 0).",
       {{"prompt", "TEXT", "text to continue", ""},
        {"temperature", "T", "sampling temperature", "0.8"},
        {"tokens", "N", "maximum new bytes", "200"},
        {"count", "N", "number of samples", "3"}},
       run_sample},
      {"compress",
       "Compresses the model with a JSON recipe (see recipes/), reports accuracy and size, and "
       "writes the compressed model file.",
       {{"recipe", "FILE", "recipe file (JSON: stages of methods and layers)", ""},
        {"out", "FILE", "compressed model file to write (safetensors)", ""},
        {"calibration", "N", "calibration windows of seq_len training tokens", "16"},
        {"windows", "N", "validation windows for perplexity, KL and top-1", "32"}},
       run_compress},
      {"compare",
       "Compresses the model with every standard method and prints one table: size, accuracy "
       "lost, decode latency on this CPU's kernels, energy and the combined score.",
       {{"methods", "LIST", "comma-separated name filters (e.g. GPTQ,SVD); empty = all", ""},
        {"calibration", "N", "calibration windows of seq_len training tokens", "16"},
        {"windows", "N", "validation windows for perplexity, KL and top-1", "32"},
        {"preset", "NAME", "score weights: balanced, accuracy, latency, energy or size",
         "balanced"},
        {"csv", "FILE", "also write the table as CSV (empty: no CSV)", "compare.csv"},
        {"svg", "FILE", "also write the Pareto plot as SVG (empty: no plot)", "compare.svg"},
        {"kd-steps", "N", "distillation steps after structured pruning (0: no KD row)", "300"},
        {"layer-speed", "0|1", "time each method's format at LLaMA-7B layer shapes", "1"}},
       run_compare},
  };
}

void print_usage() {
  std::printf("usage: slim <command> [options]\n\ncommands:\n");
  for (const auto& c : commands()) std::printf("  %-8s %s\n", c.name.c_str(), c.summary.c_str());
  std::printf("\n'slim <command> --help' lists a command's options.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    print_usage();
    return argc < 2 ? 1 : 0;
  }
  const std::string name = argv[1];
  const auto all = commands();
  const Command* command = nullptr;
  for (const auto& c : all) {
    if (c.name == name) command = &c;
  }
  if (command == nullptr) {
    std::fprintf(stderr, "slim: unknown command '%s'\n", name.c_str());
    print_usage();
    return 1;
  }
  std::map<std::string, std::string> args;
  std::map<std::string, const Flag*> known;
  for (const auto& f : command->flags) known[f.name] = &f;
  for (const auto& f : kCommonFlags) known[f.name] = &f;
  for (const auto& [key, flag] : known) args[key] = flag->default_value;
  try {
    for (int i = 2; i < argc; ++i) {
      std::string arg = argv[i];
      slim::require<slim::ArgumentError>(arg.rfind("--", 0) == 0, "slim ", name,
                                         ": unexpected argument '", arg, "'");
      arg = arg.substr(2);
      std::string value;
      const auto eq = arg.find('=');
      if (eq != std::string::npos) {
        value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
      }
      const auto it = known.find(arg);
      slim::require<slim::ArgumentError>(it != known.end(), "slim ", name, ": unknown option --",
                                         arg, " (see slim ", name, " --help)");
      if (it->second->value_name.empty()) {
        value = "1";
      } else if (eq == std::string::npos) {
        slim::require<slim::ArgumentError>(i + 1 < argc, "slim ", name, ": --", arg,
                                           " needs a value");
        value = argv[++i];
      }
      args[arg] = value;
    }
    if (args["help"] == "1") {
      print_help(*command);
      return 0;
    }
    const long threads = to_long(args, "threads");
    slim::require<slim::ArgumentError>(threads >= 0, "slim: --threads ", threads,
                                       " must be non-negative");
#ifdef _OPENMP
    if (threads > 0) omp_set_num_threads(static_cast<int>(threads));
#endif
    return command->run(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nslim %s: %s\n", name.c_str(), e.what());
    return 2;
  }
}

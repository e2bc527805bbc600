// slim: the command-line tool. Trains, evaluates, samples and compares compression methods on the
// bundled reference model (the llama2.c architecture on Debian's fortunes, byte-level); with no
// model given it uses the default model, training it and caching it (in $SLIM_CACHE_DIR or
// ./slim-cache) on first use.
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
#include <functional>
#include <iostream>
#include <map>
#include <string>
#include <vector>

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
    {"model", "NAME", "bundled model: default (~0.8 M parameters) or test (tiny)", "default"},
    {"cache", "DIR", "cache folder for trained models ($SLIM_CACHE_DIR or ./slim-cache)", ""},
    {"corpus", "DIR", "fortunes folder", model::kFortunesDirectory},
    {"threads", "N", "OpenMP threads (0 = all cores)", "0"},
    {"seed", "N", "random seed: training windows (train) or sampling (sample)", ""},
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

int run_eval(const std::map<std::string, std::string>& a) {
  const int threads = static_cast<int>(to_long(a, "threads"));
  const model::Corpus corpus = model::load_fortunes(a.at("corpus"));
  const model::Transformer m = obtain_model(a, corpus, threads);
  model::EvalOptions options;
  options.max_windows = to_long(a, "windows");
  const model::Perplexity val = model::evaluate(m, corpus.validation_tokens, options);
  const double unigram = model::unigram_bits(corpus.train_tokens, corpus.validation_tokens);
  std::printf("model            %s (%ld parameters)\n", a.at("model").c_str(),
              static_cast<long>(m.weights().parameter_count()));
  std::printf("validation       %.4f bits/byte, perplexity %.3f, %ld tokens\n", val.bits_per_token,
              val.perplexity, static_cast<long>(val.tokens));
  std::printf("unigram baseline %.4f bits/byte\n", unigram);
  return 0;
}

int run_sample(const std::map<std::string, std::string>& a) {
  const int threads = static_cast<int>(to_long(a, "threads"));
  const model::Corpus corpus = model::load_fortunes(a.at("corpus"));
  const model::Transformer m = obtain_model(a, corpus, threads);
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
  std::vector<slim::pipeline::Method> methods;
  const auto wanted = split_list(a.at("methods"));
  for (auto& method : slim::pipeline::standard_methods()) {
    bool keep = wanted.empty();
    for (const auto& w : wanted) keep = keep || method.name.find(w) != std::string::npos;
    if (keep) methods.push_back(std::move(method));
  }
  slim::require<slim::ArgumentError>(!methods.empty(), "slim compare: --methods '", a.at("methods"),
                                     "' matches no method");
  const auto start = std::chrono::steady_clock::now();
  std::size_t done = 0;
  options.progress = [&](const std::string& name) {
    std::fprintf(
        stderr, "\r[%zu/%zu] %-28s %s elapsed ", ++done, methods.size(), name.c_str(),
        format_seconds(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count())
            .c_str());
    std::fflush(stderr);
  };
  const auto rows = slim::pipeline::compare(m, corpus, methods, options);
  std::fprintf(stderr, "\n");
  const double base_bpb = rows.front().bits_per_byte;
  std::printf("%-26s %6s %7s %6s %9s %7s %8s %6s %8s %9s %6s\n", "method", "bits/w", "size MB",
              "sparse", "bits/byte", "change", "KL", "top-1", "ms/token", "uJ/token", "score");
  for (const auto& r : rows) {
    std::printf("%-26s %6.2f %7.3f %5.0f%% %9.4f %+7.4f %8.5f %5.1f%% %7.3f%s %9.2f %6.3f\n",
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
  const std::string csv = a.at("csv");
  if (!csv.empty()) {
    write_compare_csv(csv, rows);
    std::printf("wrote %s\n", csv.c_str());
  }
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
       "Validation bits per byte and perplexity of a model, beside the unigram baseline.",
       {{"windows", "N", "validation windows of seq_len tokens (0 = all)", "0"}},
       run_eval},
      {"sample",
       "Generates text (greedy with --temperature 0).",
       {{"prompt", "TEXT", "text to continue", ""},
        {"temperature", "T", "sampling temperature", "0.8"},
        {"tokens", "N", "maximum new bytes", "200"},
        {"count", "N", "number of samples", "3"}},
       run_sample},
      {"compare",
       "Compresses the model with every standard method and prints one table: size, accuracy "
       "lost, decode latency on this CPU's kernels, energy and the combined score.",
       {{"methods", "LIST", "comma-separated name filters (e.g. GPTQ,SVD); empty = all", ""},
        {"calibration", "N", "calibration windows of seq_len training tokens", "16"},
        {"windows", "N", "validation windows for perplexity, KL and top-1", "32"},
        {"preset", "NAME", "score weights: balanced, accuracy, latency, energy or size",
         "balanced"},
        {"csv", "FILE", "also write the table as CSV", "compare.csv"}},
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

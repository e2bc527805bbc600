// Writes the fuzzers' seed corpus: small valid files of each format (every dtype, a quantized
// matrix, tied and untied model checkpoints), into <dir>/safetensors/ and <dir>/llama2c/.
// Built and run by .ci/fuzz before fuzzing.
#include <slim/io.hpp>
#include <slim/quant/rtn.hpp>

#include <cstdio>
#include <filesystem>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  namespace fs = std::filesystem;
  const fs::path safetensors = fs::path(argv[1]) / "safetensors";
  const fs::path llama2c = fs::path(argv[1]) / "llama2c";
  fs::create_directories(safetensors);
  fs::create_directories(llama2c);
  using slim::io::DType;

  slim::io::TensorMap mixed;
  mixed.metadata["format"] = "pt";
  mixed.put_matrix("f32", slim::random::gaussian(2, 3, 1));
  mixed.put_matrix("f16", slim::random::gaussian(3, 1, 2), DType::F16);
  mixed.put_vector("bf16", slim::Vector::LinSpaced(3, -1.0f, 1.0f), DType::BF16);
  mixed.put_bytes("i8", DType::I8, {2}, {0x80, 0x7f});
  mixed.put_bytes("u8", DType::U8, {}, {7});
  mixed.put_bytes("empty", DType::U8, {0, 4}, {});
  slim::io::write_safetensors((safetensors / "mixed").string(), mixed);
  slim::io::write_safetensors((safetensors / "empty").string(), slim::io::TensorMap{});

  slim::io::save_quantized(
      (safetensors / "quantized_asym").string(),
      slim::quant::quantize(slim::random::gaussian(2, 16, 3), slim::quant::int4_group(8)));
  slim::quant::Scheme per_channel = slim::quant::int8_per_channel();
  per_channel.bits = 3;
  slim::io::save_quantized((safetensors / "quantized_sym").string(),
                           slim::quant::quantize(slim::random::gaussian(2, 5, 4), per_channel));

  slim::model::Config c;
  c.dim = 4;
  c.hidden_dim = 3;
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.vocab_size = 3;
  c.seq_len = 2;
  for (const bool shared : {true, false}) {
    c.shared_classifier = shared;
    const auto w = slim::model::Weights::random(c, shared ? 5 : 6);
    const std::string name = shared ? "tied" : "untied";
    slim::io::write_model_safetensors((safetensors / ("model_" + name)).string(), w, DType::F16);
    slim::io::write_llama2c((llama2c / name).string(), w);
  }
  return 0;
}

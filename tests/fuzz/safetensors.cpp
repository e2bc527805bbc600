// libFuzzer target for the safetensors reader and the readers built on it (quantized matrices,
// model checkpoints). A crash is any sanitizer report, any exception other than slim::FormatError
// from a reader, or a parsed file whose re-serialisation does not parse back to the same tensors.
// Built and run by .ci/fuzz.
#include <slim/io.hpp>

#include <cstdint>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  slim::io::TensorMap map;
  try {
    map = slim::io::parse_safetensors(data, size);
  } catch (const slim::FormatError&) {
    return 0;
  }
  const slim::io::TensorMap again =
      slim::io::parse_safetensors(slim::io::serialize_safetensors(map));
  if (again.tensors != map.tensors || again.metadata != map.metadata) std::abort();
  for (const auto& item : map.tensors) {
    try {
      const slim::Matrix m = map.matrix(item.first);
      if (static_cast<std::uint64_t>(m.size()) != item.second.numel()) std::abort();
    } catch (const slim::FormatError&) {
    }
  }
  try {
    slim::io::get_quantized(map, "weight");
  } catch (const slim::FormatError&) {
  }
  try {
    slim::io::get_model(map);
  } catch (const slim::FormatError&) {
  }
  return 0;
}

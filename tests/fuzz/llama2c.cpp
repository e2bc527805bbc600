// libFuzzer target for the llama2.c checkpoint reader. A crash is any sanitizer report, any
// exception other than slim::FormatError, or an accepted file that does not survive a write and
// re-read bit-exactly. Built and run by .ci/fuzz.
#include <slim/io.hpp>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  slim::model::Weights w;
  try {
    w = slim::io::parse_llama2c(data, size);
  } catch (const slim::FormatError&) {
    return 0;
  }
  const std::vector<std::uint8_t> bytes = slim::io::serialize_llama2c(w);
  if (bytes.size() != size || std::memcmp(bytes.data(), data, slim::io::kLlama2cHeaderBytes) != 0)
    std::abort();
  const slim::model::Weights again = slim::io::parse_llama2c(bytes);
  std::vector<const float*> first;
  w.for_each_parameter([&](const std::string&, const auto& p) { first.push_back(p.data()); });
  std::size_t k = 0;
  again.for_each_parameter([&](const std::string&, const auto& p) {
    if (k >= first.size() ||
        std::memcmp(p.data(), first[k], sizeof(float) * static_cast<std::size_t>(p.size())) != 0)
      std::abort();
    ++k;
  });
  return 0;
}

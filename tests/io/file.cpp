#include <slim/io.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

// A fresh folder per test, so that leftover temporary files can be counted.
fs::path test_dir() {
  const auto* info = testing::UnitTest::GetInstance()->current_test_info();
  const fs::path dir = fs::path(SLIM_TEST_BINARY_DIR) / "io_test_files" /
                       (std::string(info->test_suite_name()) + "." + info->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::vector<std::string> files_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename());
  return names;
}

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  slim::io::write_file_atomic(
      path, [&](slim::io::ByteWriter& out) { out.write(bytes.data(), bytes.size()); });
}

TEST(AtomicWrite, ReplacesTheContentsAndLeavesNoTemporaryFile) {
  const fs::path dir = test_dir();
  const std::string path = (dir / "f.bin").string();
  write_bytes(path, {1, 2, 3});
  EXPECT_EQ(slim::io::read_file(path), (std::vector<std::uint8_t>{1, 2, 3}));
  write_bytes(path, {9});
  EXPECT_EQ(slim::io::read_file(path), (std::vector<std::uint8_t>{9}));
  EXPECT_EQ(files_in(dir), (std::vector<std::string>{"f.bin"}));
}

TEST(AtomicWrite, AWriterThatFailsHalfwayLeavesThePreviousFileUntouched) {
  const fs::path dir = test_dir();
  const std::string path = (dir / "model.bin").string();
  write_bytes(path, {4, 5, 6, 7});
  EXPECT_THROW(slim::io::write_file_atomic(path,
                                           [](slim::io::ByteWriter& out) {
                                             const std::vector<std::uint8_t> half(1000, 0xab);
                                             out.write(half.data(), half.size());
                                             throw std::runtime_error("disk on fire");
                                           }),
               std::runtime_error);
  EXPECT_EQ(slim::io::read_file(path), (std::vector<std::uint8_t>{4, 5, 6, 7}));
  EXPECT_EQ(files_in(dir), (std::vector<std::string>{"model.bin"}));
}

TEST(AtomicWrite, FailedCheckpointWritesLeaveThePreviousFileUntouched) {
  const fs::path dir = test_dir();
  const std::string path = (dir / "model.safetensors").string();
  slim::io::TensorMap good;
  good.put_matrix("w", slim::Matrix::Ones(2, 2));
  slim::io::write_safetensors(path, good);
  const auto before = slim::io::read_file(path);

  slim::io::TensorMap bad = good;
  bad.put_vector("z", slim::Vector::Ones(3));
  bad.tensors["z"].bytes.resize(5);  // lies about its size: detected while writing
  EXPECT_THROW(slim::io::write_safetensors(path, bad), slim::ArgumentError);
  EXPECT_EQ(slim::io::read_file(path), before);

  slim::model::Config c;
  c.dim = 8;
  c.hidden_dim = 8;
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 2;
  c.vocab_size = 5;
  c.seq_len = 4;
  auto w = slim::model::Weights::random(c, 1);
  w.rms_final.resize(3);
  EXPECT_THROW(slim::io::write_llama2c(path, w), slim::ShapeError);
  EXPECT_EQ(slim::io::read_file(path), before);
  EXPECT_EQ(files_in(dir), (std::vector<std::string>{"model.safetensors"}));
}

TEST(AtomicWrite, RenameOntoAFolderIsIoErrorAndRemovesTheTemporaryFile) {
  const fs::path dir = test_dir();
  const fs::path target = dir / "occupied";
  fs::create_directories(target / "inside");
  EXPECT_THROW(write_bytes(target.string(), {1}), slim::IoError);
  EXPECT_EQ(files_in(dir), (std::vector<std::string>{"occupied"}));
}

TEST(AtomicWrite, MissingFolderIsIoError) {
  const fs::path dir = test_dir();
  EXPECT_THROW(write_bytes((dir / "no" / "such" / "f.bin").string(), {1}), slim::IoError);
}

TEST(ReadFile, MissingFileOrFolderIsIoError) {
  const fs::path dir = test_dir();
  EXPECT_THROW(slim::io::read_file((dir / "absent").string()), slim::IoError);
  EXPECT_THROW(slim::io::read_file(dir.string()), slim::IoError);
}

TEST(ByteReader, ReadingPastTheEndIsFormatErrorNamingTheField) {
  const std::vector<std::uint8_t> bytes = {1, 0, 0, 0, 2};
  slim::io::ByteReader reader(bytes.data(), bytes.size(), "test format");
  EXPECT_EQ(reader.read<std::int32_t>("first"), 1);
  try {
    reader.read<std::int32_t>("second");
    FAIL() << "expected FormatError";
  } catch (const slim::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("test format: second needs 4 bytes at offset 4"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(reader.remaining(), 1u);
}

}  // namespace

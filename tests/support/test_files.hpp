// Helpers that several test files need: a per-test scratch path and the message of an expected
// slim::FormatError. Header-only so that each test binary (one per module) includes it once.
#pragma once

#include <slim/core/error.hpp>

#include <gtest/gtest.h>

#include <exception>
#include <filesystem>
#include <string>

namespace slim::test {

// A path under <build>/test_files named after the running test, so parallel tests never share one.
inline std::string temp_path(const std::string& suffix) {
  const auto dir = std::filesystem::path(SLIM_TEST_BINARY_DIR) / "test_files";
  std::filesystem::create_directories(dir);
  const auto* info = testing::UnitTest::GetInstance()->current_test_info();
  return (dir / (std::string(info->test_suite_name()) + "." + info->name() + suffix)).string();
}

// The message a FormatError carries; fails the test if another exception or none is thrown.
template <typename F>
std::string format_error_of(F&& f) {
  try {
    f();
  } catch (const slim::FormatError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected FormatError, got: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected FormatError, nothing was thrown";
  return "";
}

}  // namespace slim::test

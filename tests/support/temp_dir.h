// A fresh temporary directory per test, removed at the end.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

namespace mtplx::testing {

class TempDir {
 public:
  TempDir() {
    std::random_device device;
    path_ = std::filesystem::temp_directory_path() /
            ("mtplx-test-" + std::to_string(device()) + std::to_string(device()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// The checkout; MTPLX_SOURCE_DIR in the environment wins (tests built here and run on another machine).
inline std::filesystem::path source_dir() {
  const char* env = std::getenv("MTPLX_SOURCE_DIR");
  return env != nullptr ? std::filesystem::path(env) : std::filesystem::path(MTPLX_SOURCE_DIR);
}
inline std::filesystem::path fixtures_dir() {
  return source_dir() / "tests" / "fixtures";
}

}  // namespace mtplx::testing

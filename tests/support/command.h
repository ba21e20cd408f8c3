// Runs the mtplx binary as a user would: arguments through the shell, stdin from a string, stdout and
// stderr captured apart.
#pragma once

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "support/temp_dir.h"

namespace mtplx::testing {

struct CommandResult {
  int status = -1;
  std::string out, err;
};

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

inline void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Single-quotes an argument for /bin/sh (any bytes but NUL).
inline std::string quote(const std::string& arg) {
  // Appends only: GCC 12 reports a false -Wrestrict on `literal + std::string` at -O3.
  std::string out(1, '\'');
  for (char c : arg) {
    if (c == '\'')
      out.append("'\\''");
    else
      out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

inline CommandResult run_mtplx(const std::vector<std::string>& args, const std::string& input = "") {
  TempDir io;
  write_file(io / "stdin", input);
  std::string command = quote(MTPLX_BINARY);
  for (const auto& arg : args) command.append(" ").append(quote(arg));
  command.append(" <").append(quote((io / "stdin").string()));
  command.append(" >").append(quote((io / "stdout").string()));
  command.append(" 2>").append(quote((io / "stderr").string()));
  const int raw = std::system(command.c_str());
  CommandResult result;
  result.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  result.out = read_file(io / "stdout");
  result.err = read_file(io / "stderr");
  return result;
}

// A command expected to succeed and print one JSON value per line on stdout.
inline std::vector<nlohmann::json> run_json_lines(const std::vector<std::string>& args) {
  const auto result = run_mtplx(args);
  EXPECT_EQ(result.status, 0) << result.err;
  std::vector<nlohmann::json> lines;
  std::istringstream in(result.out);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

}  // namespace mtplx::testing

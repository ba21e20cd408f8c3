// The tokenize / detokenize / template commands, run as a user would, against the oracles.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <memory>

#include "text/oracle.h"

namespace mtplx::text {
namespace {

using nlohmann::ordered_json;

std::string run(const std::string& args) {
  std::string command = std::string(MTPLX_BINARY) + " " + args + " 2>&1";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), &pclose);
  std::string out;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe.get())) > 0) out.append(buffer.data(), n);
  return out;
}

std::filesystem::path checkpoint() {
  auto dir = test::scratch_dir("cli_checkpoint");
  auto models = test::qwen3_tokenizer_json().parent_path();
  std::filesystem::copy_file(models / "tokenizer.json", dir / "tokenizer.json");
  std::filesystem::copy_file(models / "tokenizer_config.json", dir / "tokenizer_config.json");
  std::filesystem::copy_file(test::source_dir() / "tests/text/data/templates/qwen3.5.jinja",
                             dir / "chat_template.jinja");
  return dir;
}

TEST(Commands, TokenizeDetokenizeAndTemplateMatchOracles) {
  auto dir = checkpoint();
  std::string text = "Hello, world! 你好 <|im_start|>user\n123 \xF0\x9F\x99\x82";
  auto input = dir / "input.txt";
  test::write_text(input, text);
  auto oracle =
      test::run_oracle("tokenize.mjs", {{"tokenizer", (dir / "tokenizer.json").string()}, {"texts", {text}}});
  auto ids = nlohmann::json::parse(run("tokenize --model " + dir.string() + " --file " + input.string()));
  EXPECT_EQ(ids, oracle["ids"][0]);
  EXPECT_EQ(run("detokenize --model " + dir.string() + " --ids '" + ids.dump() + "'"), text);

  ordered_json messages = ordered_json::array(
      {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Weather in Oslo?"}}});
  ordered_json tools =
      ordered_json::parse(R"([{"type": "function", "function": {"name": "w", "parameters": {}}}])");
  test::write_text(dir / "messages.json", messages.dump());
  test::write_text(dir / "tools.json", tools.dump());
  ordered_json request = {{"template", test::read_text(dir / "chat_template.jinja")},
                          {"cases",
                           {{{"messages", messages},
                             {"tools", tools},
                             {"add_generation_prompt", true},
                             {"enable_thinking", false}}}}};
  auto rendered = test::run_oracle("render.mjs", request.dump());
  EXPECT_EQ(run("template --model " + dir.string() + " --messages " + (dir / "messages.json").string() +
                " --tools " + (dir / "tools.json").string() + " --no-think"),
            rendered[0]["text"].get<std::string>());
}

TEST(Commands, BadInputIsAClearError) {
  std::string out = run("tokenize --model /nonexistent --text hi");
  EXPECT_NE(out.find("no tokenizer.json"), std::string::npos) << out;
}

}  // namespace
}  // namespace mtplx::text

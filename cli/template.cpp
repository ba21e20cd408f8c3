// mtplx template: render the checkpoint's chat template for a conversation, as transformers would.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "base/error.h"
#include "commands.h"
#include "text/chat.h"

namespace mtplx::cli {
namespace {

nlohmann::ordered_json read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  require(in.good(), "cannot open file", path);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  auto j = nlohmann::ordered_json::parse(buffer.str(), nullptr, false);
  require(!j.is_discarded(), "file is not valid JSON", path);
  return j;
}

}  // namespace

void add_template_command(CLI::App& app) {
  struct Options {
    std::string model, messages, tools;
    bool no_think = false, preserve_thinking = false, no_generation_prompt = false;
  };
  auto opts = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("template", "Print the prompt the model's chat template renders");
  cmd->add_option("--model", opts->model, "Checkpoint folder (tokenizer_config.json / chat_template.jinja)")
      ->required();
  cmd->add_option("--messages", opts->messages, "JSON file: an array of messages, or {\"messages\": [...]}")
      ->required();
  cmd->add_option("--tools", opts->tools, "JSON file with an array of tools");
  cmd->add_flag("--no-think", opts->no_think, "Render with enable_thinking=false");
  cmd->add_flag("--preserve-thinking", opts->preserve_thinking,
                "Render with preserve_thinking=true (Qwen3.6)");
  cmd->add_flag("--no-generation-prompt", opts->no_generation_prompt, "Do not open an assistant turn");
  cmd->callback([opts] {
    text::ChatModel model = text::ChatModel::load(opts->model);
    nlohmann::ordered_json messages = read_json(opts->messages);
    nlohmann::ordered_json tools;
    if (messages.is_object()) {
      if (messages.contains("tools")) tools = messages["tools"];
      messages = messages.value("messages", nlohmann::ordered_json());
    }
    require(messages.is_array(), "messages must be a JSON array", opts->messages);
    if (!opts->tools.empty()) tools = read_json(opts->tools);
    text::ChatOptions options;
    options.add_generation_prompt = !opts->no_generation_prompt;
    if (opts->no_think) options.enable_thinking = false;
    if (opts->preserve_thinking) options.preserve_thinking = true;
    std::cout << model.render(messages, tools, options);
  });
}

}  // namespace mtplx::cli

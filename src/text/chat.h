// Prompt building from a checkpoint's own files: tokenizer.json, tokenizer_config.json and the chat
// template (chat_template.jinja, or `chat_template` in tokenizer_config.json), rendered with the same
// variables transformers' apply_chat_template passes.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "text/jinja/template.h"
#include "text/tokenizer.h"

namespace mtplx::text {

struct ChatOptions {
  bool add_generation_prompt = true;
  std::optional<bool> enable_thinking;    // absent: the template's default
  std::optional<bool> preserve_thinking;  // Qwen3.6: keep reasoning of all past turns
  nlohmann::ordered_json extra_variables = nlohmann::ordered_json::object();  // other template kwargs
};

class ChatTemplate {
 public:
  // `config` is tokenizer_config.json (may be empty); special-token variables come from it.
  ChatTemplate(std::string source, std::string name, const nlohmann::ordered_json& config);

  // messages: OpenAI-style array; tools: array or null. Throws mtplx::Error for template errors.
  std::string render(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                     const ChatOptions& options) const;
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  jinja::Template template_;
  jinja::Object special_tokens_;
};

// Everything text-side a checkpoint folder provides.
class ChatModel {
 public:
  static ChatModel load(const std::filesystem::path& dir);

  const Tokenizer& tokenizer() const { return tokenizer_; }
  const ChatTemplate& chat_template() const;
  bool has_chat_template() const { return template_.has_value(); }
  const nlohmann::ordered_json& tokenizer_config() const { return config_; }

  std::string render(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                     const ChatOptions& options) const {
    return chat_template().render(messages, tools, options);
  }
  // Renders and tokenizes (special tokens in the prompt are parsed, as transformers does).
  std::vector<TokenId> encode_chat(const nlohmann::ordered_json& messages,
                                   const nlohmann::ordered_json& tools, const ChatOptions& options) const;
  // Token ids that end generation: eos_token of tokenizer_config plus <|im_end|> / <|endoftext|> if present.
  std::vector<TokenId> stop_token_ids() const;

 private:
  ChatModel(Tokenizer tokenizer, nlohmann::ordered_json config, std::optional<ChatTemplate> chat_template)
      : tokenizer_(std::move(tokenizer)), config_(std::move(config)), template_(std::move(chat_template)) {}

  Tokenizer tokenizer_;
  nlohmann::ordered_json config_;
  std::optional<ChatTemplate> template_;
};

// True when a rendered prompt leaves a <think> block open, so generated text starts as reasoning.
bool prompt_opens_reasoning(std::string_view prompt);

}  // namespace mtplx::text

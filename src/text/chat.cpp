#include "text/chat.h"

#include <fstream>
#include <sstream>

#include "base/error.h"

namespace mtplx::text {

namespace {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  require(in.good(), "cannot open file", path.string());
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// tokenizer_config stores special tokens as strings or as AddedToken dicts {"content": ...}.
std::optional<std::string> token_string(const nlohmann::ordered_json& config, const char* key) {
  if (!config.contains(key)) return std::nullopt;
  const auto& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

ChatTemplate::ChatTemplate(std::string source, std::string name, const nlohmann::ordered_json& config)
    : source_(std::move(source)), template_(source_, std::move(name)) {
  for (const char* key :
       {"bos_token", "eos_token", "pad_token", "unk_token", "sep_token", "cls_token", "mask_token"}) {
    if (auto s = token_string(config, key)) special_tokens_.set(key, *s);
  }
}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                                 const ChatOptions& options) const {
  require(messages.is_array(), "messages must be a JSON array", "chat request");
  jinja::Object vars = special_tokens_;
  for (const auto& [k, v] : options.extra_variables.items()) vars.set(k, jinja::Value::from_json(v));
  vars.set("messages", jinja::Value::from_json(messages));
  if (!tools.is_null()) vars.set("tools", jinja::Value::from_json(tools));
  vars.set("add_generation_prompt", options.add_generation_prompt);
  if (options.enable_thinking) vars.set("enable_thinking", *options.enable_thinking);
  if (options.preserve_thinking) vars.set("preserve_thinking", *options.preserve_thinking);
  return template_.render(vars);
}

ChatModel ChatModel::load(const std::filesystem::path& dir) {
  auto tokenizer_path = dir / "tokenizer.json";
  require(std::filesystem::exists(tokenizer_path), "no tokenizer.json in the model folder", dir.string(),
          "pass --model with a checkpoint folder that contains tokenizer.json");
  Tokenizer tokenizer = Tokenizer::from_file(tokenizer_path);
  nlohmann::ordered_json config = nlohmann::ordered_json::object();
  auto config_path = dir / "tokenizer_config.json";
  if (std::filesystem::exists(config_path)) {
    try {
      config = nlohmann::ordered_json::parse(read_file(config_path));
    } catch (const nlohmann::json::parse_error& e) {
      fail(str("tokenizer_config.json is not valid JSON: ", e.what()), config_path.string());
    }
  }
  std::optional<ChatTemplate> chat_template;
  auto template_path = dir / "chat_template.jinja";
  if (std::filesystem::exists(template_path)) {  // transformers prefers the separate file
    chat_template.emplace(read_file(template_path), template_path.string(), config);
  } else if (config.contains("chat_template") && config["chat_template"].is_string()) {
    chat_template.emplace(config["chat_template"].get<std::string>(), config_path.string() + " chat_template",
                          config);
  }
  return ChatModel(std::move(tokenizer), std::move(config), std::move(chat_template));
}

const ChatTemplate& ChatModel::chat_template() const {
  require(template_.has_value(), "the model has no chat template",
          "tokenizer_config.json / chat_template.jinja", "add chat_template.jinja to the model folder");
  return *template_;
}

std::vector<TokenId> ChatModel::encode_chat(const nlohmann::ordered_json& messages,
                                            const nlohmann::ordered_json& tools,
                                            const ChatOptions& options) const {
  return tokenizer_.encode(render(messages, tools, options));
}

std::vector<TokenId> ChatModel::stop_token_ids() const {
  std::vector<TokenId> ids;
  auto add = [&](const std::string& token) {
    auto id = tokenizer_.token_to_id(token);
    if (id && std::find(ids.begin(), ids.end(), *id) == ids.end()) ids.push_back(*id);
  };
  if (auto eos = token_string(config_, "eos_token")) add(*eos);
  add("<|im_end|>");
  add("<|endoftext|>");
  return ids;
}

bool prompt_opens_reasoning(std::string_view prompt) {
  size_t open = prompt.rfind("<think>");
  return open != std::string_view::npos && prompt.find("</think>", open) == std::string_view::npos;
}

}  // namespace mtplx::text

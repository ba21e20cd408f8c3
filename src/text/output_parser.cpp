#include "text/output_parser.h"

#include <algorithm>

namespace mtplx::text {

namespace {

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";
constexpr std::string_view kCallOpen = "<tool_call>";
constexpr std::string_view kCallClose = "</tool_call>";

// Length of the longest suffix of `s` that is a proper prefix of `tag`.
size_t partial_tag_suffix(std::string_view s, std::string_view tag) {
  for (size_t n = std::min(tag.size() - 1, s.size()); n > 0; --n) {
    if (s.substr(s.size() - n) == tag.substr(0, n)) return n;
  }
  return 0;
}

std::string_view trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

const nlohmann::ordered_json* find_tool(const nlohmann::ordered_json& tools, std::string_view name) {
  for (const auto& t : tools) {
    const auto& f = t.contains("function") ? t["function"] : t;
    if (f.is_object() && f.value("name", "") == name) return &f;
  }
  return nullptr;
}

// Types a parameter value by its JSON schema "type" (string or list); untyped values stay strings.
nlohmann::ordered_json typed_value(const std::string& raw, const nlohmann::ordered_json* schema) {
  if (!schema || !schema->is_object() || !schema->contains("type")) return raw;
  const auto& type = (*schema)["type"];
  std::vector<std::string> types;
  if (type.is_string()) types.push_back(type.get<std::string>());
  if (type.is_array()) {
    for (const auto& t : type) {
      if (t.is_string()) types.push_back(t.get<std::string>());
    }
  }
  for (const auto& t : types) {
    if (t == "string") continue;  // tried last: any text is a valid string
    if (t == "null" && (raw == "null" || raw == "None")) return nullptr;
    if (t == "boolean") {
      if (raw == "true" || raw == "True") return true;
      if (raw == "false" || raw == "False") return false;
      continue;
    }
    auto parsed = nlohmann::ordered_json::parse(raw, nullptr, false);
    if (parsed.is_discarded()) continue;
    if ((t == "integer" && parsed.is_number_integer()) || (t == "number" && parsed.is_number()) ||
        (t == "object" && parsed.is_object()) || (t == "array" && parsed.is_array())) {
      return parsed;
    }
  }
  return raw;
}

bool parse_json_call(std::string_view body, const nlohmann::ordered_json& tools, ToolCall& call) {
  auto j = nlohmann::ordered_json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("name") || !j["name"].is_string()) return false;
  call.name = j["name"].get<std::string>();
  if (!tools.empty() && !find_tool(tools, call.name)) return false;
  auto args = j.value("arguments", nlohmann::ordered_json::object());
  if (args.is_string()) args = nlohmann::ordered_json::parse(args.get<std::string>(), nullptr, false);
  if (!args.is_object()) return false;
  call.arguments = std::move(args);
  return true;
}

// Reads "<tag=NAME>" at s[pos] (after whitespace); returns NAME and advances pos.
bool read_open_tag(std::string_view s, size_t& pos, std::string_view tag, std::string& name) {
  while (pos < s.size() && std::string_view(" \t\r\n").find(s[pos]) != std::string_view::npos) ++pos;
  std::string prefix(1, '<');
  prefix += tag;
  prefix += '=';
  if (s.substr(pos, prefix.size()) != prefix) return false;
  size_t close = s.find('>', pos);
  if (close == std::string_view::npos) return false;
  name = std::string(trim(s.substr(pos + prefix.size(), close - pos - prefix.size())));
  pos = close + 1;
  return !name.empty();
}

}  // namespace

void ParsedOutput::append(const ParsedOutput& more) {
  reasoning += more.reasoning;
  content += more.content;
  tool_calls.insert(tool_calls.end(), more.tool_calls.begin(), more.tool_calls.end());
}

bool parse_tool_call(std::string_view body, const nlohmann::ordered_json& tools, ToolCall& call) {
  body = trim(body);
  if (!body.empty() && body.front() == '{') return parse_json_call(body, tools, call);
  size_t pos = 0;
  if (!read_open_tag(body, pos, "function", call.name)) return false;
  const nlohmann::ordered_json* tool = tools.empty() ? nullptr : find_tool(tools, call.name);
  if (!tools.empty() && !tool) return false;
  const nlohmann::ordered_json* properties = nullptr;
  if (tool && tool->contains("parameters") && (*tool)["parameters"].contains("properties")) {
    properties = &(*tool)["parameters"]["properties"];
  }
  call.arguments = nlohmann::ordered_json::object();
  std::string arg;
  while (read_open_tag(body, pos, "parameter", arg)) {
    size_t end = body.find("</parameter>", pos);
    if (end == std::string_view::npos) return false;
    std::string_view value = body.substr(pos, end - pos);
    if (!value.empty() && value.front() == '\n') value.remove_prefix(1);  // the template's own newlines
    if (!value.empty() && value.back() == '\n') value.remove_suffix(1);
    const nlohmann::ordered_json* schema =
        properties && properties->contains(arg) ? &(*properties)[arg] : nullptr;
    call.arguments[arg] = typed_value(std::string(value), schema);
    pos = end + std::string_view("</parameter>").size();
  }
  return trim(body.substr(pos)) == "</function>";
}

OutputParser::OutputParser(OutputParserOptions options)
    : options_(std::move(options)),
      state_(options_.starts_in_reasoning ? State::kReasoning : State::kStart) {}

ParsedOutput OutputParser::push(std::string_view text) {
  ParsedOutput out;
  buffer_ += text;
  step(out, false);
  return out;
}

ParsedOutput OutputParser::finish() {
  ParsedOutput out;
  step(out, true);
  if (state_ == State::kToolCall) {  // never closed: give the text back
    std::string raw(kCallOpen);
    raw += buffer_;
    emit_content(out, raw);
  } else if (state_ == State::kReasoning) {
    out.reasoning += buffer_;
  } else {
    emit_content(out, buffer_);
  }
  out.content += reasoning_newlines_;  // newlines held back at the very end of the answer
  reasoning_newlines_.clear();
  buffer_.clear();
  return out;
}

void OutputParser::emit_reasoning(ParsedOutput& out, std::string_view text, bool final) {
  if (text.empty()) return;
  size_t keep = final ? text.size() : text.find_last_not_of('\n') + 1;
  if (keep > 0) {
    out.reasoning += reasoning_newlines_;
    reasoning_newlines_.clear();
    out.reasoning += text.substr(0, keep);
  }
  reasoning_newlines_ += text.substr(keep);
}

void OutputParser::emit_content(ParsedOutput& out, std::string_view text) {
  if (strip_content_newlines_) {
    size_t b = text.find_first_not_of('\n');
    if (b == std::string_view::npos) return;
    text.remove_prefix(b);
    strip_content_newlines_ = false;
  }
  if (text.empty()) return;
  // Trailing newlines wait: the template puts "\n\n" between the answer and a tool call.
  size_t keep = text.find_last_not_of('\n') + 1;
  if (keep > 0) {
    out.content += reasoning_newlines_;
    reasoning_newlines_.clear();
    out.content += text.substr(0, keep);
  }
  reasoning_newlines_ += text.substr(keep);
}

void OutputParser::step(ParsedOutput& out, bool final) {
  while (true) {
    switch (state_) {
      case State::kStart: {
        size_t b = buffer_.find_first_not_of(" \t\r\n");
        if (b == std::string::npos) {
          if (final) state_ = State::kContent;
          if (final) continue;
          return;
        }
        std::string_view rest = std::string_view(buffer_).substr(b);
        if (rest.substr(0, kThinkOpen.size()) == kThinkOpen) {
          buffer_.erase(0, b + kThinkOpen.size());
          state_ = State::kReasoning;
          continue;
        }
        if (!final && rest.size() < kThinkOpen.size() && kThinkOpen.substr(0, rest.size()) == rest) return;
        state_ = State::kContent;
        continue;
      }
      case State::kReasoning: {
        if (!reasoning_started_) {
          size_t b = buffer_.find_first_not_of('\n');  // "<think>\n" opens with a newline
          buffer_.erase(0, b == std::string::npos ? buffer_.size() : b);
          reasoning_started_ = b != std::string::npos;
        }
        size_t close = buffer_.find(kThinkClose);
        if (close != std::string::npos) {
          emit_reasoning(out, std::string_view(buffer_).substr(0, close), false);
          reasoning_newlines_.clear();  // newlines before </think> belong to the template
          buffer_.erase(0, close + kThinkClose.size());
          state_ = State::kContent;
          strip_content_newlines_ = true;
          continue;
        }
        size_t hold = final ? 0 : partial_tag_suffix(buffer_, kThinkClose);
        emit_reasoning(out, std::string_view(buffer_).substr(0, buffer_.size() - hold), false);
        buffer_.erase(0, buffer_.size() - hold);
        return;
      }
      case State::kContent: {
        size_t open = buffer_.find(kCallOpen);
        if (open != std::string::npos) {
          emit_content(out, std::string_view(buffer_).substr(0, open));
          reasoning_newlines_.clear();
          buffer_.erase(0, open + kCallOpen.size());
          state_ = State::kToolCall;
          continue;
        }
        size_t hold = final ? 0 : partial_tag_suffix(buffer_, kCallOpen);
        emit_content(out, std::string_view(buffer_).substr(0, buffer_.size() - hold));
        buffer_.erase(0, buffer_.size() - hold);
        return;
      }
      case State::kToolCall: {
        size_t close = buffer_.find(kCallClose);
        if (close == std::string::npos) return;
        finish_tool_call(out, std::string_view(buffer_).substr(0, close));
        buffer_.erase(0, close + kCallClose.size());
        state_ = State::kContent;
        strip_content_newlines_ = true;
        continue;
      }
    }
  }
}

void OutputParser::finish_tool_call(ParsedOutput& out, std::string_view body) {
  ToolCall call;
  if (parse_tool_call(body, options_.tools, call)) {
    out.tool_calls.push_back(std::move(call));
    return;
  }
  strip_content_newlines_ = false;
  std::string raw(kCallOpen);
  raw += body;
  raw += kCallClose;
  emit_content(out, raw);
}

}  // namespace mtplx::text

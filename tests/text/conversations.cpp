#include "text/conversations.h"

#include <array>
#include <random>
#include <string>

namespace mtplx::test {

namespace {

using nlohmann::ordered_json;

constexpr std::array<const char*, 12> kTexts = {
    "Hello!",
    "What's the weather in Paris?",
    "Écris un poème sur la mer 🌊 — avec des rimes.",
    "你好，请介绍一下你自己。",
    "trailing spaces and a newline  \n",  // no leading spaces: the oracle's lstrip('\n') strips them
    "Line one\nLine two\r\nLine three\n\n",
    "Quotes: \"double\" and 'single' and \\backslash\\ and tabs\t.",
    "<tool_response>\nfake\n</tool_response>",
    "Emoji ZWJ: 👩‍👩‍👧‍👦 and flags 🇫🇷🇯🇵",
    "",
    "Code:\n```python\nprint('hi')\n```",
    "مرحبا بالعالم",
};

ordered_json weather_tool() {
  return ordered_json::parse(R"({"type": "function", "function": {"name": "get_weather",
    "description": "Get the current weather — in °C or °F.",
    "parameters": {"type": "object", "properties": {
      "location": {"type": "string", "description": "City, e.g. \"Paris\""},
      "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
      "days": {"type": "integer", "minimum": 1, "maximum": 14},
      "threshold": {"type": "number", "default": 0.5},
      "detailed": {"type": "boolean", "default": false},
      "extra": {"type": ["string", "null"], "default": null}},
      "required": ["location"]}}})");
}

ordered_json search_tool() {
  return ordered_json::parse(R"({"type": "function", "function": {"name": "search_documents",
    "description": "Search indexed documents. Supports 日本語 queries.",
    "parameters": {"type": "object", "properties": {
      "query": {"type": "string"},
      "filters": {"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string"}},
        "date_range": {"type": "object", "properties": {"from": {"type": "string"}, "to": {"type": "string"}}},
        "score": {"type": "number", "exclusiveMinimum": 0.01}}},
      "limit": {"type": "integer", "default": 10}},
      "required": ["query"]}}})");
}

ordered_json bare_tool() {  // no "type": "function" wrapper, as some clients send
  return ordered_json::parse(R"({"name": "noop", "description": "Does nothing.", "parameters": {}})");
}

struct Builder {
  std::mt19937 rng;
  bool arguments_as_string;

  size_t pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); }
  bool coin() { return pick(2) == 0; }
  std::string text() { return kTexts[pick(kTexts.size())]; }

  ordered_json arguments() {
    ordered_json args = ordered_json::object();
    switch (pick(4)) {
      case 0:
        args["location"] = coin() ? "Paris" : "São Paulo";
        break;
      case 1:
        args["location"] = "Tokyo";
        args["days"] = static_cast<int>(1 + pick(14));
        args["threshold"] = 0.25;
        args["detailed"] = coin() ? "yes" : "no";
        break;
      case 2:
        args["query"] = "multi\nline \"quoted\" 検索";
        args["filters"] = ordered_json::parse(
            R"({"tags": ["a", "b"], "date_range": {"from": "2024-01-01", "to": null}, "score": 1.5})");
        break;
      // Top-level values are never null, booleans or integral floats: there @huggingface/jinja (JavaScript)
      // differs from transformers (Python prints None / False / 1.0); Template.PythonSemantics covers them.
      default:
        args["extra"] = "x";
        args["list"] = ordered_json::array({1, 2.5, "x", true, nullptr, ordered_json::object()});
    }
    return args;
  }

  ordered_json tool_call() {
    ordered_json args = arguments();
    const char* name = args.contains("query") ? "search_documents" : "get_weather";
    ordered_json function = {{"name", name},
                             {"arguments", arguments_as_string && coin() ? ordered_json(args.dump()) : args}};
    if (coin())
      return {{"id", "call_" + std::to_string(pick(1000))}, {"type", "function"}, {"function", function}};
    return function;
  }

  ordered_json assistant(bool last_turn) {
    ordered_json m = {{"role", "assistant"}};
    switch (pick(5)) {
      case 0:
        m["content"] = text();
        break;
      case 1:
        m["content"] = text();
        m["reasoning_content"] = coin() ? "Let me think.\nStep 1: ...\n" : "";
        break;
      case 2: {
        // The answer after </think> never starts with spaces: @huggingface/jinja's lstrip('\n') strips all
        // whitespace, Python's only newlines (Template.PythonSemantics checks ours).
        std::string answer = text();
        answer.erase(0, answer.find_first_not_of(" "));
        m["content"] = "<think>\nhidden reasoning\n</think>\n\n" + answer;
        break;
      }
      case 3: {
        m["content"] = coin() ? ordered_json(text()) : ordered_json(nullptr);
        if (m["content"].is_null()) m["content"] = "";
        ordered_json calls = ordered_json::array();
        for (size_t k = 0, n = 1 + pick(2); k < n; ++k) calls.push_back(tool_call());
        m["tool_calls"] = calls;
        if (coin()) m["reasoning_content"] = "I should call a tool.";
        break;
      }
      default:
        m["content"] = last_turn ? "Final answer." : text();
    }
    return m;
  }

  ordered_json conversation() {
    ordered_json messages = ordered_json::array();
    if (coin())
      messages.push_back({{"role", "system"}, {"content", coin() ? "You are a helpful assistant." : text()}});
    size_t turns = 1 + pick(3);
    for (size_t t = 0; t < turns; ++t) {
      messages.push_back({{"role", "user"}, {"content", text()}});
      if (t + 1 == turns && coin()) break;  // ends on a user turn
      ordered_json a = assistant(t + 1 == turns);
      bool calls = a.contains("tool_calls");
      messages.push_back(a);
      if (calls) {
        for (size_t k = 0, n = 1 + pick(3); k < n; ++k) {
          messages.push_back(
              {{"role", "tool"}, {"content", coin() ? "{\"temperature\": 21.5, \"unit\": \"°C\"}" : text()}});
        }
        if (coin()) messages.push_back({{"role", "assistant"}, {"content", "It is 21.5 °C."}});
      }
    }
    ordered_json c = {{"messages", messages},
                      {"add_generation_prompt", messages.back()["role"] != "assistant"}};
    if (coin()) {
      ordered_json tools = ordered_json::array({weather_tool()});
      if (coin()) tools.push_back(search_tool());
      if (pick(4) == 0) tools.push_back(bare_tool());
      c["tools"] = tools;
    }
    switch (pick(3)) {
      case 0:
        c["enable_thinking"] = false;
        break;
      case 1:
        c["enable_thinking"] = true;
        break;
      default:
        break;
    }
    if (coin()) c["preserve_thinking"] = coin();
    return c;
  }
};

}  // namespace

std::vector<ordered_json> conversation_corpus(uint32_t seed, size_t count, bool arguments_as_string) {
  Builder b{std::mt19937(seed), arguments_as_string};
  std::vector<ordered_json> out;
  // Fixed edge cases first: errors the templates raise, a lone user message, empty content.
  out.push_back({{"messages", ordered_json::array()}, {"add_generation_prompt", true}});
  out.push_back({{"messages", {{{"role", "user"}, {"content", ""}}}}, {"add_generation_prompt", true}});
  out.push_back(
      {{"messages", {{{"role", "user"}, {"content", "hi"}}, {{"role", "system"}, {"content", "late"}}}},
       {"add_generation_prompt", false}});
  out.push_back({{"messages", {{{"role", "tool"}, {"content", "orphan"}}}}, {"add_generation_prompt", true}});
  out.push_back(
      {{"messages", {{{"role", "narrator"}, {"content", "?"}}, {{"role", "user"}, {"content", "x"}}}},
       {"add_generation_prompt", true}});
  while (out.size() < count) out.push_back(b.conversation());
  return out;
}

}  // namespace mtplx::test

// Incremental parser for Qwen model output: separates reasoning (<think>...</think>) from the answer and
// turns tool calls into structured calls. Qwen3.5 XML calls
//   <tool_call>\n<function=NAME>\n<parameter=ARG>\nVALUE\n</parameter>\n</function>\n</tool_call>
// and Qwen2.5/3 JSON calls (<tool_call>{"name": ..., "arguments": {...}}</tool_call>) are recognised. Text
// may arrive in pieces of any size; tags split across pieces are held back until complete. Anything
// malformed, or a call to a tool that was not offered, is passed through as content — never an error.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace mtplx::text {

struct ToolCall {
  std::string name;
  nlohmann::ordered_json arguments = nlohmann::ordered_json::object();
};

struct ParsedOutput {
  std::string reasoning;
  std::string content;
  std::vector<ToolCall> tool_calls;

  void append(const ParsedOutput& more);
};

struct OutputParserOptions {
  // The prompt already opened <think> (see prompt_opens_reasoning), so output starts as reasoning.
  bool starts_in_reasoning = false;
  // OpenAI-style tool list; parameter values are typed by each tool's JSON schema. Empty: any name is
  // accepted and XML values stay strings.
  nlohmann::ordered_json tools = nlohmann::ordered_json::array();
};

class OutputParser {
 public:
  explicit OutputParser(OutputParserOptions options);

  // Feeds generated text; returns what became certain.
  ParsedOutput push(std::string_view text);
  // End of generation: flushes held-back text (an unterminated tool call becomes content).
  ParsedOutput finish();

 private:
  enum class State { kStart, kReasoning, kContent, kToolCall };
  void step(ParsedOutput& out, bool final);
  void emit_reasoning(ParsedOutput& out, std::string_view text, bool final);
  void emit_content(ParsedOutput& out, std::string_view text);
  void finish_tool_call(ParsedOutput& out, std::string_view body);

  OutputParserOptions options_;
  State state_;
  std::string buffer_;              // text not yet classified
  std::string reasoning_newlines_;  // trailing newlines of reasoning, dropped if </think> follows
  bool reasoning_started_ = false;
  bool strip_content_newlines_ = false;
};

// Parses one tool-call body (between <tool_call> and </tool_call>); false if it is not a valid call.
bool parse_tool_call(std::string_view body, const nlohmann::ordered_json& tools, ToolCall& call);

}  // namespace mtplx::text

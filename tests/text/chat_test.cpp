// Chat layer: prompt + tokens from a checkpoint folder against @huggingface/jinja + HF tokenizers, and the
// streaming output parser / stop strings against the structured messages the template was rendered from.
#include <gtest/gtest.h>

#include <random>

#include "base/error.h"
#include "text/chat.h"
#include "text/conversations.h"
#include "text/oracle.h"
#include "text/output_parser.h"
#include "text/stop_strings.h"

namespace mtplx::text {
namespace {

using nlohmann::ordered_json;

std::filesystem::path make_checkpoint() {
  auto dir = test::scratch_dir("checkpoint");
  auto models = test::qwen3_tokenizer_json().parent_path();
  std::filesystem::copy_file(models / "tokenizer.json", dir / "tokenizer.json");
  std::filesystem::copy_file(models / "tokenizer_config.json", dir / "tokenizer_config.json");
  std::filesystem::copy_file(test::source_dir() / "tests/text/data/templates/qwen3.5.jinja",
                             dir / "chat_template.jinja");
  return dir;
}

std::string template_text() {
  return test::read_text(test::source_dir() / "tests/text/data/templates/qwen3.5.jinja");
}

// Renders cases with the oracle; the special-token variables transformers adds are included.
std::vector<std::string> oracle_render(const std::vector<ordered_json>& cases) {
  std::vector<ordered_json> with_tokens;
  for (auto c : cases) {
    c["eos_token"] = "<|im_end|>";
    c["pad_token"] = "<|endoftext|>";
    with_tokens.push_back(c);
  }
  ordered_json request = {{"template", template_text()}, {"cases", with_tokens}};
  auto results = test::run_oracle("render.mjs", request.dump());
  std::vector<std::string> out;
  for (const auto& r : results) out.push_back(r.value("text", std::string("<error>")));
  return out;
}

TEST(ChatOracle, PromptAndTokensFromCheckpointMatchHuggingFace) {
  auto dir = make_checkpoint();
  ChatModel model = ChatModel::load(dir);
  auto cases = test::conversation_corpus(21, 60, false);
  cases.erase(cases.begin(), cases.begin() + 5);  // the error cases are covered by the template tests
  auto expected = oracle_render(cases);
  std::vector<std::string> prompts;
  for (size_t i = 0; i < cases.size(); ++i) {
    ChatOptions options;
    options.add_generation_prompt = cases[i]["add_generation_prompt"];
    if (cases[i].contains("enable_thinking"))
      options.enable_thinking = cases[i]["enable_thinking"].get<bool>();
    if (cases[i].contains("preserve_thinking"))
      options.preserve_thinking = cases[i]["preserve_thinking"].get<bool>();
    ordered_json tools = cases[i].contains("tools") ? cases[i]["tools"] : ordered_json();
    if (expected[i] == "<error>") {  // the template raises (e.g. no real user query); so must we
      EXPECT_THROW(model.render(cases[i]["messages"], tools, options), Error);
      continue;
    }
    std::string prompt = model.render(cases[i]["messages"], tools, options);
    ASSERT_EQ(prompt, expected[i]) << cases[i].dump();
    prompts.push_back(prompt);
  }
  auto ids = test::run_oracle("tokenize.mjs",
                              {{"tokenizer", (dir / "tokenizer.json").string()}, {"texts", prompts}});
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(model.tokenizer().encode(prompts[i]), ids["ids"][i].get<std::vector<TokenId>>());
  }
  EXPECT_EQ(model.stop_token_ids(), (std::vector<TokenId>{151645, 151643}));
}

ordered_json tools() {
  return ordered_json::parse(R"([{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}, "days": {"type": "integer"},
    "threshold": {"type": "number"}, "detailed": {"type": "boolean"}, "note": {"type": ["null", "string"]},
    "filters": {"type": "object"}, "tags": {"type": "array"}}}}},
    {"type": "function", "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}}}])");
}

std::vector<ordered_json> assistant_turns() {
  std::vector<ordered_json> turns;
  std::mt19937 rng(5);
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  const char* reasonings[] = {"", "Short thought.", "Multi\nline\n\nreasoning with <tags> & ünïcode 🙂"};
  const char* contents[] = {"", "Answer.", "Line 1\n\nLine 2 with `code` and 中文", "Text < not a tag"};
  for (int i = 0; i < 120; ++i) {
    ordered_json m = {
        {"role", "assistant"}, {"reasoning_content", reasonings[pick(3)]}, {"content", contents[pick(4)]}};
    size_t calls = pick(3);
    if (calls > 0) {
      ordered_json list = ordered_json::array();
      for (size_t k = 0; k < calls; ++k) {
        ordered_json args = ordered_json::object();
        if (pick(2)) args["location"] = pick(2) ? "Paris" : "multi\nline value";
        if (pick(2)) args["days"] = static_cast<int>(pick(30));
        if (pick(2)) args["threshold"] = 0.75;
        if (pick(2)) args["detailed"] = pick(2) == 0;
        if (pick(3) == 0) args["filters"] = ordered_json::parse(R"({"a": [1, 2], "b": {"c": "d"}})");
        if (pick(3) == 0) args["tags"] = ordered_json::array({"x", "y"});
        list.push_back(
            {{"type", "function"},
             {"function", {{"name", args.empty() ? "ping" : "get_weather"}, {"arguments", args}}}});
      }
      m["tool_calls"] = list;
    }
    turns.push_back(m);
  }
  return turns;
}

// Feeds `text` in random pieces (including single bytes) and collects the parsed result.
ParsedOutput parse_in_pieces(const std::string& text, bool starts_in_reasoning, std::mt19937& rng) {
  OutputParser parser({starts_in_reasoning, tools()});
  ParsedOutput all;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t n = std::uniform_int_distribution<size_t>(1, 12)(rng);
    all.append(parser.push(std::string_view(text).substr(pos, n)));
    pos += n;
  }
  all.append(parser.finish());
  return all;
}

std::string trimmed(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

TEST(OutputParser, RecoversWhatTheTemplateRenderedFromStreamedPieces) {
  auto turns = assistant_turns();
  ordered_json user = {{"role", "user"}, {"content", "hi"}};
  std::vector<ordered_json> cases = {
      {{"messages", ordered_json::array({user})}, {"tools", tools()}, {"add_generation_prompt", true}}};
  for (const auto& t : turns) {
    cases.push_back(
        {{"messages", ordered_json::array({user, t})}, {"tools", tools()}, {"add_generation_prompt", false}});
  }
  auto rendered = oracle_render(cases);
  const std::string& prompt = rendered[0];
  ASSERT_TRUE(prompt_opens_reasoning(prompt));
  std::mt19937 rng(9);
  for (size_t i = 0; i < turns.size(); ++i) {
    const std::string& full = rendered[i + 1];
    ASSERT_EQ(full.substr(0, prompt.size()), prompt);
    std::string generated = full.substr(prompt.size());
    generated = generated.substr(0, generated.rfind("<|im_end|>"));
    ParsedOutput parsed = parse_in_pieces(generated, true, rng);
    const auto& turn = turns[i];
    EXPECT_EQ(parsed.reasoning, trimmed(turn["reasoning_content"])) << generated;
    EXPECT_EQ(parsed.content, trimmed(turn["content"])) << generated;
    size_t calls = turn.contains("tool_calls") ? turn["tool_calls"].size() : 0;
    ASSERT_EQ(parsed.tool_calls.size(), calls) << generated;
    for (size_t k = 0; k < calls; ++k) {
      EXPECT_EQ(parsed.tool_calls[k].name, turn["tool_calls"][k]["function"]["name"]);
      EXPECT_EQ(parsed.tool_calls[k].arguments, turn["tool_calls"][k]["function"]["arguments"]) << generated;
    }
  }
}

TEST(OutputParser, MalformedOrUnknownCallsSurfaceAsText) {
  std::mt19937 rng(3);
  auto parse = [&](const std::string& s) { return parse_in_pieces(s, false, rng); };
  auto unknown = parse("a<tool_call>\n<function=nope>\n</function>\n</tool_call>b");
  EXPECT_TRUE(unknown.tool_calls.empty());
  EXPECT_EQ(unknown.content, "a<tool_call>\n<function=nope>\n</function>\n</tool_call>b");
  auto open = parse("text <tool_call>\n<function=ping>\n");
  EXPECT_EQ(open.content, "text <tool_call>\n<function=ping>\n");
  auto json_call = parse("<tool_call>\n{\"name\": \"ping\", \"arguments\": {}}\n</tool_call>");
  ASSERT_EQ(json_call.tool_calls.size(), 1u);
  EXPECT_EQ(json_call.tool_calls[0].name, "ping");
  auto think = parse("<think>\nhmm\n</think>\n\nok");
  EXPECT_EQ(think.reasoning, "hmm");
  EXPECT_EQ(think.content, "ok");
  // Garbage made of tag fragments never throws and loses no text outside recognised structure.
  const char* pieces[] = {
      "<", ">", "tool_call", "</", "think", "<function=", "<parameter=", "\n", "x", "=", "/"};
  for (int i = 0; i < 300; ++i) {
    std::string s;
    for (int k = 0; k < 20; ++k) s += pieces[rng() % 11];
    EXPECT_NO_THROW(parse(s));
  }
}

TEST(StopStrings, MatchAcrossPieceBoundaries) {
  std::mt19937 rng(4);
  const std::vector<std::string> stops = {"<|user|>", "STOP", "\n\n\n"};
  const char* alphabet[] = {"a", "S", "T", "O", "P", "<", "|", "user", ">", "\n", "é"};
  for (int i = 0; i < 500; ++i) {
    std::string text;
    for (int k = 0; k < 30; ++k) text += alphabet[rng() % 11];
    size_t first = std::string::npos;
    for (const auto& s : stops) first = std::min(first, text.find(s));
    StopStringMatcher matcher(stops);
    std::string out;
    bool stopped = false;
    for (size_t pos = 0; pos < text.size() && !stopped;) {
      size_t n = 1 + rng() % 5;
      auto r = matcher.push(std::string_view(text).substr(pos, n));
      out += r.text;
      stopped = r.stopped;
      pos += n;
    }
    if (!stopped) out += matcher.flush();
    EXPECT_EQ(stopped, first != std::string::npos) << text;
    EXPECT_EQ(out, text.substr(0, first)) << text;
  }
}

}  // namespace
}  // namespace mtplx::text

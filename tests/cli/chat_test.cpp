// mtplx chat with a piped conversation on a greedy fixture. The prompts it shows (--show-prompt) are
// compared with an independent path: `mtplx template` (checked against @huggingface/jinja in tests/text)
// rendering the messages the test builds itself, with the replies produced by `mtplx generate` for the
// same messages (greedy, so the same reply).
#include <gtest/gtest.h>

#include <regex>
#include <sstream>

#include "support/command.h"

namespace mtplx::testing {
namespace {

using nlohmann::ordered_json;

const std::string kFixture = "mtplx-q8";
const std::vector<std::string> kSampling = {"--temp",      "0", "--draft-temp", "0",
                                            "--mtp-depth", "2", "--max-tokens", "10"};

std::vector<std::string> model_args(std::vector<std::string> args) {
  args.insert(args.end(), {"--model", (fixtures_dir() / kFixture).string()});
  return args;
}

// The prompts a chat printed with --show-prompt, in order.
std::vector<std::string> shown_prompts(const std::string& err, std::vector<size_t>& token_counts) {
  std::vector<std::string> prompts;
  const std::regex header(R"(--- prompt \((\d+) tokens\) ---\n)");
  const std::string footer = "\n--- end of prompt ---\n";
  for (std::sregex_iterator it(err.begin(), err.end(), header), end; it != end; ++it) {
    const size_t begin = static_cast<size_t>(it->position() + it->length());
    const size_t stop = err.find(footer, begin);
    if (stop == std::string::npos) break;
    prompts.push_back(err.substr(begin, stop - begin));
    token_counts.push_back(std::stoul((*it)[1].str()));
  }
  return prompts;
}

std::string template_of(const TempDir& dir, const ordered_json& messages, bool think) {
  write_file(dir / "messages.json", messages.dump());
  auto args = model_args({"template", "--messages", (dir / "messages.json").string()});
  if (!think) args.push_back("--no-think");
  const auto result = run_mtplx(args);
  EXPECT_EQ(result.status, 0) << result.err;
  return result.out;
}

// The greedy reply to `messages`, from `mtplx generate`.
std::string reply_of(const TempDir& dir, const ordered_json& messages, bool think) {
  write_file(dir / "messages.json", messages.dump());
  auto args = model_args({"generate", "--messages", (dir / "messages.json").string(), "--json"});
  args.insert(args.end(), kSampling.begin(), kSampling.end());
  if (!think) args.push_back("--no-think");
  return run_json_lines(args).at(0)["text"].get<std::string>();
}

size_t token_count(const TempDir& dir, const std::string& text) {
  write_file(dir / "prompt.txt", text);
  return run_json_lines(model_args({"tokenize", "--file", (dir / "prompt.txt").string()})).at(0).size();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

const std::regex kFooter(R"(\[\d+ tokens, [0-9.]+ tok/s \(prompt \d+ tokens, [0-9.]+ tok/s\), )"
                         R"(MTP acceptance [0-9.]+/[0-9.]+, [0-9.]+ tokens/cycle, (stop|length)\])");

TEST(Chat, PipedConversationKeepsTheHistoryInThePrompt) {
  TempDir dir;
  const std::string input =
      "hello there\n/temp abc\n/depth -1\n/think maybe\n/bogus\n\nsecond question\n/stats\n/quit\nnever "
      "sent\n";
  auto args = model_args({"chat", "--no-think", "--show-prompt"});
  args.insert(args.end(), kSampling.begin(), kSampling.end());
  const auto chat = run_mtplx(args, input);
  ASSERT_EQ(chat.status, 0) << chat.err;

  // The expected conversation, built from independent pieces.
  ordered_json messages = ordered_json::array({{{"role", "user"}, {"content", "hello there"}}});
  const std::string prompt1 = template_of(dir, messages, false);
  const std::string reply1 = reply_of(dir, messages, false);
  ASSERT_EQ(reply1.find("<think>"), std::string::npos) << "the fixture's reply should hold no reasoning";
  ASSERT_EQ(reply1.find("</think>"), std::string::npos);
  messages.push_back({{"role", "assistant"}, {"content", reply1}});
  messages.push_back({{"role", "user"}, {"content", "second question"}});
  const std::string prompt2 = template_of(dir, messages, false);

  std::vector<size_t> counts;
  const auto prompts = shown_prompts(chat.err, counts);
  ASSERT_EQ(prompts.size(), 2u) << chat.err;
  EXPECT_EQ(prompts[0], prompt1);
  EXPECT_EQ(prompts[1], prompt2);
  EXPECT_EQ(counts[0], token_count(dir, prompt1));
  EXPECT_EQ(counts[1], token_count(dir, prompt2));
  EXPECT_GT(counts[1], counts[0]);

  // Transcript: echoed input, one answer and footer per turn, a message for each bad command.
  const auto lines = lines_of(chat.out);
  std::vector<std::string> kinds;
  for (const auto& line : lines) {
    if (std::regex_match(line, kFooter))
      kinds.push_back("footer");
    else if (line.rfind("you: ", 0) == 0)
      kinds.push_back(line);
    else if (line.rfind("assistant: ", 0) == 0)
      kinds.push_back("assistant");
    else if (line.rfind("* ", 0) == 0)
      kinds.push_back(line.substr(0, line.find(' ', 2)));
    else
      kinds.push_back(std::string("other: ") + line);
  }
  const std::vector<std::string> expected = {
      "you: hello there", "assistant",      "footer",      "you: /temp abc",
      "* /temp",          "you: /depth -1", "* /depth",    "you: /think maybe",
      "* /think",         "you: /bogus",    "* unknown",   "you: second question",
      "assistant",        "footer",         "you: /stats", "* 2",
      "you: /quit"};
  // A reply may span several lines; those continue the "assistant" entry.
  std::vector<std::string> merged;
  for (const auto& kind : kinds)
    if (!(kind.rfind("other: ", 0) == 0 && !merged.empty() && merged.back() == "assistant"))
      merged.push_back(kind);
  EXPECT_EQ(merged, expected) << chat.out;
  EXPECT_NE(chat.out.find(std::string("assistant: ") + reply1.substr(0, reply1.find('\n'))),
            std::string::npos)
      << chat.out;
  EXPECT_EQ(chat.out.find("never sent"), std::string::npos);
  EXPECT_EQ(chat.out.find('\x1b'), std::string::npos) << "no ANSI codes when stdout is not a terminal";
}

// With thinking on, the reply is reasoning: shown as "think: " lines, kept in the history as
// reasoning_content, and left to the template to drop from later prompts.
TEST(Chat, ReasoningIsShownApartAndKeptPerTheTemplate) {
  TempDir dir;
  auto args = model_args({"chat", "--show-prompt"});
  args.insert(args.end(), kSampling.begin(), kSampling.end());
  const auto chat = run_mtplx(args, "first\n/think off\n/system Be brief.\nsecond\n");
  ASSERT_EQ(chat.status, 0) << chat.err;

  ordered_json messages = ordered_json::array({{{"role", "user"}, {"content", "first"}}});
  const std::string reasoning = reply_of(dir, messages, true);
  ASSERT_EQ(reasoning.find("</think>"), std::string::npos) << "the fixture's reply should stay in reasoning";
  ordered_json second =
      ordered_json::array({{{"role", "system"}, {"content", "Be brief."}},
                           messages[0],
                           {{"role", "assistant"}, {"content", ""}, {"reasoning_content", reasoning}},
                           {{"role", "user"}, {"content", "second"}}});
  std::vector<size_t> counts;
  const auto prompts = shown_prompts(chat.err, counts);
  ASSERT_EQ(prompts.size(), 2u) << chat.err;
  EXPECT_EQ(prompts[0], template_of(dir, messages, true));
  EXPECT_EQ(prompts[1], template_of(dir, second, false));

  const auto first_line = reasoning.substr(0, reasoning.find('\n'));
  EXPECT_NE(chat.out.find(std::string("think: ") + first_line), std::string::npos) << chat.out;
}

TEST(Chat, EndOfInputQuitsAndBadModelIsAnError) {
  auto args = model_args({"chat"});
  args.insert(args.end(), kSampling.begin(), kSampling.end());
  const auto chat = run_mtplx(args, "/help\n");
  EXPECT_EQ(chat.status, 0) << chat.err;
  EXPECT_NE(chat.out.find("/depth K"), std::string::npos) << chat.out;
  const auto bad = run_mtplx({"chat", "--model", "/nonexistent"}, "hi\n");
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("mtplx: error:"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace mtplx::testing

// mtplx chat: interactive multi-turn chat. Reads one user message per line from stdin (a terminal or a
// pipe), builds each turn's prompt with the checkpoint's chat template from the whole conversation, and
// streams the reply. Reasoning is shown dimmed on a terminal and as "think: " lines otherwise; a footer
// line after each reply gives the speed and the MTP acceptance.
//
// Every turn prefills the whole conversation again: the generator starts from a fresh state per call, and
// the template may rewrite earlier turns anyway (Qwen3.5 drops the reasoning of past turns).
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

#include "base/error.h"
#include "commands.h"
#include "generation_options.h"
#include "reply_view.h"
#include "text/chat.h"
#include "text/generated_text.h"

namespace mtplx::cli {
namespace {

using nlohmann::ordered_json;

struct ChatFlags {
  GenerationFlags common;
  std::string system;
  bool no_think = false;
  bool show_prompt = false;
};

constexpr std::string_view kHelp =
    "/help           this list\n"
    "/temp X         sampling temperature (0 = greedy)\n"
    "/depth K        MTP drafts per cycle (0 = autoregressive)\n"
    "/think on|off   let the model reason before answering\n"
    "/system TEXT    set the system message (no TEXT: remove it)\n"
    "/reset          forget the conversation\n"
    "/stats          totals of this session\n"
    "/quit           leave (end of input does too)\n";

std::string_view trim(std::string_view s) {
  const auto begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(" \t\r\n") - begin + 1);
}

// What a footer shows, for one reply or for the session so far.
struct Summary {
  int64_t tokens = 0, prompt_tokens = 0;
  int64_t after_first = 0;  // tokens after each reply's first: the decode phase (speed, tokens per cycle)
  double prefill_seconds = 0, decode_seconds = 0;
  int64_t cycles = 0;
  std::vector<int64_t> drafted_at, accepted_at;  // per draft position; longest depth used so far

  void add(const GenerationStats& s) {
    tokens += s.generated_tokens;
    prompt_tokens += s.prompt_tokens;
    after_first += std::max<int64_t>(s.generated_tokens - 1, 0);
    prefill_seconds += s.prefill_seconds;
    decode_seconds += s.decode_seconds;
    cycles += s.cycles;
    if (drafted_at.size() < s.drafted_at.size()) {
      drafted_at.resize(s.drafted_at.size(), 0);
      accepted_at.resize(s.drafted_at.size(), 0);
    }
    for (size_t i = 0; i < s.drafted_at.size(); ++i) {
      drafted_at[i] += s.drafted_at[i];
      accepted_at[i] += s.accepted_at[i];
    }
  }

  std::string describe() const {
    auto rate = [](double count, double seconds) { return seconds > 0 ? count / seconds : 0.0; };
    char buffer[160];
    std::snprintf(buffer, sizeof buffer, "%lld tokens, %.1f tok/s (prompt %lld tokens, %.1f tok/s)",
                  static_cast<long long>(tokens), rate(static_cast<double>(after_first), decode_seconds),
                  static_cast<long long>(prompt_tokens),
                  rate(static_cast<double>(prompt_tokens), prefill_seconds));
    std::string out = buffer;
    if (drafted_at.empty()) return out + ", autoregressive";
    out += ", MTP acceptance";
    for (size_t i = 0; i < drafted_at.size(); ++i) {
      std::snprintf(buffer, sizeof buffer, "%s%.2f", i ? "/" : " ",
                    drafted_at[i] > 0 ? static_cast<double>(accepted_at[i]) / drafted_at[i] : 0.0);
      out += buffer;
    }
    std::snprintf(buffer, sizeof buffer, ", %.2f tokens/cycle",
                  cycles > 0 ? static_cast<double>(after_first) / cycles : 0.0);
    return out + buffer;
  }
};

class ChatSession {
 public:
  explicit ChatSession(const ChatFlags& flags)
      : flags_(flags),
        loaded_(flags.common),
        text_(text::ChatModel::load(flags.common.model_dir)),
        generator_(loaded_.model, loaded_.draft_head.get()),
        config_(loaded_.config),
        system_(flags.system),
        style_(terminal_style(stdout, ReplyStyle::kLabeled)),
        terminal_in_(isatty(fileno(stdin)) != 0) {
    require(text_.has_chat_template(), "the checkpoint has no chat template", flags.common.model_dir,
            "add chat_template.jinja (or chat_template in tokenizer_config.json), or use `mtplx generate`");
    add_stop_token_ids(config_, text_);
    if (flags.no_think) options_.enable_thinking = false;
  }

  void run() {
    if (terminal_in_) std::cout << "mtplx chat: /help lists the commands, /quit or Ctrl-D leaves.\n";
    std::string line;
    while (true) {
      if (terminal_in_) std::cout << "> " << std::flush;
      if (!std::getline(std::cin, line)) break;
      const std::string_view input = trim(line);
      if (input.empty()) continue;
      if (!terminal_in_) std::cout << "you: " << input << "\n";
      if (input.front() == '/') {
        if (!command(input)) break;
        continue;
      }
      turn(std::string(input));
    }
    if (terminal_in_) std::cout << "\n";
  }

 private:
  // Runs a /command; false means quit. Bad input is reported and the session goes on.
  bool command(std::string_view input) {
    const auto space = input.find(' ');
    const std::string_view name = input.substr(0, space);
    const std::string_view arg =
        space == std::string_view::npos ? std::string_view() : trim(input.substr(space));
    if (name == "/quit" || name == "/exit") return false;
    if (name == "/help") {
      std::cout << kHelp;
    } else if (name == "/temp") {
      float value = 0;
      const auto [end, error] = std::from_chars(arg.data(), arg.data() + arg.size(), value);
      if (arg.empty() || error != std::errc() || end != arg.data() + arg.size() || !(value >= 0)) {
        note("/temp needs a number >= 0, e.g. /temp 0.7");
      } else {
        GenerationConfig next = config_;
        next.target.temperature = value;
        apply(next, "temperature " + std::string(arg));
      }
    } else if (name == "/depth") {
      int value = 0;
      const auto [end, error] = std::from_chars(arg.data(), arg.data() + arg.size(), value);
      if (arg.empty() || error != std::errc() || end != arg.data() + arg.size() || value < 0) {
        note("/depth needs a whole number >= 0, e.g. /depth 2");
      } else if (value > 0 && !loaded_.draft_head) {
        note("this checkpoint has no MTP head: only /depth 0 is possible");
      } else {
        GenerationConfig next = config_;
        next.mtp_depth = value;
        apply(next, "MTP depth " + std::to_string(value));
      }
    } else if (name == "/think") {
      if (arg == "on" || arg == "off") {
        options_.enable_thinking = arg == "on";
        note(std::string("thinking ") + std::string(arg));
      } else {
        note("/think takes on or off");
      }
    } else if (name == "/system") {
      system_ = arg;
      note(system_.empty() ? "system message removed" : "system message set");
    } else if (name == "/reset") {
      conversation_ = ordered_json::array();
      note("conversation cleared");
    } else if (name == "/stats") {
      note(str(turns_, turns_ == 1 ? " reply: " : " replies: ", totals_.describe()));
    } else {
      note(str("unknown command ", name, "; /help lists the commands"));
    }
    return true;
  }

  void apply(const GenerationConfig& next, const std::string& what) {
    try {
      next.validate();
    } catch (const Error& e) {
      note(e.what());
      return;
    }
    config_ = next;
    note(what);
  }

  void note(const std::string& message) { std::cout << "* " << message << "\n" << std::flush; }

  ordered_json prompt_messages(const std::string& user) const {
    ordered_json messages = ordered_json::array();
    if (!system_.empty()) messages.push_back({{"role", "system"}, {"content", system_}});
    for (const auto& m : conversation_) messages.push_back(m);
    messages.push_back({{"role", "user"}, {"content", user}});
    return messages;
  }

  void turn(const std::string& user) {
    GenerationResult result;
    text::ParsedOutput reply;
    try {
      const std::string prompt_text = text_.render(prompt_messages(user), nullptr, options_);
      const auto prompt = text_.tokenizer().encode(prompt_text);
      if (flags_.show_prompt)
        std::cerr << "--- prompt (" << prompt.size() << " tokens) ---\n"
                  << prompt_text << "\n--- end of prompt ---\n"
                  << std::flush;
      text::GeneratedText out(text_.tokenizer(), flags_.common.stop);
      ReplyView view(std::cout, style_, {.starts_in_reasoning = text::prompt_opens_reasoning(prompt_text)});
      const TokenSink sink = [&](int32_t token) {
        view.push(out.push(token));
        return !out.stopped();
      };
      result = generator_.generate(prompt, config_, sink);
      view.push(out.finish());
      reply = view.finish();
    } catch (const Error& e) {
      // A turn that cannot run (say, a conversation grown past the context) leaves the history unchanged.
      std::cout << std::flush;
      std::cerr << "mtplx: error: " << e.what() << "\n";
      return;
    }
    conversation_.push_back({{"role", "user"}, {"content", user}});
    ordered_json assistant = {{"role", "assistant"}, {"content", reply.content}};
    // The template decides which past reasoning it keeps (Qwen3.5: none before the last user turn).
    if (!reply.reasoning.empty()) assistant["reasoning_content"] = reply.reasoning;
    if (!reply.tool_calls.empty()) {
      assistant["tool_calls"] = ordered_json::array();
      for (const auto& call : reply.tool_calls)
        assistant["tool_calls"].push_back(
            {{"type", "function"}, {"function", {{"name", call.name}, {"arguments", call.arguments}}}});
    }
    conversation_.push_back(std::move(assistant));
    ++turns_;
    totals_.add(result.stats);
    Summary this_turn;
    this_turn.add(result.stats);
    const std::string footer = str("[", this_turn.describe(), ", ", finish_reason_name(result.finish), "]");
    if (style_ == ReplyStyle::kDim)
      std::cout << "\x1b[2m" << footer << "\x1b[0m\n";
    else
      std::cout << footer << "\n";
    std::cout << std::flush;
  }

  const ChatFlags& flags_;
  LoadedModel loaded_;
  text::ChatModel text_;
  Generator generator_;
  GenerationConfig config_;
  std::string system_;
  text::ChatOptions options_;
  ReplyStyle style_;
  bool terminal_in_;
  ordered_json conversation_ = ordered_json::array();  // user and assistant messages, no system
  int64_t turns_ = 0;
  Summary totals_;
};

}  // namespace

void add_chat_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("chat", "Interactive multi-turn chat on stdin/stdout");
  auto flags = std::make_shared<ChatFlags>();
  flags->common.add_to(*cmd);
  cmd->add_option("--system", flags->system, "System message");
  cmd->add_flag("--no-think", flags->no_think, "Start with thinking off (/think on turns it back on)");
  cmd->add_flag("--show-prompt", flags->show_prompt,
                "Print each turn's prompt and its token count on stderr");
  cmd->callback([flags] {
    ChatSession session(*flags);
    session.run();
  });
}

}  // namespace mtplx::cli

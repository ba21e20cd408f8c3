// mtplx generate: one-shot generation from a prompt, chat messages or token ids, streamed as text or
// reported as JSON with speed and acceptance statistics.
//
// --stop: the text ends right before the first stop string, in AR and MTP mode alike. In --json output
// "text" is that text, "stop" the matched string, and "ids" the tokens that carry the text: up to and
// including the token holding its last byte (text/generated_text.h), so a token that straddles the start
// of the stop string is kept. stats.generated_tokens still counts every generated token.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>

#include "base/error.h"
#include "commands.h"
#include "generation_options.h"
#include "reply_view.h"
#include "text/chat.h"
#include "text/generated_text.h"
#include "token_list.h"

namespace mtplx::cli {
namespace {

struct GenerateFlags {
  GenerationFlags common;
  std::optional<std::string> prompt, messages_file, tokens;
  int n = 1;
  bool json = false;
  bool no_think = false;
};

std::optional<text::ChatModel> load_text(const std::string& dir, bool needed) {
  if (!needed && !std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json")) return std::nullopt;
  return text::ChatModel::load(dir);
}

std::vector<int32_t> build_prompt(const GenerateFlags& f, const std::optional<text::ChatModel>& text) {
  if (f.tokens) return parse_token_ids(*f.tokens);
  if (f.prompt) return text->tokenizer().encode(*f.prompt);
  const auto messages = nlohmann::ordered_json::parse(std::ifstream(*f.messages_file), nullptr, false);
  require(!messages.is_discarded() && messages.is_array(), "messages file is not a JSON array",
          *f.messages_file, "give an OpenAI-style array of {\"role\", \"content\"} objects");
  text::ChatOptions options;
  if (f.no_think) options.enable_thinking = false;
  return text->encode_chat(messages, nullptr, options);
}

nlohmann::json stats_json(const GenerationStats& s) {
  nlohmann::json acceptance = nlohmann::json::array();
  for (size_t i = 0; i < s.drafted_at.size(); ++i) acceptance.push_back(s.acceptance(static_cast<int>(i)));
  return {{"prompt_tokens", s.prompt_tokens},
          {"generated_tokens", s.generated_tokens},
          {"prefill_seconds", s.prefill_seconds},
          {"decode_seconds", s.decode_seconds},
          {"prefill_tok_s", s.prefill_tokens_per_second()},
          {"decode_tok_s", s.decode_tokens_per_second()},
          {"cycles", s.cycles},
          {"tokens_per_cycle", s.tokens_per_cycle()},
          {"acceptance_by_position", acceptance},
          {"drafted_by_position", s.drafted_at},
          {"accepted_by_position", s.accepted_at},
          {"sampler_on_device", s.device_sampling}};
}

void run(const GenerateFlags& f) {
  const int inputs = (f.prompt ? 1 : 0) + (f.messages_file ? 1 : 0) + (f.tokens ? 1 : 0);
  require(inputs == 1, "give exactly one of --prompt, --messages, --tokens");
  require(f.n >= 1, "--n must be at least 1");
  LoadedModel loaded(f.common);
  const auto text = load_text(f.common.model_dir, !f.tokens || !f.common.stop.empty());
  const auto prompt = build_prompt(f, text);
  text::OutputParserOptions parsing;
  if (text) {
    add_stop_token_ids(loaded.config, *text);
    parsing.starts_in_reasoning = text::prompt_opens_reasoning(text->tokenizer().decode(prompt));
  }
  const ReplyStyle style = terminal_style(stdout, ReplyStyle::kRaw);
  Generator generator(loaded.model, loaded.draft_head.get());
  for (int i = 0; i < f.n; ++i) {
    GenerationConfig config = loaded.config;
    config.seed += static_cast<uint64_t>(i);
    std::optional<text::GeneratedText> out;
    if (text) out.emplace(text->tokenizer(), f.common.stop);
    std::optional<ReplyView> view;
    if (text && !f.json) view.emplace(std::cout, style, parsing);
    // Stopping inside the sink ends generation after the token that completed a stop string, in the
    // middle of an MTP cycle if need be: the drafts after it are never emitted.
    const TokenSink sink = [&](int32_t token) {
      if (!out) return true;
      const std::string piece = out->push(token);
      if (view) view->push(piece);
      return !out->stopped();
    };
    if (f.n > 1 && !f.json) std::cout << "--- sample " << i << " (seed " << config.seed << ")\n";
    const auto result = generator.generate(prompt, config, sink);
    if (out) {
      const std::string rest = out->finish();
      if (view) view->push(rest);
    }
    if (f.json) {
      nlohmann::json out_json = {{"seed", config.seed},
                                 {"ids", out ? out->ids_for_text() : result.tokens},
                                 {"finish_reason", finish_reason_name(result.finish)},
                                 {"stats", stats_json(result.stats)}};
      if (out) {
        out_json["text"] = out->text();
        out_json["stop"] = out->stopped() ? nlohmann::json(out->matched_stop()) : nlohmann::json();
      }
      // A stop string may begin inside a UTF-8 character; replace, rather than throw on, a cut one.
      std::cout << out_json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else {
      if (view) view->finish();
      if (!text) {
        for (size_t t = 0; t < result.tokens.size(); ++t) std::cout << (t ? "," : "") << result.tokens[t];
      }
      if (!view || style == ReplyStyle::kRaw) std::cout << "\n";
      std::fprintf(stderr, "[%lld tokens, %.1f tok/s decode, %.1f tok/s prefill, %.2f tokens/cycle, %s]\n",
                   static_cast<long long>(result.stats.generated_tokens),
                   result.stats.decode_tokens_per_second(), result.stats.prefill_tokens_per_second(),
                   result.stats.tokens_per_cycle(), std::string(finish_reason_name(result.finish)).c_str());
    }
  }
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Generate text with native MTP speculative decoding");
  auto flags = std::make_shared<GenerateFlags>();
  flags->common.add_to(*cmd);
  cmd->add_option("--prompt", flags->prompt, "Raw prompt text (no chat template)");
  cmd->add_option("--messages", flags->messages_file,
                  "JSON file with chat messages (uses the chat template)");
  cmd->add_option("--tokens", flags->tokens, "Comma-separated prompt token ids");
  cmd->add_option("--n", flags->n, "Independent samples, seeds S..S+N-1");
  cmd->add_flag("--json", flags->json, "Print one JSON object per sample: ids, text, stats");
  cmd->add_flag("--no-think", flags->no_think, "Chat template: disable thinking");
  cmd->callback([flags] { run(*flags); });
}

}  // namespace mtplx::cli

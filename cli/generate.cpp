// mtplx generate: one-shot generation from a prompt, chat messages or token ids, streamed as text or
// reported as JSON with speed and acceptance statistics.
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
#include "text/chat.h"

namespace mtplx::cli {
namespace {

struct GenerateFlags {
  GenerationFlags common;
  std::optional<std::string> prompt, messages_file, tokens;
  int n = 1;
  bool json = false;
  bool no_think = false;
};

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    long value = -1;
    try {
      value = std::stol(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    require(used == item.size() && !item.empty() && value >= 0 && value <= INT32_MAX,
            str("bad token id \"", item, "\""), "--tokens", "pass comma-separated non-negative integers");
    ids.push_back(static_cast<int32_t>(value));
  }
  require(!ids.empty(), "no token ids", "--tokens");
  return ids;
}

std::optional<text::ChatModel> load_text(const std::string& dir, bool needed) {
  if (!needed && !std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json")) return std::nullopt;
  return text::ChatModel::load(dir);
}

std::vector<int32_t> build_prompt(const GenerateFlags& f, const std::optional<text::ChatModel>& text) {
  if (f.tokens) return parse_ids(*f.tokens);
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
          {"accepted_by_position", s.accepted_at}};
}

void run(const GenerateFlags& f) {
  const int inputs = (f.prompt ? 1 : 0) + (f.messages_file ? 1 : 0) + (f.tokens ? 1 : 0);
  require(inputs == 1, "give exactly one of --prompt, --messages, --tokens");
  require(f.n >= 1, "--n must be at least 1");
  LoadedModel loaded(f.common);
  const auto text = load_text(f.common.model_dir, !f.tokens);
  const auto prompt = build_prompt(f, text);
  if (text) {
    for (int32_t id : text->stop_token_ids())
      if (std::find(loaded.config.eos_ids.begin(), loaded.config.eos_ids.end(), id) == loaded.config.eos_ids.end())
        loaded.config.eos_ids.push_back(id);
  }
  Generator generator(loaded.model, loaded.draft_head.get());
  for (int i = 0; i < f.n; ++i) {
    GenerationConfig config = loaded.config;
    config.seed += static_cast<uint64_t>(i);
    std::optional<text::StreamDecoder> stream;
    if (text && !f.json) stream.emplace(text->tokenizer());
    const TokenSink sink = [&](int32_t token) {
      if (stream) {
        std::cout << stream->push(token) << std::flush;
      }
      return true;
    };
    if (f.n > 1 && !f.json) std::cout << "--- sample " << i << " (seed " << config.seed << ")\n";
    const auto result = generator.generate(prompt, config, sink);
    if (f.json) {
      nlohmann::json out = {{"seed", config.seed}, {"ids", result.tokens},
                            {"finish_reason", finish_reason_name(result.finish)}, {"stats", stats_json(result.stats)}};
      if (text) out["text"] = text->tokenizer().decode(result.tokens);
      std::cout << out.dump() << "\n";
    } else {
      if (stream) std::cout << stream->flush();
      if (!text) {
        for (size_t t = 0; t < result.tokens.size(); ++t) std::cout << (t ? "," : "") << result.tokens[t];
      }
      std::cout << "\n";
      std::fprintf(stderr, "[%lld tokens, %.1f tok/s decode, %.1f tok/s prefill, %.2f tokens/cycle, %s]\n",
                   static_cast<long long>(result.stats.generated_tokens), result.stats.decode_tokens_per_second(),
                   result.stats.prefill_tokens_per_second(), result.stats.tokens_per_cycle(),
                   std::string(finish_reason_name(result.finish)).c_str());
    }
  }
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Generate text with native MTP speculative decoding");
  auto flags = std::make_shared<GenerateFlags>();
  flags->common.add_to(*cmd);
  cmd->add_option("--prompt", flags->prompt, "Raw prompt text (no chat template)");
  cmd->add_option("--messages", flags->messages_file, "JSON file with chat messages (uses the chat template)");
  cmd->add_option("--tokens", flags->tokens, "Comma-separated prompt token ids");
  cmd->add_option("--n", flags->n, "Independent samples, seeds S..S+N-1");
  cmd->add_flag("--json", flags->json, "Print one JSON object per sample: ids, text, stats");
  cmd->add_flag("--no-think", flags->no_think, "Chat template: disable thinking");
  cmd->callback([flags] { run(*flags); });
}

}  // namespace mtplx::cli

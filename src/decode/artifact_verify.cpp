#include "decode/artifact_verify.h"

#include <sys/utsname.h>

#include <fstream>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "base/error.h"
#include "base/timing.h"
#include "decode/draft_head.h"
#include "decode/generator.h"
#include "io/checkpoint.h"
#include "model/qwen35.h"

namespace mtplx {
namespace fs = std::filesystem;
namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("model name")) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown CPU";
}

nlohmann::json machine(const std::string& model, int threads) {
  utsname name{};
  uname(&name);
  return {{"timestamp", iso8601_now()},
          {"hardware", cpu_model()},
          {"machine_arch", name.machine},
          {"os", str(name.sysname, " ", name.release)},
          {"backend", "cpu"},
          {"threads", threads},
          {"model", model}};
}

// Decode statistics summed over prompts.
struct Lane {
  int64_t tokens = 0;  // tokens after the first (the decode phase)
  double seconds = 0;
  int64_t cycles = 0;
  std::vector<int64_t> drafted, accepted;

  void add(const GenerationStats& s) {
    tokens += std::max<int64_t>(s.generated_tokens - 1, 0);
    seconds += s.decode_seconds;
    cycles += s.cycles;
    drafted.resize(s.drafted_at.size());
    accepted.resize(s.accepted_at.size());
    for (size_t i = 0; i < s.drafted_at.size(); ++i) {
      drafted[i] += s.drafted_at[i];
      accepted[i] += s.accepted_at[i];
    }
  }
  double tok_s() const { return seconds > 0 ? tokens / seconds : 0.0; }
  nlohmann::json acceptance() const {
    nlohmann::json out = nlohmann::json::array();
    for (size_t i = 0; i < drafted.size(); ++i)
      out.push_back(drafted[i] ? static_cast<double>(accepted[i]) / drafted[i] : 0.0);
    return out;
  }
  int64_t accepted_total() const {
    int64_t sum = 0;
    for (auto a : accepted) sum += a;
    return sum;
  }
};

}  // namespace

nlohmann::json VerifyReport::contract_fields() const {
  return {{"exactness_baseline", exactness_baseline},
          {"speed_evidence", speed_evidence},
          {"verified_on", verified_on}};
}

VerifyReport verify_artifact(const fs::path& dir, const VerifyOptions& options) {
  require(!options.prompts.empty(), "no verification prompts", "--verify-prompts",
          "give at least one prompt");
  require(options.max_tokens >= 2, "verification needs at least 2 tokens per prompt", "--verify-tokens");
  const Checkpoint ckpt = open_checkpoint(dir);
  CpuBackend backend(options.threads);
  Qwen35Model model(ckpt, backend);
  require(model.has_mtp(), "the written artifact has no MTP head", dir.string(), "internal error in forge");
  DraftHead head(model, DraftHeadSpec{});
  Generator generator(model, &head);

  GenerationConfig base;
  base.target.temperature = 0;
  base.draft.temperature = 0;
  base.max_tokens = options.max_tokens;
  base.eos_ids = model.config().eos_token_ids;

  Lane ar;
  std::vector<Lane> mtp(static_cast<size_t>(options.max_depth));
  int matches = 0;
  int total = 0;
  nlohmann::json mismatches = nlohmann::json::array();
  for (size_t p = 0; p < options.prompts.size(); ++p) {
    const auto& prompt = options.prompts[p];
    require(!prompt.empty(), str("verification prompt ", p + 1, " encodes to no tokens"), "--verify-prompts");
    const GenerationResult plain = generator.generate(prompt, base);
    ar.add(plain.stats);
    for (int depth = 1; depth <= options.max_depth; ++depth) {
      GenerationConfig config = base;
      config.mtp_depth = depth;
      const GenerationResult spec = generator.generate(prompt, config);
      mtp[depth - 1].add(spec.stats);
      ++total;
      if (spec.tokens == plain.tokens) {
        ++matches;
        continue;
      }
      size_t at = 0;
      while (at < spec.tokens.size() && at < plain.tokens.size() && spec.tokens[at] == plain.tokens[at]) ++at;
      mismatches.push_back({{"prompt", p},
                            {"depth", depth},
                            {"position", at},
                            {"ar_token", at < plain.tokens.size() ? nlohmann::json(plain.tokens[at])
                                                                  : nlohmann::json(nullptr)},
                            {"mtp_token", at < spec.tokens.size() ? nlohmann::json(spec.tokens[at])
                                                                  : nlohmann::json(nullptr)}});
    }
  }

  VerifyReport report;
  report.passed = matches == total;
  report.exactness_baseline = {
      {"gate", "mtp-greedy-ar-equivalence"},
      {"status", report.passed ? "passed" : "failed"},
      {"depths", nlohmann::json::array()},
      {"prompts", options.prompts.size()},
      {"max_tokens", options.max_tokens},
      {"matches", matches},
      {"total", total},
      {"scope", str("greedy AR and greedy MTP at depths 1..", options.max_depth,
                    " generated identical token sequences on ", matches, " of ", total,
                    " (prompt, depth) pairs; CPU backend, fp32 activations")}};
  for (int d = 1; d <= options.max_depth; ++d) report.exactness_baseline["depths"].push_back(d);
  if (!report.passed) report.exactness_baseline["mismatches"] = mismatches;

  nlohmann::json rows = nlohmann::json::array();
  int best = 0;
  for (int d = 1; d <= options.max_depth; ++d) {
    const Lane& lane = mtp[d - 1];
    if (lane.tok_s() > mtp[best].tok_s()) best = d - 1;
    rows.push_back({{"depth", d},
                    {"tok_s", lane.tok_s()},
                    {"multiplier_vs_ar", ar.tok_s() > 0 ? lane.tok_s() / ar.tok_s() : 0.0},
                    {"acceptance_by_position", lane.acceptance()},
                    {"tokens_per_cycle", lane.cycles ? static_cast<double>(lane.tokens) / lane.cycles : 0.0},
                    {"accepted_drafts", lane.accepted_total()}});
  }
  const Lane& fastest = mtp[best];
  report.speed_evidence = {
      {"status", "measured"},
      {"sampler", "greedy"},
      {"backend", "cpu"},
      {"threads", backend.pool().size()},
      {"prompts", options.prompts.size()},
      {"max_tokens", options.max_tokens},
      {"ar_tok_s", ar.tok_s()},
      {"greedy_diagnostic", {{"tok_s", ar.tok_s()}}},
      {"acceptance_by_depth", mtp.back().acceptance()},  // per position, in the deepest lane
      {"mtp_depth", best + 1},
      {"mtp_tok_s", fastest.tok_s()},
      {"speedup_vs_ar", ar.tok_s() > 0 ? fastest.tok_s() / ar.tok_s() : 0.0},
      {"accepted_drafts", fastest.accepted_total()},
      {"generated_tokens", fastest.tokens},
      {"rows", rows}};
  report.verified_on = machine(options.model_name.empty() ? dir.filename().string() : options.model_name,
                               backend.pool().size());
  return report;
}

}  // namespace mtplx

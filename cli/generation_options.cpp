#include "generation_options.h"

#include <algorithm>
#include <filesystem>

#include "backend/device.h"
#include "base/error.h"

namespace mtplx::cli {

void add_cpu_matmul_option(CLI::App& cmd, std::string& mode) {
  cmd.add_option("--cpu-matmul", mode,
                 "CPU decode with 4/8-bit weights: exact (fp32, the reference) or int8 (activations rounded "
                 "to int8 per 64 columns, integer dot products; faster, ~1e-3 relative error; needs "
                 "AVX2; holds a second, regrouped copy of those weights in memory)")
      ->check(CLI::IsMember({"exact", "int8"}))
      ->capture_default_str();
}

void GenerationFlags::add_to(CLI::App& cmd) {
  cmd.add_option("--model", model_dir, "Checkpoint folder")->required();
  cmd.add_option("--max-tokens", max_tokens, "Tokens to generate at most (default 256)");
  cmd.add_option("--temp,--temperature", temperature, "Sampling temperature; 0 = greedy");
  cmd.add_option("--top-p", top_p, "Nucleus sampling mass in (0, 1]");
  cmd.add_option("--top-k", top_k, "Keep the k most likely tokens; 0 = off");
  cmd.add_option("--min-p", min_p, "Drop tokens below min-p times the top probability");
  cmd.add_option("--repetition-penalty", repetition_penalty, "HF repetition penalty (1 = off)");
  cmd.add_option("--presence-penalty", presence_penalty, "OpenAI presence penalty");
  cmd.add_option("--frequency-penalty", frequency_penalty, "OpenAI frequency penalty");
  cmd.add_option("--seed", seed, "Random seed (default 0)");
  cmd.add_option("--mtp-depth", mtp_depth, "Drafts per cycle; 0 = plain autoregressive decoding");
  cmd.add_flag("--adaptive-depth", adaptive_depth,
               "Adapt the depth (up to --mtp-depth) to the acceptance rate");
  cmd.add_flag("--host-sampling", host_sampling,
               "Filter, draw and accept sampled tokens on the host even where the device can (comparisons)");
  cmd.add_option("--draft-temp", draft_temperature, "Temperature of the MTP draft distribution");
  cmd.add_option("--draft-head", draft_head, "Draft LM head: full, q4, q8, trim:N or trim:N:q4 (trim:N:q8)");
  cmd.add_option("--context", context, "Context size in tokens (default: prompt + max tokens)");
  cmd.add_option("--threads", threads, "CPU threads (0 = all)");
  cmd.add_option("--device", device,
                 "Where the model runs: auto (CUDA when built with it and a GPU is present), cpu, cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  add_cpu_matmul_option(cmd, cpu_matmul);
  // allow_extra_args(false): each --stop takes exactly one value, so a later flag is never swallowed.
  cmd.add_option("--stop", stop, "Stop before this text (repeatable); the text itself is not shown")
      ->allow_extra_args(false);
}

namespace {

GenerationConfig resolve(const GenerationFlags& f, GenerationConfig c) {
  if (f.max_tokens) c.max_tokens = *f.max_tokens;
  if (f.temperature) c.target.temperature = *f.temperature;
  if (f.top_p) c.target.top_p = *f.top_p;
  if (f.top_k) c.target.top_k = *f.top_k;
  if (f.min_p) c.target.min_p = *f.min_p;
  if (f.repetition_penalty) c.target.repetition_penalty = *f.repetition_penalty;
  if (f.presence_penalty) c.target.presence_penalty = *f.presence_penalty;
  if (f.frequency_penalty) c.target.frequency_penalty = *f.frequency_penalty;
  if (f.seed) c.seed = *f.seed;
  if (f.mtp_depth) c.mtp_depth = *f.mtp_depth;
  c.adaptive_depth = f.adaptive_depth;
  c.device_sampling = !f.host_sampling;
  if (f.draft_temperature) c.draft.temperature = *f.draft_temperature;
  if (f.context) c.context = *f.context;
  return c;
}

}  // namespace

LoadedModel::LoadedModel(const GenerationFlags& flags)
    : ckpt(open_checkpoint(flags.model_dir)),
      backend(make_backend(flags.device, flags.threads, parse_quant_dot(flags.cpu_matmul))),
      model(ckpt, *backend) {
  GenerationDefaults defaults = generation_defaults(ckpt, model.config(), model.has_mtp());
  config = resolve(flags, defaults.config);
  config.validate();
  require(config.mtp_depth == 0 || model.has_mtp(), "--mtp-depth > 0 but the checkpoint has no MTP head",
          flags.model_dir, "use --mtp-depth 0, or a checkpoint with mtp.* weights / an MTPLX artifact");
  if (!model.has_mtp()) return;
  const DraftHeadSpec spec = flags.draft_head ? parse_draft_head(*flags.draft_head) : defaults.draft_head;
  std::vector<int32_t> frequent;
  if (spec.kind == DraftHeadSpec::Kind::kTrimmed) {
    const auto path = std::filesystem::path(flags.model_dir) / "draft_vocab.json";
    require(std::filesystem::exists(path), "trim:N needs draft_vocab.json in the model folder", path.string(),
            "create it with `mtplx draft-vocab --model DIR --file CORPUS`");
    // The trimmed head keeps config.json's eos ids itself; generation_config.json may end generation on
    // more (Qwen3.5: <|im_end|>), and a draft head that cannot propose them misses every reply's end.
    frequent = config.eos_ids;
    const auto counted = read_draft_vocab(path);
    frequent.insert(frequent.end(), counted.begin(), counted.end());
  }
  draft_head = std::make_unique<DraftHead>(model, spec, frequent);
}

void add_stop_token_ids(GenerationConfig& config, const text::ChatModel& text) {
  for (int32_t id : text.stop_token_ids())
    if (std::find(config.eos_ids.begin(), config.eos_ids.end(), id) == config.eos_ids.end())
      config.eos_ids.push_back(id);
}

}  // namespace mtplx::cli

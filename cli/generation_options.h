// Command-line flags shared by the commands that generate (generate, chat): the model, sampler, MTP depth
// and draft head. Unset flags keep the checkpoint's defaults (generation_config.json, mtplx_runtime.json).
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "decode/defaults.h"
#include "decode/draft_head.h"
#include "decode/generator.h"
#include "io/checkpoint.h"
#include "model/qwen35.h"
#include "text/chat.h"

namespace mtplx::cli {

struct GenerationFlags {
  std::string model_dir;
  std::optional<int64_t> max_tokens;
  std::optional<float> temperature, top_p, min_p, repetition_penalty, presence_penalty, frequency_penalty;
  std::optional<int> top_k;
  std::optional<uint64_t> seed;
  std::optional<int> mtp_depth;
  bool adaptive_depth = false;
  bool host_sampling = false;
  std::optional<float> draft_temperature;
  std::optional<std::string> draft_head;
  std::optional<int64_t> context;
  int threads = 0;
  std::string device = "auto";
  std::string cpu_matmul = "exact";
  // Text, not tokens: the generator knows nothing of them; the front end stops it through its TokenSink.
  std::vector<std::string> stop;

  void add_to(CLI::App& cmd);
};

// --cpu-matmul exact|int8 (cpu::QuantDot) on a command, stored in `mode`.
void add_cpu_matmul_option(CLI::App& cmd, std::string& mode);

// A loaded model with its draft head and the defaults resolved against the flags.
struct LoadedModel {
  Checkpoint ckpt;
  std::unique_ptr<Backend> backend;  // --device: CPU or CUDA
  Qwen35Model model;
  GenerationConfig config;
  std::unique_ptr<DraftHead> draft_head;  // null when the model has no MTP head

  LoadedModel(const GenerationFlags& flags);
};

// Adds the tokenizer's end-of-turn tokens (<|im_end|>, <|endoftext|>, eos_token) to the ids that end
// generation: generation_config.json of some checkpoints lists only one of them.
void add_stop_token_ids(GenerationConfig& config, const text::ChatModel& text);

}  // namespace mtplx::cli

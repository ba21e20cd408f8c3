// `mtplx forge`: turns a Hugging Face Qwen3.5/3.6 checkpoint (BF16, also F16/F32; Qwen3_5ForCausalLM or
// Qwen3_5ForConditionalGeneration names; one file or shards; with its mtp.* weights) into an MTPLX artifact:
//  - the trunk exactly as mlx-lm's qwen3_5 conversion writes it (`mlx_lm.convert --dtype bfloat16 -q`):
//    language_model.model.* names, conv1d [C, K, 1], +1 on the five RMSNorm1p gains, visual tower and the
//    tied lm_head dropped, every floating tensor cast to BF16 except A_log (mlx-lm's cast predicate), and
//    every Linear/Embedding whose input size divides into groups affine-quantized (bits, group size) with a
//    `quantization` block in config.json — conv1d, norms, A_log and dt_bias stay unquantized;
//  - mtp.safetensors: the 15 mtp.* tensors, norms zero-centred ("delta", recorded in config.json), linears
//    quantized per the sidecar policy;
//  - mtplx_runtime.json, mtplx_build_stats.json (the sidecar build, in the model-card "Build Stats" form),
//    config.json, generation_config.json and the tokenizer / chat-template files.
// Everything is written into OUT.partial-* beside OUT and renamed at the end; a failure removes it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "io/artifact_writer.h"
#include "model/mlx_layout.h"

namespace mtplx {

// q8 | q4 | bf16 -> trunk bits (0 = unquantized BF16).
int parse_trunk_format(std::string_view name);

struct ForgeOptions {
  std::filesystem::path source;
  std::filesystem::path out;
  int trunk_bits = 8;  // 0: BF16 trunk
  MtpPolicy mtp = MtpPolicy::kBodyInt4;
  int group_size = 64;
  uint64_t shard_bytes = 5'000'000'000;  // mlx-lm's default largest shard
  bool force = false;
  int threads = 0;
  ProgressFn progress;
  // Runs on the finished folder before it is renamed into place; the object it returns is merged into
  // mtplx_runtime.json (exactness_baseline, speed_evidence, verified_on). Empty: not verified.
  std::function<nlohmann::json(const std::filesystem::path& dir)> verify;
};

struct ForgeResult {
  std::filesystem::path dir;
  nlohmann::json build_stats;  // as written to mtplx_build_stats.json
  nlohmann::json contract;     // as written to mtplx_runtime.json
  size_t trunk_tensors = 0;
  size_t shards = 0;
  uint64_t bytes = 0;  // tensor data written (trunk + sidecar)
  double seconds = 0;
};

ForgeResult forge_checkpoint(const ForgeOptions& options);

}  // namespace mtplx

// Random-weight checkpoints of real Qwen3.5/3.6 shapes, written in the exact on-disk layouts mtplx reads
// (Hugging Face BF16, mlx-community affine 8/4-bit, MTPLX artifact = MLX trunk + body-int4 MTP sidecar +
// runtime contract). They exist for speed work and load tests: the values are random but scaled so that a
// forward pass stays finite (linears ~ 1/sqrt(fan_in), norms near identity, realistic A_log / dt_bias),
// and every file says it is synthetic.
//
// Values come from a counter-based hash of (seed, logical tensor name, element index), so generation is
// embarrassingly parallel, reproducible, and float tensors (norms, conv, A_log, dense linears) hold the
// same values in every layout. Quantized matrices are generated directly as random codes with per-group
// scales/biases, not by quantizing dense values.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "io/safetensors_writer.h"
#include "model/config.h"

namespace mtplx {

enum class SynthLayout { kHf, kMlxQ8, kMlxQ4, kMtplxQ8, kMtplxQ4 };

// Throws a clear error listing the accepted names.
SynthLayout parse_synth_layout(std::string_view name);
std::string_view synth_layout_name(SynthLayout layout);
std::vector<std::string> synth_preset_names();
// The hyper-parameters of a preset (spec §1.3 sizes and tiny test shapes); throws for unknown names.
ModelConfig synth_preset(std::string_view name);

// How a value of a synthetic tensor is drawn.
enum class SynthFill {
  kUniform,  // center + U(-half_width, half_width), BF16
  kCodes,    // random uint32 words (uniform codes at any bit width)
  kScales,   // per-group quantization step, BF16
  kBiases,   // per-group offset -step * (2^bits - 1) / 2, BF16 (values centred on 0)
  kALog,     // log(U(1, 16)), BF16
  kDtBias,   // inverse softplus of a log-uniform dt in [1e-3, 1e-1], BF16
};

struct SynthTensor {
  TensorSpec spec;
  std::string key;  // logical name the random stream is keyed on (same across layouts)
  SynthFill fill = SynthFill::kUniform;
  float center = 0;
  float half_width = 0;  // kUniform: spread; kScales/kBiases: half range of the dequantized values
  int bits = 0;          // kScales/kBiases
};

// The tensors of each file of a layout, in file order.
struct SynthFiles {
  std::vector<SynthTensor> trunk;
  std::vector<SynthTensor> sidecar;  // mtp.safetensors (MTPLX layouts)
};
SynthFiles synth_tensors(const ModelConfig& config, SynthLayout layout);

// config.json / generation_config.json / mtplx_runtime.json for a layout.
nlohmann::json synth_config_json(const ModelConfig& config, SynthLayout layout, std::string_view preset,
                                 uint64_t seed);
nlohmann::json synth_generation_config(const ModelConfig& config);
nlohmann::json synth_runtime_contract(std::string_view preset, SynthLayout layout, uint64_t seed);

// Fills `out` with the bytes of elements [first, first + out.size() / element size) of `tensor`.
void synth_fill(const SynthTensor& tensor, uint64_t seed, uint64_t first, std::span<std::byte> out);

struct SynthOptions {
  std::string preset;
  SynthLayout layout = SynthLayout::kMlxQ8;
  std::filesystem::path out;
  uint64_t seed = 0;
  uint64_t shard_bytes = 5'000'000'000;
  bool force = false;                                // replace a non-empty `out`
  int threads = 0;                                   // 0: one per hardware thread
  std::function<void(const std::string&)> progress;  // one line per call; empty: quiet
};

struct SynthResult {
  std::filesystem::path dir;
  uint64_t bytes = 0;  // tensor data written
  size_t tensors = 0;
  size_t shards = 0;
  double seconds = 0;
};

// Writes the checkpoint into `out`.partial-XXXX and renames it to `out` at the end; on any error the partial
// folder is removed and `out` is left as it was. Refuses a non-empty `out` unless `force`.
SynthResult synthesize_checkpoint(const SynthOptions& options);

}  // namespace mtplx

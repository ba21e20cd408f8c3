// The on-disk conventions of MLX trunks (as mlx-lm's qwen3_5 conversion writes them) and of MTPLX artifacts
// (MLX trunk + mtp.safetensors sidecar + mtplx_runtime.json), in one place for every writer (`mtplx synth`,
// `mtplx forge`) so they cannot drift apart:
//  - names: model.language_model.* / model.* (HF) -> language_model.model.*, lm_head ->
//  language_model.lm_head;
//  - the five RMSNorm1p gains that HF stores zero-centred and mlx-lm stores as 1 + w;
//  - conv1d weights [C, 1, K] -> [C, K, 1];
//  - the config.json `quantization` block and the MTPLX sidecar keys.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace mtplx {

// Affine quantization of one matrix; bits 0 = kept in floating point.
struct QuantSpec {
  int bits = 0;
  int group_size = 64;
  bool quantized() const { return bits > 0; }
};

// The sidecar's quantization policy: which MTP linears are quantized.
enum class MtpPolicy {
  kBodyInt4,  // "cyankiwi": the decoder layer's attention/MLP linears, 4-bit; fc and norms BF16
  kInt8,      // "all": every linear of the head including fc, 8-bit; norms BF16
  kBf16,      // "keep_bf16": nothing quantized
};
MtpPolicy parse_mtp_policy(std::string_view name);   // body-int4 | int8 | bf16
std::string_view mtp_policy_name(MtpPolicy policy);  // the command-line name ("body-int4", ...)
std::string_view mtp_policy_id(MtpPolicy policy);    // MTPLX's mtp_quant_policy ("cyankiwi", "all", ...)
int mtp_policy_bits(MtpPolicy policy);

// The HF name of a trunk tensor renamed as mlx-lm's sanitize renames it: "model.language_model.X" and
// "model.X" -> "language_model.model.X", "lm_head.weight" -> "language_model.lm_head.weight".
std::string mlx_trunk_name(std::string_view hf_name);

// True for the norms whose gains mlx-lm stores shifted by +1 (input/post-attention layernorms, the final
// norm, q_norm, k_norm) — not linear_attn.norm, whose gain is plain.
bool mlx_shifts_norm(std::string_view mlx_name);

// The linear modules of MTP layer 0's decoder layer ("mtp.layers.0.self_attn.q_proj", ...).
std::vector<std::string> mtp_body_linears();
// The modules `policy` quantizes (body linears, plus mtp.fc for kInt8).
std::vector<std::string> mtp_quantized_modules(MtpPolicy policy);

// {"group_size": g, "bits": b, "mode": "affine"}: the block mlx-lm writes as both `quantization` and
// `quantization_config`.
nlohmann::json mlx_quantization_block(QuantSpec spec);

// Adds the MTPLX sidecar keys to config.json: the sidecar file, the norm encoding ("delta": zero-centred
// gains) and the sidecar's quantization. When the trunk is quantized, the sidecar's quantized modules also
// get per-module entries in the quantization blocks, as mlx-lm records overrides (the loader cross-checks
// them).
void add_mtplx_sidecar_keys(nlohmann::json& config, MtpPolicy policy, int group_size,
                            const std::vector<std::string>& quantized_modules);

}  // namespace mtplx

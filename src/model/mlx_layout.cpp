#include "model/mlx_layout.h"

#include "base/error.h"

namespace mtplx {

MtpPolicy parse_mtp_policy(std::string_view name) {
  for (auto policy : {MtpPolicy::kBodyInt4, MtpPolicy::kInt8, MtpPolicy::kBf16}) {
    if (name == mtp_policy_name(policy)) return policy;
  }
  fail(str("unknown MTP sidecar quantization \"", name, "\""), "--mtp", "use one of: body-int4, int8, bf16");
}

std::string_view mtp_policy_name(MtpPolicy policy) {
  switch (policy) {
    case MtpPolicy::kBodyInt4:
      return "body-int4";
    case MtpPolicy::kInt8:
      return "int8";
    case MtpPolicy::kBf16:
      return "bf16";
  }
  return "unknown";
}

std::string_view mtp_policy_id(MtpPolicy policy) {
  switch (policy) {
    case MtpPolicy::kBodyInt4:
      return "cyankiwi";  // MTPLX's name for body-only int4
    case MtpPolicy::kInt8:
      return "all";
    case MtpPolicy::kBf16:
      return "keep_bf16";
  }
  return "unknown";
}

int mtp_policy_bits(MtpPolicy policy) {
  switch (policy) {
    case MtpPolicy::kBodyInt4:
      return 4;
    case MtpPolicy::kInt8:
      return 8;
    case MtpPolicy::kBf16:
      return 0;
  }
  return 0;
}

std::string mlx_trunk_name(std::string_view hf_name) {
  constexpr std::string_view kNested = "model.language_model.";
  if (hf_name.starts_with(kNested)) return str("language_model.model.", hf_name.substr(kNested.size()));
  return str("language_model.", hf_name);
}

bool mlx_shifts_norm(std::string_view name) {
  for (std::string_view suffix : {".input_layernorm.weight", ".post_attention_layernorm.weight",
                                  "model.norm.weight", ".q_norm.weight", ".k_norm.weight"}) {
    if (name.ends_with(suffix)) return true;
  }
  return false;
}

std::vector<std::string> mtp_body_linears() {
  std::vector<std::string> names;
  for (const char* m : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}) {
    names.push_back(std::string("mtp.layers.0.") + m);
  }
  return names;
}

std::vector<std::string> mtp_quantized_modules(MtpPolicy policy) {
  if (policy == MtpPolicy::kBf16) return {};
  auto modules = mtp_body_linears();
  if (policy == MtpPolicy::kInt8) modules.insert(modules.begin(), "mtp.fc");
  return modules;
}

nlohmann::json mlx_quantization_block(QuantSpec spec) {
  return {{"group_size", spec.group_size}, {"bits", spec.bits}, {"mode", "affine"}};
}

void add_mtplx_sidecar_keys(nlohmann::json& config, MtpPolicy policy, int group_size,
                            const std::vector<std::string>& quantized_modules) {
  const int bits = mtp_policy_bits(policy);
  for (const char* key : {"quantization", "quantization_config"}) {
    if (!config.contains(key) || !config[key].is_object()) continue;
    for (const auto& module : quantized_modules) {
      config[key][module] = {{"group_size", group_size}, {"bits", bits}};
    }
  }
  config["mlx_lm_extra_tensors"] = {{"mtp_file", "mtp.safetensors"}};
  config["mtplx_mtp_norm_encoding"] = "delta";
  nlohmann::json quant = {{"mtp_quant_policy", mtp_policy_id(policy)},
                          {"mtp_prequantized", bits > 0},
                          {"mtp_prequantized_modules", quantized_modules}};
  if (bits > 0) {
    quant["mtp_quant_bits"] = bits;
    quant["mtp_quant_group_size"] = group_size;
    quant["mtp_quant_mode"] = "affine";
  }
  config["mtplx_mtp_quantization"] = quant;
}

}  // namespace mtplx

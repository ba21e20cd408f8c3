#include "decode/defaults.h"

namespace mtplx {
namespace {

// MTPLX's default depth for Qwen3.5/3.6 artifacts without a contract.
constexpr int kDefaultDepth = 2;

void apply(const ContractSampler& from, SamplerConfig& to) {
  if (from.temperature) to.temperature = *from.temperature;
  if (from.top_p) to.top_p = *from.top_p;
  if (from.top_k) to.top_k = *from.top_k;
  if (from.min_p) to.min_p = *from.min_p;
}

void apply_generation_config(const nlohmann::json& g, GenerationConfig& config) {
  SamplerConfig& s = config.target;
  if (g.contains("do_sample") && g["do_sample"].is_boolean() && !g["do_sample"].get<bool>())
    s.temperature = 0;
  if (g.contains("temperature") && g["temperature"].is_number() && s.temperature != 0)
    s.temperature = g["temperature"].get<float>();
  if (g.contains("top_p") && g["top_p"].is_number()) s.top_p = g["top_p"].get<float>();
  if (g.contains("top_k") && g["top_k"].is_number_integer()) s.top_k = g["top_k"].get<int>();
  if (g.contains("min_p") && g["min_p"].is_number()) s.min_p = g["min_p"].get<float>();
  if (g.contains("repetition_penalty") && g["repetition_penalty"].is_number())
    s.repetition_penalty = g["repetition_penalty"].get<float>();
  if (g.contains("eos_token_id")) {
    const auto& eos = g["eos_token_id"];
    config.eos_ids.clear();
    if (eos.is_number_integer()) config.eos_ids.push_back(eos.get<int32_t>());
    if (eos.is_array())
      for (const auto& id : eos)
        if (id.is_number_integer()) config.eos_ids.push_back(id.get<int32_t>());
  }
}

}  // namespace

GenerationDefaults generation_defaults(const Checkpoint& ckpt, const ModelConfig& model_config,
                                       bool has_mtp) {
  GenerationDefaults d;
  d.config.eos_ids = model_config.eos_token_ids;
  if (ckpt.generation_config) apply_generation_config(*ckpt.generation_config, d.config);
  d.config.mtp_depth = has_mtp ? kDefaultDepth : 0;
  if (ckpt.contract) {
    const RuntimeContract& k = *ckpt.contract;
    apply(k.sampler, d.config.target);
    if (k.mtp_depth_max && has_mtp) d.config.mtp_depth = *k.mtp_depth_max;
    if (k.draft_lm_head && k.draft_lm_head->mode == "affine") {
      d.draft_head.kind = DraftHeadSpec::Kind::kQuantized;
      d.draft_head.bits = k.draft_lm_head->bits;
      d.draft_head.group_size = k.draft_lm_head->group_size;
    }
  }
  d.config.draft = d.config.target;
  d.config.draft.repetition_penalty = 1;  // penalties shape the target only; q is any distribution we sample
  d.config.draft.presence_penalty = 0;
  d.config.draft.frequency_penalty = 0;
  if (ckpt.contract && ckpt.contract->draft_sampler) apply(*ckpt.contract->draft_sampler, d.config.draft);
  return d;
}

}  // namespace mtplx

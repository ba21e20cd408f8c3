#include "model/summary.h"

#include <map>
#include <string>

#include "base/error.h"

namespace mtplx {
namespace {

std::string format_of(const WeightMatrix& w) {
  if (w.quantized())
    return str("affine q", w.bits, " g", w.group_size, " (scales ", dtype_name(w.scale_dtype), ")");
  return std::string(dtype_name(w.dtype));
}

// Counts matrices by (group, format) so mixed-precision checkpoints show their overrides.
class QuantTally {
 public:
  void add(const std::string& group, const WeightMatrix& w) {
    auto& entry = groups_[group][format_of(w)];
    entry.first += 1;
    entry.second += w.bytes();
  }
  nlohmann::json json() const {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [group, formats] : groups_) {
      for (const auto& [format, counts] : formats) {
        out[group].push_back({{"format", format}, {"matrices", counts.first}, {"bytes", counts.second}});
      }
    }
    return out;
  }

 private:
  std::map<std::string, std::map<std::string, std::pair<int, size_t>>> groups_;
};

void tally_layer(QuantTally& tally, const std::string& prefix, const LayerWeights& layer) {
  if (layer.kind == LayerKind::kFullAttention) {
    for (const auto* w : {&layer.attn.q_proj, &layer.attn.k_proj, &layer.attn.v_proj, &layer.attn.o_proj})
      tally.add(prefix + "attention", *w);
  } else {
    for (const auto* w : {&layer.gdn.in_proj_qkv, &layer.gdn.in_proj_z, &layer.gdn.in_proj_a,
                          &layer.gdn.in_proj_b, &layer.gdn.out_proj})
      tally.add(prefix + "linear_attention", *w);
  }
  for (const auto* w : {&layer.mlp.gate_proj, &layer.mlp.up_proj, &layer.mlp.down_proj})
    tally.add(prefix + "mlp", *w);
}

nlohmann::json config_json(const ModelConfig& c) {
  return {{"model_type", c.model_type},
          {"hidden_size", c.hidden_size},
          {"num_hidden_layers", c.num_hidden_layers},
          {"full_attention_layers", c.full_attention_layers()},
          {"intermediate_size", c.intermediate_size},
          {"vocab_size", c.vocab_size},
          {"num_attention_heads", c.num_attention_heads},
          {"num_key_value_heads", c.num_key_value_heads},
          {"head_dim", c.head_dim},
          {"linear_num_key_heads", c.linear_num_key_heads},
          {"linear_num_value_heads", c.linear_num_value_heads},
          {"linear_key_head_dim", c.linear_key_head_dim},
          {"linear_value_head_dim", c.linear_value_head_dim},
          {"rotary_dim", c.rotary_dim()},
          {"rope_theta", c.rope_theta},
          {"rms_norm_eps", c.rms_norm_eps},
          {"tie_word_embeddings", c.tie_word_embeddings},
          {"max_position_embeddings", c.max_position_embeddings},
          {"eos_token_ids", c.eos_token_ids}};
}

}  // namespace

nlohmann::json summarize_model(const Checkpoint& ckpt, const Qwen35Model& model) {
  const ModelWeights& w = model.weights();
  const ModelConfig& c = model.config();
  QuantTally tally;
  tally.add("embed_tokens", w.embed);
  tally.add("lm_head", w.lm_head);
  for (const auto& layer : w.layers) tally_layer(tally, "", layer);
  nlohmann::json out;
  out["path"] = ckpt.dir.string();
  out["layout"] = std::string(layout_name(ckpt.layout));
  out["config"] = config_json(c);
  out["tied_lm_head"] = w.lm_head.data == w.embed.data;
  out["parameters"] = w.parameter_count;
  out["weight_bytes"] = w.weight_bytes;
  nlohmann::json mtp = {{"present", model.has_mtp()}};
  if (model.has_mtp()) {
    tally.add("mtp.fc", w.mtp->fc);
    tally_layer(tally, "mtp.", w.mtp->layer);
    mtp["norm_encoding"] = w.mtp_norm_encoding == NormEncoding::kDelta ? "delta" : "shifted";
    mtp["norm_encoding_source"] = w.mtp_norm_encoding_source;
    if (ckpt.mtp_sidecar) mtp["sidecar"] = ckpt.mtp_sidecar->filename().string();
  }
  out["mtp"] = mtp;
  out["quantization"] = tally.json();
  if (ckpt.contract) {
    const auto& k = *ckpt.contract;
    nlohmann::json contract = {{"mtplx_version", k.mtplx_version},
                               {"arch_id", k.arch_id},
                               {"recommended_profile", k.recommended_profile}};
    if (k.mtp_depth_max) contract["mtp_depth_max"] = *k.mtp_depth_max;
    for (const char* key :
         {"sampler", "recommended_draft_sampler", "recommended_draft_lm_head", "verified_on",
          "exactness_baseline", "speed_evidence", "base_trunk", "artifact_role"}) {
      if (k.raw.contains(key)) contract[key] = k.raw[key];
    }
    out["contract"] = contract;
  }
  // Memory at run time: mapped weights plus per-token caches (fp32 KV on CPU).
  const int64_t kv_bytes_per_token = int64_t{2} * c.full_attention_layers() * c.kv_dim() * 4;
  out["kv_cache_bytes_per_token_fp32"] = kv_bytes_per_token;
  out["gdn_state_bytes"] = c.recurrent_state_bytes();
  return out;
}

}  // namespace mtplx

#include "io/runtime_contract.h"

#include "base/error.h"

namespace mtplx {
namespace {

template <class T>
std::optional<T> optional_number(const nlohmann::json& object, const char* key, const std::string& where) {
  if (!object.contains(key) || object[key].is_null()) return std::nullopt;
  require(object[key].is_number(), str("field \"", key, "\" must be a number"), where);
  return object[key].get<T>();
}

ContractSampler parse_sampler(const nlohmann::json& object, const std::string& where) {
  require(object.is_object(), "sampler must be an object", where);
  return ContractSampler{
      optional_number<float>(object, "temperature", where), optional_number<float>(object, "top_p", where),
      optional_number<int>(object, "top_k", where), optional_number<float>(object, "min_p", where)};
}

std::string optional_string(const nlohmann::json& object, const char* key) {
  return object.contains(key) && object[key].is_string() ? object[key].get<std::string>() : std::string();
}

}  // namespace

RuntimeContract parse_runtime_contract(const nlohmann::json& json, const std::string& where) {
  require(json.is_object(), "runtime contract is not a JSON object", where);
  for (const char* key : {"mtplx_version", "exactness_baseline", "verified_on"}) {
    require(json.contains(key), str("runtime contract missing required key \"", key, "\""), where,
            "rebuild the artifact with `mtplx forge` or add the key");
  }
  RuntimeContract contract;
  contract.raw = json;
  contract.mtplx_version = json["mtplx_version"].is_string() ? json["mtplx_version"].get<std::string>()
                                                             : json["mtplx_version"].dump();
  contract.arch_id = optional_string(json, "arch_id");
  contract.recommended_profile = optional_string(json, "recommended_profile");
  contract.mtp_depth_max = optional_number<int>(json, "mtp_depth_max", where);
  if (contract.mtp_depth_max) {
    require(*contract.mtp_depth_max >= 0 && *contract.mtp_depth_max <= 16, "mtp_depth_max must be in 0..16",
            where);
  }
  if (json.contains("sampler")) contract.sampler = parse_sampler(json["sampler"], where + ": sampler");
  if (json.contains("recommended_draft_sampler")) {
    contract.draft_sampler =
        parse_sampler(json["recommended_draft_sampler"], where + ": recommended_draft_sampler");
  }
  if (json.contains("recommended_draft_lm_head") && json["recommended_draft_lm_head"].is_object()) {
    const auto& head = json["recommended_draft_lm_head"];
    ContractQuant quant;
    quant.bits = optional_number<int>(head, "bits", where).value_or(0);
    quant.group_size = optional_number<int>(head, "group_size", where).value_or(64);
    quant.mode = optional_string(head, "mode");
    require(quant.bits >= 2 && quant.bits <= 8, "recommended_draft_lm_head.bits must be in 2..8", where);
    contract.draft_lm_head = quant;
  }
  return contract;
}

}  // namespace mtplx

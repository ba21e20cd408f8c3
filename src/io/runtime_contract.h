// mtplx_runtime.json: the runtime contract an MTPLX artifact ships with (depth, target and draft samplers,
// draft LM-head quantization, evidence of exactness and speed). Unknown fields are kept in `raw`.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace mtplx {

struct ContractSampler {
  std::optional<float> temperature;
  std::optional<float> top_p;
  std::optional<int> top_k;
  std::optional<float> min_p;
};

struct ContractQuant {
  int bits = 0;
  int group_size = 0;
  std::string mode;
};

struct RuntimeContract {
  std::string mtplx_version;
  std::string arch_id;
  std::optional<int> mtp_depth_max;
  std::string recommended_profile;
  ContractSampler sampler;
  std::optional<ContractSampler> draft_sampler;  // recommended_draft_sampler
  std::optional<ContractQuant> draft_lm_head;    // recommended_draft_lm_head
  nlohmann::json raw;
};

// Parses a contract; `where` names the file in errors. Requires mtplx_version, exactness_baseline and
// verified_on, as MTPLX does.
RuntimeContract parse_runtime_contract(const nlohmann::json& json, const std::string& where);

}  // namespace mtplx

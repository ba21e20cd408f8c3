// Verification of a written MTPLX artifact (the last step of `mtplx forge`): load it the normal way, decode
// each prompt greedily with plain AR and with MTP at depths 1..3, require identical tokens, and measure
// per-position acceptance and decode speed. The results become the runtime contract's exactness_baseline,
// speed_evidence and verified_on.
//
// Exactness caveat, written into the baseline: the verify forward processes K+1 rows at once, whose float
// sums are not bitwise those of one-row AR forwards; a near-tie in the logits can flip a greedy token. A
// mismatch is therefore reported with the position and both tokens, never hidden.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mtplx {

struct VerifyOptions {
  std::vector<std::vector<int32_t>> prompts;  // token ids
  int64_t max_tokens = 32;                    // greedy tokens per prompt and lane
  int max_depth = 3;                          // MTP depths 1..max_depth
  int threads = 0;                            // CPU threads (0: all)
  std::string model_name;                     // verified_on.model; empty: the folder name
};

struct VerifyReport {
  bool passed = false;
  nlohmann::json exactness_baseline;
  nlohmann::json speed_evidence;
  nlohmann::json verified_on;

  // {"exactness_baseline": ..., "speed_evidence": ..., "verified_on": ...}
  nlohmann::json contract_fields() const;
};

VerifyReport verify_artifact(const std::filesystem::path& dir, const VerifyOptions& options);

}  // namespace mtplx

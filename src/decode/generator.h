// Generation with native MTP speculative decoding; plain autoregressive decoding is the same loop with
// zero drafts.
//
// One cycle (depth K):
//   lead    the last emitted token, not yet forwarded through the trunk
//   draft   the MTP head drafts d_1..d_K: step 1 pairs the lead with the trunk hidden state before it, step
//           s+1 pairs d_s with the head's own post-mtp.norm output, one RoPE position further
//   verify  one trunk forward over [lead, d_1..d_K] (K+1 rows) gives the target rows p_1..p_{K+1}; the
//           acceptance rule (decode/accept.h) keeps j drafts and adds a recovered or bonus token c
//   commit  the trunk is rolled back to the j+1 kept rows (GDN states captured per row, KV truncated);
//           the MTP head's cache is rewritten for those rows with the verified trunk hidden states at the
//           start of the next cycle's first draft step; c becomes the lead
// The emitted tokens have exactly the distribution of plain sampling from the target.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "decode/draft_head.h"
#include "decode/sampling.h"
#include "model/qwen35.h"

namespace mtplx {

struct GenerationConfig {
  SamplerConfig target;  // the distribution tokens are drawn from
  SamplerConfig draft;   // the MTP head's draft distribution
  int mtp_depth = 0;     // drafts per cycle (max when adaptive); 0 = autoregressive
  bool adaptive_depth = false;
  int64_t max_tokens = 256;      // tokens to emit at most
  int64_t context = 0;           // trunk positions; 0 = prompt + max_tokens + depth + 1
  std::vector<int32_t> eos_ids;  // generation ends on these (they are not emitted)
  uint64_t seed = 0;
  // Also forward the last emitted token and return the next-token logits (continuing a conversation; tests
  // of state consistency after speculative cycles).
  bool final_logits = false;
  // Sampled rows whose distribution a top-k cut decides (Sampler::candidates_needed) come to the host as
  // their k best entries, picked by the backend (Backend::top_k); false brings whole rows (the same tokens:
  // for tests and benchmarks).
  bool device_top_k = true;
  // Those rows (and the draft rows, when drafts are sampled under a top-k cut or greedy) are filtered,
  // drawn and accepted where the logits are when the backend offers it (Backend::device_sampler; needs
  // device_top_k): only token ids and the accepted count come to the host. The uniforms are the host Rng's,
  // used in the host path's order, so the tokens are the host path's up to the last bit of an exp (a token
  // can differ only where a uniform falls in that rounding gap). false: filtered and accepted on the host.
  bool device_sampling = true;
  // Drafts stay where the backend picked them (Backend::token_slots) when they are greedy or drawn by the
  // device sampler: each feeds the next draft step and the verify without a host round trip. With step
  // graphs and a greedy or device-sampled target a cycle waits for the device once (its drafts and greedy
  // target picks read together, or the device sampler's verdict). false: each draft comes to the host as
  // it is picked (the same tokens: for tests and benchmarks).
  bool device_draft_ids = true;

  void validate() const;
};

enum class FinishReason { kEos, kStop, kLength, kContext };
std::string_view finish_reason_name(FinishReason reason);

struct GenerationStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prefill_seconds = 0;  // prompt forward + first token
  double decode_seconds = 0;   // everything after the first token
  int64_t cycles = 0;
  std::vector<int64_t> drafted_at;   // [depth] drafts tested at position i
  std::vector<int64_t> accepted_at;  // [depth] drafts accepted at position i
  bool device_sampling = false;      // sampled tokens were drawn and accepted on the device

  double prefill_tokens_per_second() const;
  double decode_tokens_per_second() const;  // tokens after the first over decode time
  double tokens_per_cycle() const;
  double acceptance(int position) const;  // accepted / drafted at that position
};

// Receives each emitted token in order; returning false stops generation after that token (stop strings).
using TokenSink = std::function<bool(int32_t token)>;

struct GenerationResult {
  std::vector<int32_t> tokens;
  FinishReason finish = FinishReason::kLength;
  GenerationStats stats;
  std::vector<float> final_logits;  // [V] when requested (not after an eos)
};

class Generator {
 public:
  // draft_head may be null for autoregressive decoding only.
  Generator(Qwen35Model& model, DraftHead* draft_head);

  GenerationResult generate(std::span<const int32_t> prompt, const GenerationConfig& config,
                            const TokenSink& sink = {});

 private:
  Qwen35Model& model_;
  DraftHead* draft_head_;
};

}  // namespace mtplx

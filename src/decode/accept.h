// Speculative acceptance: turns K drafted tokens plus the trunk's K+1 verify rows into the tokens this cycle
// emits, so that the emitted sequence has exactly the distribution plain (one token at a time) sampling from
// the target would give, at any temperature and for any draft distribution.
//
// Rule: speculative sampling of Leviathan, Kalman & Matias, "Fast Inference from Transformers via Speculative
// Decoding" (ICML 2023, arXiv 2211.17192, Algorithm 1 / Theorem 1) and Chen et al., "Accelerating Large
// Language Model Decoding with Speculative Sampling" (arXiv 2302.01318). Inputs:
//   d_1..d_K   draft tokens, d_i drawn from q_i (the draft distribution actually sampled, after its filters)
//   p_1..p_{K+1} target distributions from the verify forward; p_i scores position i given d_1..d_{i-1}
// For i = 1..K: accept d_i with probability min(1, p_i(d_i) / q_i(d_i)). On the first rejection, draw the
// token for position i from normalize(max(p_i - q_i, 0)) and stop. If all K are accepted, draw one more token
// from p_{K+1}. Terms (as in vLLM's RejectionSampler):
//   accepted  - drafts kept, d_1..d_j (j = 0..K)
//   recovered - the token drawn from the residual normalize((p_j+1 - q_j+1)+) after a rejection
//   bonus     - the token drawn from p_{K+1} when every draft was accepted
//   emitted   = accepted + (recovered or bonus): always j + 1 tokens.
// Why it is exact: P(emit x) = q(x) min(1, p(x)/q(x)) + P(reject) r(x) = min(q, p)(x) + (p - q)+(x) = p(x),
// because P(reject) = sum (q - p)+ = sum (p - q)+ is exactly the residual's normaliser.
//
// Greedy target (temperature 0) is the same rule with one-hot p_i; verify_greedy is its fast form: accept
// while the draft equals the target argmax, emit the argmax where they first differ (or the bonus argmax).
// Probabilities and ratios are fp32.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "decode/sampling.h"

namespace mtplx {

class Rng;

inline constexpr int kMaxDraftTokens = 16;  // K bound; Qwen3.5 MTP depths in use are 1..5

struct Verdict {
  int drafted = 0;   // K
  int accepted = 0;  // j: accepted drafts, 0..K
  std::array<std::int32_t, kMaxDraftTokens + 1>
      tokens{};  // [accepted + 1] used: d_1..d_j, then recovered/bonus

  int count() const { return accepted + 1; }
  bool bonus() const { return accepted == drafted; }  // last token is the bonus (else it is recovered)
  std::span<const std::int32_t> emitted() const { return {tokens.data(), static_cast<std::size_t>(count())}; }
};

// min(1, p / q): the probability of keeping a draft whose draft probability is q > 0 and target probability
// p.
float acceptance_probability(float p, float q);

// out = normalize(max(p - q, 0)) over the union of both supports (sparse, ascending ids). If the residual has
// no mass (p == q up to rounding, where a rejection has probability ~0) it falls back to p, as MTPLX does.
// p and q must share a vocabulary. `out` keeps its capacity across calls.
void residual_distribution(const Distribution& p, const Distribution& q, Distribution& out);

// The sampled rule above. drafts: [K], q: [K], p: [K+1]; q[i].prob(drafts[i]) must be > 0 (the draft was
// drawn from it). Uses one rng.uniform() per tested draft plus one for the recovered or bonus token.
// `scratch` holds the residual between calls so the hot path does not allocate.
Verdict verify_sampled(std::span<const std::int32_t> drafts, std::span<const Distribution> q,
                       std::span<const Distribution> p, Rng& rng, Distribution& scratch);

// Greedy target. drafts: [K]; target_argmax: [K+1], the argmax token of each verify row.
Verdict verify_greedy(std::span<const std::int32_t> drafts, std::span<const std::int32_t> target_argmax);

}  // namespace mtplx

// Sampling filters: one pipeline turns a row of logits into the probability vector that a token is drawn
// from.
//
// The same pipeline builds the target distribution p (trunk logits, target config) and the draft distribution
// q (MTP-head logits, draft config). Speculative acceptance is exact only if q is the distribution the draft
// was really drawn from and p is the one plain decoding would draw from, so both go through Sampler::filter.
//
// Order (HF generation order, with OpenAI penalties in front as vLLM does):
//   penalties on raw logits -> / temperature -> top-k -> top-p -> min-p -> renormalise (fp32).
// - repetition_penalty (HF RepetitionPenaltyLogitsProcessor): for every distinct token in prompt + generated,
//   a logit > 0 is divided by the penalty and a logit < 0 multiplied by it.
// - presence / frequency (OpenAI): logit -= frequency * count + presence * (count > 0), with count taken over
//   the generated tokens only.
// - temperature 0 means greedy: a one-hot on the argmax of the penalised logits (ties -> lowest id).
// - top_k keeps exactly k tokens; among equal logits the lower id wins (HF keeps every tie at the k-th value,
//   which makes the support size data-dependent; we prefer a fixed bound).
// - top_p (HF TopPLogitsWarper): over the top-k renormalised probabilities in descending order (ties by id),
//   keep the smallest prefix whose cumulative probability is >= top_p, i.e. keep a token while the mass
//   before it is < top_p. At least one token is always kept.
// - min_p (HF MinPLogitsWarper): keep tokens with p >= min_p * p_max (scale-free, so renormalising first or
//   not gives the same set).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "backend/row_pick.h"

namespace mtplx {

class Rng;

struct SamplerConfig {
  float temperature = 1;         // >= 0; 0 = greedy
  int top_k = 0;                 // >= 0; 0 = off
  float top_p = 1;               // in (0, 1]; 1 = off
  float min_p = 0;               // in [0, 1); 0 = off
  float repetition_penalty = 1;  // > 0; 1 = off
  float presence_penalty = 0;    // finite; 0 = off
  float frequency_penalty = 0;   // finite; 0 = off

  // Throws mtplx::Error naming the field, the bad value and the accepted range.
  void validate() const;
  bool greedy() const { return temperature == 0; }
  bool has_penalties() const {
    return repetition_penalty != 1 || presence_penalty != 0 || frequency_penalty != 0;
  }
};

// Tokens the penalties look at. Either span may be empty.
struct TokenHistory {
  std::span<const std::int32_t> prompt;     // [n_prompt]    repetition penalty only
  std::span<const std::int32_t> generated;  // [n_generated] repetition, presence and frequency penalties
};

// A probability vector over the vocabulary, fp32. Sparse (ascending token ids + their probabilities) when a
// filter cut the support, dense (one entry per token id) otherwise. Tokens outside the support have p = 0.
// A value type: keep one per row and refill it, so its buffers are reused and the hot path does not allocate.
class Distribution {
 public:
  Distribution() = default;
  static Distribution one_hot(int vocab, std::int32_t token);
  // From a full probability vector [vocab]: keeps the nonzero entries (sparse) and renormalises them.
  static Distribution from_probs(std::span<const float> probs);

  int vocab() const { return vocab_; }
  bool dense() const { return dense_; }
  int size() const { return static_cast<int>(probs_.size()); }  // support entries stored
  std::int32_t id_at(int i) const { return dense_ ? i : ids_[static_cast<std::size_t>(i)]; }
  std::span<const std::int32_t> ids() const { return ids_; }  // sparse: [size] ascending; dense: empty
  std::span<const float> probs() const { return probs_; }     // [size], aligned with id_at(i)
  // p(token); 0 outside the support. O(1) when dense, binary search over the (small) support when sparse.
  float prob(std::int32_t token) const;

  // Writers, used by Sampler and the acceptance code; capacity is kept across calls.
  std::span<float> reset_dense(int vocab);  // returns probs [vocab], contents unspecified
  void reset_sparse(int vocab);             // empty support, then push() ascending ids
  void push(std::int32_t token, float p);   // ids must arrive in ascending order
  void normalize();                         // divide by the sum; throws if the sum is not > 0

 private:
  int vocab_ = 0;
  bool dense_ = false;
  std::vector<std::int32_t> ids_;  // [size] when sparse
  std::vector<float> probs_;       // [size] (sparse) or [vocab] (dense)
};

// Runs the filter pipeline for one SamplerConfig. Owns workspace sized to the vocabulary (allocated once in
// the constructor) so that filter() does not allocate once `out` has grown to its working size.
class Sampler {
 public:
  Sampler(const SamplerConfig& config, int vocab);  // validates the config

  // logits: [vocab]. Writes the filtered, renormalised distribution into `out`. Throws if the logits leave no
  // positive finite mass (all -inf or NaN).
  void filter(std::span<const float> logits, const TokenHistory& history, Distribution& out);
  void filter(std::span<const float> logits, Distribution& out) { filter(logits, TokenHistory{}, out); }

  // The number of top candidates that decide this config's distribution (top_k), or 0 when it needs the
  // whole row (greedy, penalties, or no top-k cut). When it is k > 0, filter_top_k over a row's k best
  // entries (Backend::top_k) gives exactly what filter gives over the row.
  int candidates_needed() const;
  // candidates: the row's best entries, best first (row_pick.h's rank), {0, -1} entries after the last one
  // are ignored; at most candidates_needed() of them are used.
  void filter_top_k(std::span<const ScoredToken> candidates, Distribution& out);

  const SamplerConfig& config() const { return config_; }
  int vocab() const { return vocab_; }

 private:
  std::span<const float> apply_penalties(std::span<const float> logits, const TokenHistory& history);
  double select_top_p_full(std::span<const float> logits);  // returns the full-vocabulary weight sum
  void finish_candidates(double total, Distribution& out);
  void filter_dense(std::span<const float> logits, Distribution& out);

  SamplerConfig config_;
  int vocab_;
  std::vector<float> penalized_;         // [vocab] logits after penalties (used only when penalties are on)
  std::vector<std::int32_t> counts_;     // [vocab] generated-token counts; all zero between calls
  std::vector<std::uint8_t> seen_;       // [vocab] history marks; all zero between calls
  std::vector<ScoredToken> candidates_;  // [<= vocab] working set, sorted by descending logit when finished
};

// Draws a token id from `dist` with one rng.uniform().
std::int32_t sample(const Distribution& dist, Rng& rng);

// Index of the largest logit; ties go to the lowest id. NaN entries are never chosen. logits: [vocab].
std::int32_t argmax(std::span<const float> logits);

}  // namespace mtplx

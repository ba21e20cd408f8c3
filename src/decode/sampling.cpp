#include "decode/sampling.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "decode/rng.h"

namespace mtplx {
namespace {

constexpr std::string_view kWhere = "sampler config";

void require_finite(float value, std::string_view name) {
  if (!std::isfinite(value))
    fail(str(name, " must be a finite number, got ", value), kWhere, str("set ", name, " to a finite value"));
}

}  // namespace

void SamplerConfig::validate() const {
  require_finite(temperature, "temperature");
  require_finite(top_p, "top_p");
  require_finite(min_p, "min_p");
  require_finite(repetition_penalty, "repetition_penalty");
  require_finite(presence_penalty, "presence_penalty");
  require_finite(frequency_penalty, "frequency_penalty");
  if (!(temperature >= 0))
    fail(str("temperature must be >= 0, got ", temperature), kWhere,
         "use 0 for greedy decoding or a positive temperature such as 0.6");
  if (top_k < 0) fail(str("top_k must be >= 0, got ", top_k), kWhere, "use 0 to disable top-k");
  if (!(top_p > 0 && top_p <= 1))
    fail(str("top_p must be in (0, 1], got ", top_p), kWhere, "use 1 to disable top-p");
  if (!(min_p >= 0 && min_p < 1))
    fail(str("min_p must be in [0, 1), got ", min_p), kWhere, "use 0 to disable min-p");
  if (!(repetition_penalty > 0))
    fail(str("repetition_penalty must be > 0, got ", repetition_penalty), kWhere,
         "use 1 to disable the repetition penalty");
}

// ---- Distribution
// -------------------------------------------------------------------------------------------

Distribution Distribution::one_hot(int vocab, std::int32_t token) {
  if (token < 0 || token >= vocab)
    fail(str("token ", token, " is outside the vocabulary [0, ", vocab, ")"), "Distribution::one_hot");
  Distribution d;
  d.reset_sparse(vocab);
  d.push(token, 1.0f);
  return d;
}

Distribution Distribution::from_probs(std::span<const float> probs) {
  Distribution d;
  d.reset_sparse(static_cast<int>(probs.size()));
  for (std::size_t i = 0; i < probs.size(); ++i) {
    if (!(std::isfinite(probs[i]) && probs[i] >= 0))
      fail(str("probability ", probs[i], " at token ", i), "Distribution::from_probs",
           "pass finite, non-negative probabilities");
    if (probs[i] > 0) d.push(static_cast<std::int32_t>(i), probs[i]);
  }
  d.normalize();
  return d;
}

float Distribution::prob(std::int32_t token) const {
  if (token < 0 || token >= vocab_)
    fail(str("token ", token, " is outside the vocabulary [0, ", vocab_, ")"), "Distribution::prob");
  if (dense_) return probs_[static_cast<std::size_t>(token)];
  const auto it = std::lower_bound(ids_.begin(), ids_.end(), token);
  return it != ids_.end() && *it == token ? probs_[static_cast<std::size_t>(it - ids_.begin())] : 0.0f;
}

std::span<float> Distribution::reset_dense(int vocab) {
  vocab_ = vocab;
  dense_ = true;
  ids_.clear();
  probs_.resize(static_cast<std::size_t>(vocab));
  return probs_;
}

void Distribution::reset_sparse(int vocab) {
  vocab_ = vocab;
  dense_ = false;
  ids_.clear();
  probs_.clear();
}

void Distribution::push(std::int32_t token, float p) {
  ids_.push_back(token);
  probs_.push_back(p);
}

void Distribution::normalize() {
  double total = 0;
  for (float p : probs_) total += p;
  require(std::isfinite(total) && total > 0, "distribution has no positive finite mass",
          "Distribution::normalize", "check the logits for NaN, +inf or all -inf rows");
  const float scale = static_cast<float>(1.0 / total);
  for (float& p : probs_) p *= scale;
}

// ---- Sampler
// ------------------------------------------------------------------------------------------------

Sampler::Sampler(const SamplerConfig& config, int vocab) : config_(config), vocab_(vocab) {
  config_.validate();
  if (vocab <= 0) fail(str("vocabulary size must be positive, got ", vocab), "Sampler");
  const auto v = static_cast<std::size_t>(vocab);
  if (config_.has_penalties()) {
    penalized_.resize(v);
    counts_.assign(v, 0);
    seen_.assign(v, 0);
  }
  if (config_.greedy()) return;
  if (config_.top_k > 0 && config_.top_k < vocab) {
    candidates_.reserve(static_cast<std::size_t>(config_.top_k));
  } else if (config_.top_p < 1) {
    candidates_.reserve(v);
  }
}

std::span<const float> Sampler::apply_penalties(std::span<const float> logits, const TokenHistory& history) {
  if (!config_.has_penalties()) return logits;
  // Check every id before touching counts_/seen_ so a throw cannot leave them dirty.
  for (auto part : {history.prompt, history.generated})
    for (std::int32_t t : part)
      if (t < 0 || t >= vocab_)
        fail(str("history token ", t, " is outside the vocabulary [0, ", vocab_, ")"), "Sampler::filter",
             "pass token ids produced by this model's tokenizer");

  std::copy(logits.begin(), logits.end(), penalized_.begin());
  for (std::int32_t t : history.generated) ++counts_[static_cast<std::size_t>(t)];
  const float rep = config_.repetition_penalty;
  auto penalize = [&](std::int32_t t) {
    const auto i = static_cast<std::size_t>(t);
    if (seen_[i]) return;  // each distinct token is penalised once, however often it occurs
    seen_[i] = 1;
    float x = logits[i];
    if (rep != 1) x = x > 0 ? x / rep : x * rep;
    const auto count = static_cast<float>(counts_[i]);
    x -= config_.frequency_penalty * count + (counts_[i] > 0 ? config_.presence_penalty : 0.0f);
    penalized_[i] = x;
  };
  for (std::int32_t t : history.prompt) penalize(t);
  for (std::int32_t t : history.generated) penalize(t);
  for (auto part : {history.prompt, history.generated})
    for (std::int32_t t : part) {
      counts_[static_cast<std::size_t>(t)] = 0;
      seen_[static_cast<std::size_t>(t)] = 0;
    }
  return penalized_;
}

namespace {

// Candidates are ranked by row_pick.h's ranks_before (descending logit, then ascending id) for top-k, top-p
// and min-p alike.
// Unnormalised fp32 logit -> weight exp((logit - top) / T) in [0, 1], widened to double for the running sums
// (fp32 exp: about twice as fast as double over a 248k row, and its 1e-7 relative error is far below what the
// sampled distribution can resolve). Every path uses this one function, so the top-p walk, the min-p test and
// the final probabilities agree bit for bit.
double weight(float logit, float top, float inv_t) {
  return std::exp((logit - top) * inv_t);
}

}  // namespace

double Sampler::select_top_p_full(std::span<const float> logits) {
  candidates_.clear();
  float top = -INFINITY;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    if (std::isnan(logits[i])) continue;
    candidates_.push_back({logits[i], static_cast<std::int32_t>(i)});
    top = std::max(top, logits[i]);
  }
  require(std::isfinite(top), "logits have no finite maximum (all -inf, NaN or +inf)", "Sampler::filter");
  const float inv_t = 1.0f / config_.temperature;
  double total = 0;
  for (const auto& c : candidates_) total += weight(c.value, top, inv_t);

  // Rank only as much as top_p needs: select and sort the next block (64, then x4 each round) past what is
  // already ranked. A peaked distribution costs O(V); only a flat one approaches a full sort.
  const auto first = candidates_.begin();
  const std::size_t n = candidates_.size();
  std::size_t ranked = 0;
  double before = 0;
  while (ranked < n) {
    const std::size_t end = std::min(n, std::max<std::size_t>(64, ranked * 4));
    if (end < n) std::nth_element(first + ranked, first + end, candidates_.end(), ranks_before);
    std::sort(first + ranked, first + end, ranks_before);
    for (; ranked < end; ++ranked) {
      if (ranked > 0 && before >= config_.top_p) {
        candidates_.resize(ranked);
        return total;
      }
      before += weight(candidates_[ranked].value, top, inv_t) / total;
    }
  }
  return total;
}

void Sampler::finish_candidates(double total, Distribution& out) {
  // candidates_: [n] sorted by Better. `total` normalises the weights: the full-vocabulary sum from
  // select_top_p_full, or 0 for "the candidates themselves" (top-k path: top-p sees renormalised top-k).
  require(!candidates_.empty() && std::isfinite(candidates_.front().value),
          "logits have no finite maximum (all -inf, NaN or +inf)", "Sampler::filter");
  const float top = candidates_.front().value;
  const float inv_t = 1.0f / config_.temperature;
  if (total <= 0)
    for (const auto& c : candidates_) total += weight(c.value, top, inv_t);
  // top-p keeps a token while the mass before it is < top_p; min-p keeps p >= min_p * p_max, i.e. weight >=
  // min_p since the first candidate has weight 1. Zero weights (-inf logits) never enter the support.
  // top_p = 1 must not cut anything, even when rounding lets the running sum reach 1 before the tail.
  const double top_p = config_.top_p < 1 ? config_.top_p : INFINITY;
  double before = 0;
  std::size_t keep = 0;
  for (; keep < candidates_.size(); ++keep) {
    const double w = weight(candidates_[keep].value, top, inv_t);
    if (keep > 0 && (before >= top_p || w < config_.min_p || w == 0)) break;
    before += w / total;
  }
  candidates_.resize(keep);
  std::sort(candidates_.begin(), candidates_.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  out.reset_sparse(vocab_);
  for (const auto& c : candidates_) out.push(c.id, static_cast<float>(weight(c.value, top, inv_t)));
  out.normalize();
}

void Sampler::filter_dense(std::span<const float> logits, Distribution& out) {
  // No top-k / top-p: every token with weight >= min_p survives; dense output when min-p is off too.
  const float top = max_value(logits);
  require(std::isfinite(top), "logits have no finite maximum (all -inf, NaN or +inf)", "Sampler::filter");
  const float inv_t = 1.0f / config_.temperature;
  if (config_.min_p > 0) {
    // Most tokens fail min-p by far: a logit cut-off with a safety margin skips their exp; the exact test on
    // the weight still decides the rest.
    const float cutoff = top + (std::log(config_.min_p) - 1e-3f) * config_.temperature;
    out.reset_sparse(vocab_);
    for (std::size_t i = 0; i < logits.size(); ++i) {
      if (!(logits[i] >= cutoff)) continue;  // also drops NaN
      const double w = weight(logits[i], top, inv_t);
      if (w >= config_.min_p && w > 0) out.push(static_cast<std::int32_t>(i), static_cast<float>(w));
    }
  } else {
    auto probs = out.reset_dense(vocab_);  // [vocab]
    for (std::size_t i = 0; i < logits.size(); ++i)
      probs[i] = std::isnan(logits[i]) ? 0.0f : static_cast<float>(weight(logits[i], top, inv_t));
  }
  out.normalize();
}

void Sampler::filter(std::span<const float> logits, const TokenHistory& history, Distribution& out) {
  if (std::ssize(logits) != vocab_)
    fail(str("logits row has ", logits.size(), " entries but the sampler was built for vocabulary ", vocab_),
         "Sampler::filter");
  const auto z = apply_penalties(logits, history);  // [vocab]
  if (config_.greedy()) {
    out.reset_sparse(vocab_);
    out.push(argmax(z), 1.0f);
  } else if (config_.top_k > 0 && config_.top_k < vocab_) {
    select_top_k(z, static_cast<std::size_t>(config_.top_k), candidates_);
    finish_candidates(0, out);
  } else if (config_.top_p < 1) {
    finish_candidates(select_top_p_full(z), out);
  } else {
    filter_dense(z, out);
  }
}

int Sampler::candidates_needed() const {
  const bool cut = config_.top_k > 0 && config_.top_k < vocab_;
  return cut && !config_.greedy() && !config_.has_penalties() ? config_.top_k : 0;
}

void Sampler::filter_top_k(std::span<const ScoredToken> candidates, Distribution& out) {
  const int k = candidates_needed();
  require(k > 0, "this sampler config needs the whole logits row (greedy, penalties or no top-k)",
          "Sampler::filter_top_k");
  candidates_.clear();
  for (const ScoredToken& c : candidates.first(std::min(candidates.size(), static_cast<std::size_t>(k)))) {
    if (c.id < 0) break;
    if (c.id >= vocab_)
      fail(str("candidate token ", c.id, " is outside the vocabulary [0, ", vocab_, ")"),
           "Sampler::filter_top_k");
    candidates_.push_back(c);
  }
  finish_candidates(0, out);
}

std::int32_t sample(const Distribution& dist, Rng& rng) {
  return dist.id_at(rng.categorical(dist.probs()));
}

std::int32_t argmax(std::span<const float> logits) {
  const int64_t index = first_max_index(logits);
  require(index >= 0, "argmax of a row with no comparable entry (empty or all NaN)", "argmax");
  return static_cast<std::int32_t>(index);
}

}  // namespace mtplx

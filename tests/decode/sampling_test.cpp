// Sampler filter pipeline against a plain full-sort reference, plus config validation and edge cases.
#include "decode/sampling.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "base/error.h"
#include "decode/rng.h"
#include "decode/stats.h"

namespace mtplx {
namespace {

using ::testing::HasSubstr;

// ---- Reference: the pipeline written the obvious way, in double, with one full sort
// ---------------------------

struct Reference {
  std::vector<double> probs;  // [V]
  bool ambiguous = false;     // a top-p / min-p boundary lies within rounding of the threshold
};

std::vector<double> reference_penalties(std::span<const float> logits, const SamplerConfig& c,
                                        const std::vector<std::int32_t>& prompt,
                                        const std::vector<std::int32_t>& generated) {
  std::vector<double> z(logits.begin(), logits.end());
  std::map<std::int32_t, int> counts;
  for (auto t : generated) counts[t] += 1;
  std::set<std::int32_t> seen(prompt.begin(), prompt.end());
  seen.insert(generated.begin(), generated.end());
  for (auto t : seen) {
    double& x = z[static_cast<std::size_t>(t)];
    x = x < 0 ? x * c.repetition_penalty : x / c.repetition_penalty;
    const int n = counts.count(t) ? counts[t] : 0;
    x -= n * static_cast<double>(c.frequency_penalty) + (n > 0 ? c.presence_penalty : 0.0);
  }
  return z;
}

Reference reference_filter(std::span<const float> logits, const SamplerConfig& c,
                           const std::vector<std::int32_t>& prompt = {},
                           const std::vector<std::int32_t>& generated = {}) {
  const std::vector<double> z = reference_penalties(logits, c, prompt, generated);
  const std::size_t v = z.size();
  std::vector<std::size_t> order(v);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return z[a] != z[b] ? z[a] > z[b] : a < b; });
  Reference ref;
  ref.probs.assign(v, 0.0);
  if (c.temperature == 0) {
    ref.probs[order[0]] = 1;
    return ref;
  }
  const std::size_t k = c.top_k > 0 ? std::min<std::size_t>(static_cast<std::size_t>(c.top_k), v) : v;
  order.resize(k);
  std::vector<double> p(k);
  for (std::size_t r = 0; r < k; ++r) p[r] = std::exp((z[order[r]] - z[order[0]]) / c.temperature);
  const double sum = std::accumulate(p.begin(), p.end(), 0.0);
  for (double& x : p) x /= sum;
  std::size_t keep = k;  // top-p: smallest prefix with cumulative >= top_p
  if (c.top_p < 1) {
    keep = 1;
    for (double cum = p[0]; keep < k && cum < c.top_p; ++keep) cum += p[keep];
    const double cum_before = std::accumulate(p.begin(), p.begin() + static_cast<long>(keep) - 1, 0.0);
    if (keep < k) ref.ambiguous |= std::abs(cum_before + p[keep - 1] - c.top_p) < 1e-5;
    ref.ambiguous |= keep > 1 && std::abs(cum_before - c.top_p) < 1e-5;
  }
  for (std::size_t r = 0; r < keep; ++r) {
    const double rel = p[r] / p[0];
    ref.ambiguous |= c.min_p > 0 && std::abs(rel - c.min_p) < 1e-5;
    if (rel >= c.min_p && p[r] > 0) ref.probs[order[r]] = p[r];
  }
  const double kept = std::accumulate(ref.probs.begin(), ref.probs.end(), 0.0);
  for (double& x : ref.probs) x /= kept;
  return ref;
}

// ---- Helpers
// ---------------------------------------------------------------------------------------------------

std::vector<double> dense(const Distribution& d) {
  std::vector<double> out(static_cast<std::size_t>(d.vocab()), 0.0);
  for (int i = 0; i < d.size(); ++i)
    out[static_cast<std::size_t>(d.id_at(i))] = d.probs()[static_cast<std::size_t>(i)];
  return out;
}

// Random logits with planted ties and a few -inf entries.
std::vector<float> random_logits(std::mt19937_64& gen, int v, bool ties) {
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(static_cast<std::size_t>(v));
  for (float& x : logits) x = normal(gen);
  if (ties && v > 2) {
    std::uniform_int_distribution<int> pick(0, v - 1);
    for (int i = 0; i < v / 3 + 1; ++i)
      logits[static_cast<std::size_t>(pick(gen))] = logits[static_cast<std::size_t>(pick(gen))];
    // A tie at the very top, where top-k and greedy have to choose.
    const auto top = std::max_element(logits.begin(), logits.end());
    logits[static_cast<std::size_t>(pick(gen))] = *top;
  }
  if (v > 4) logits[static_cast<std::size_t>(v / 2)] = -INFINITY;
  return logits;
}

void expect_matches_reference(const Distribution& got, const Reference& ref, const std::string& what) {
  const auto g = dense(got);
  ASSERT_EQ(g.size(), ref.probs.size()) << what;
  for (std::size_t t = 0; t < g.size(); ++t) {
    ASSERT_EQ(g[t] > 0, ref.probs[t] > 0) << what << " support differs at token " << t;
    ASSERT_NEAR(g[t], ref.probs[t], 2e-6) << what << " token " << t;
  }
  for (int i = 1; i < got.size(); ++i)
    ASSERT_LT(got.id_at(i - 1), got.id_at(i)) << what << " ids not ascending";
}

// ---- (c) pipeline vs reference
// ---------------------------------------------------------------------------------

TEST(Sampler, MatchesFullSortReferenceOnRandomConfigs) {
  std::mt19937_64 gen(2024);
  const std::vector<int> vocabs = {1, 2, 5, 8, 50, 1000};
  const std::vector<float> temps = {0, 0.3f, 0.7f, 1, 1.7f};
  const std::vector<int> top_ks = {0, 1, 3, 10, 40};
  const std::vector<float> top_ps = {1, 0.95f, 0.6f, 0.2f};
  const std::vector<float> min_ps = {0, 0.02f, 0.3f};
  auto pick = [&](const auto& options) { return options[gen() % options.size()]; };
  int checked = 0, skipped = 0;
  Distribution out;
  for (int trial = 0; trial < 3000; ++trial) {
    const int v = pick(vocabs);
    SamplerConfig c;
    c.temperature = pick(temps);
    c.top_k = trial % 7 == 0 ? v + 3 : pick(top_ks);  // top_k >= V means off
    c.top_p = pick(top_ps);
    c.min_p = pick(min_ps);
    std::vector<std::int32_t> prompt, generated;
    if (trial % 2) {
      c.repetition_penalty = pick(std::vector<float>{1, 1.3f, 0.8f});
      c.presence_penalty = pick(std::vector<float>{0, 0.5f, -0.4f});
      c.frequency_penalty = pick(std::vector<float>{0, 0.3f, 1.1f});
      for (int i = 0; i < 6; ++i)
        prompt.push_back(static_cast<std::int32_t>(gen() % static_cast<unsigned>(v)));
      for (int i = 0; i < 9; ++i)
        generated.push_back(static_cast<std::int32_t>(gen() % static_cast<unsigned>(v)));
    }
    const auto logits = random_logits(gen, v, trial % 3 != 0);
    const Reference ref = reference_filter(logits, c, prompt, generated);
    if (ref.ambiguous) {
      ++skipped;
      continue;
    }
    Sampler sampler(c, v);
    sampler.filter(logits, TokenHistory{prompt, generated}, out);
    expect_matches_reference(out, ref,
                             str("trial ", trial, " V=", v, " T=", c.temperature, " k=", c.top_k,
                                 " p=", c.top_p, " min_p=", c.min_p, " rep=", c.repetition_penalty));
    if (HasFatalFailure()) return;
    ++checked;
  }
  EXPECT_LT(skipped, 30) << "too many boundary-ambiguous cases for the comparison to mean much";
  EXPECT_GT(checked, 2900);
}

TEST(Sampler, MatchesReferenceAtFullQwenVocabulary) {
  constexpr int kVocab = 248320;
  // A realistic shape: ~3000 plausible tokens scattered over the vocabulary hold most of the mass, the rest
  // is a long flat tail. The top-p boundary then falls among tokens of p ~ 1e-4, well apart from rounding.
  std::mt19937_64 gen(7);
  auto logits = random_logits(gen, kVocab, true);
  for (float& x : logits) x /= 3;
  const auto base = logits;
  for (int i = 0; i < 3000; ++i) {
    const auto t = gen() % kVocab;
    logits[t] = base[t] + 8;  // from base, so a token picked twice is not lifted twice
  }
  const std::vector<std::int32_t> prompt = {5, 17, 900, 248319}, generated = {17, 17, 123456, 0};
  auto check = [&](const SamplerConfig& c) {
    const Reference ref = reference_filter(logits, c, prompt, generated);
    if (ref.ambiguous) return -1;
    Distribution out;
    Sampler(c, kVocab).filter(logits, {prompt, generated}, out);
    expect_matches_reference(out, ref, str("T=", c.temperature, " k=", c.top_k, " p=", c.top_p));
    return out.size();
  };
  EXPECT_GT(check({0.6f, 20, 0.95f, 0, 1, 0, 0}), 1);           // MTPLX default
  EXPECT_GT(check({1.0f, 0, 1, 0.1f, 1, 0, 0}), 1);             // min-p only: sparse scan
  EXPECT_EQ(check({0.8f, 0, 1, 0, 1.2f, 0.5f, 0.2f}), kVocab);  // dense output with penalties
  EXPECT_EQ(check({0, 0, 1, 0, 1, 0, 0}), 1);                   // greedy
  // Top-p over the whole vocabulary, which needs several rounds of incremental selection. Step top_p past
  // the (rare) thresholds that sit within rounding of a cumulative sum.
  int nucleus = -1;
  for (float top_p = 0.8f; nucleus < 0 && top_p < 0.85f; top_p += 0.001f)
    nucleus = check({1, 0, top_p, 0, 1, 0, 0});
  EXPECT_GT(nucleus, 64 * 4 * 4) << "the nucleus should span several selection rounds";
}

// ---- Targeted semantics
// ----------------------------------------------------------------------------------------

TEST(Sampler, GreedyPicksLowestIdAmongTiedMaxima) {
  const std::vector<float> logits = {1, 3, 2, 3, 3};
  Distribution out;
  Sampler(SamplerConfig{.temperature = 0}, 5).filter(logits, out);
  EXPECT_EQ(out.size(), 1);
  EXPECT_EQ(out.id_at(0), 1);
  EXPECT_EQ(out.prob(1), 1.0f);
  EXPECT_EQ(argmax(logits), 1);
}

TEST(Sampler, TopKTiesKeepLowerIds) {
  const std::vector<float> logits = {0, 2, 1, 2, 2, -1};
  Distribution out;
  Sampler(SamplerConfig{.top_k = 2}, 6).filter(logits, out);
  ASSERT_EQ(out.size(), 2);
  EXPECT_EQ(out.id_at(0), 1);
  EXPECT_EQ(out.id_at(1), 3);
  EXPECT_FLOAT_EQ(out.prob(1), 0.5f);
}

TEST(Sampler, TopPKeepsSmallestPrefixReachingTopP) {
  // Probabilities 0.5, 0.3, 0.2 (logits are their logs). top_p = 0.8 is reached exactly by {0, 1}.
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  Distribution out;
  Sampler(SamplerConfig{.top_p = 0.7f}, 3).filter(logits, out);
  EXPECT_EQ(out.size(), 2);
  Sampler(SamplerConfig{.top_p = 0.4f}, 3).filter(logits, out);
  EXPECT_EQ(out.size(), 1);  // the top token alone already covers 0.4
  Sampler(SamplerConfig{.top_p = 0.81f}, 3).filter(logits, out);
  EXPECT_EQ(out.size(), 3);
}

TEST(Sampler, MinPIsRelativeToTheTopProbability) {
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  Distribution out;
  Sampler(SamplerConfig{.min_p = 0.2f}, 4).filter(logits, out);  // keeps p >= 0.1
  EXPECT_EQ(out.size(), 3);
  EXPECT_NEAR(out.prob(0), 0.5 / 0.95, 1e-6);
}

TEST(Sampler, PenaltiesFollowHfAndOpenAiSemantics) {
  // Token 0: positive logit in prompt only -> divided. Token 1: negative, generated twice -> multiplied, then
  // minus 2 * frequency + presence. Token 2: untouched.
  const std::vector<float> logits = {2, -1, 0.5f};
  const SamplerConfig c{
      .temperature = 1, .repetition_penalty = 2, .presence_penalty = 0.25f, .frequency_penalty = 0.5f};
  const std::vector<std::int32_t> prompt = {0, 0}, generated = {1, 1};
  const std::vector<double> z = {1.0, -2.0 - 1.0 - 0.25, 0.5};
  const double sum = std::exp(z[0]) + std::exp(z[1]) + std::exp(z[2]);
  Distribution out;
  Sampler(c, 3).filter(logits, {prompt, generated}, out);
  for (int t = 0; t < 3; ++t) EXPECT_NEAR(out.prob(t), std::exp(z[static_cast<std::size_t>(t)]) / sum, 1e-6);
  // Workspace is clean between calls: no history, no penalty.
  Sampler s(c, 3);
  s.filter(logits, {prompt, generated}, out);
  s.filter(logits, out);
  EXPECT_NEAR(out.prob(2), std::exp(0.5) / (std::exp(2.0) + std::exp(-1.0) + std::exp(0.5)), 1e-6);
}

TEST(Sampler, SampleFollowsTheDistribution) {
  const std::vector<float> logits = {0.1f, 2, -1, 1.5f, 0.7f, -INFINITY, 1};
  Distribution d;
  Sampler(SamplerConfig{.temperature = 0.9f, .top_k = 5}, 7).filter(logits, d);
  const auto p = dense(d);
  std::vector<std::int64_t> counts(7, 0);
  Rng rng(99);
  for (int i = 0; i < 100000; ++i) ++counts[static_cast<std::size_t>(sample(d, rng))];
  EXPECT_GT(chi2_goodness_of_fit(counts, p).p_value, 1e-4);  // false-alarm rate 1e-4
}

// ---- (d) determinism
// -------------------------------------------------------------------------------------------

TEST(Sampler, SeededSamplingIsDeterministic) {
  std::mt19937_64 gen(3);
  const auto logits = random_logits(gen, 5000, false);
  Sampler sampler(SamplerConfig{.temperature = 3, .top_p = 0.9f}, 5000);
  Distribution d;
  sampler.filter(logits, d);
  auto draw = [&](std::uint64_t seed) {
    Rng rng(seed);
    std::vector<std::int32_t> tokens;
    for (int i = 0; i < 200; ++i) tokens.push_back(sample(d, rng));
    return tokens;
  };
  EXPECT_EQ(draw(11), draw(11));
  EXPECT_NE(draw(11), draw(12));
}

// ---- (e) invalid configurations and inputs
// ---------------------------------------------------------------------

void expect_invalid(const SamplerConfig& c, const std::string& needle) {
  try {
    c.validate();
    ADD_FAILURE() << "accepted a config with bad " << needle;
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(needle));
    EXPECT_THAT(e.what(), HasSubstr("sampler config"));
  }
  EXPECT_THROW(Sampler(c, 10), Error);
}

TEST(SamplerConfig, RejectsInvalidValuesWithClearMessages) {
  const float nan = NAN, inf = INFINITY;
  expect_invalid({.temperature = -0.1f}, "temperature must be >= 0, got -0.1");
  expect_invalid({.temperature = nan}, "temperature must be a finite number");
  expect_invalid({.temperature = inf}, "temperature must be a finite number");
  expect_invalid({.top_k = -1}, "top_k must be >= 0, got -1");
  expect_invalid({.top_p = 0}, "top_p must be in (0, 1], got 0");
  expect_invalid({.top_p = 1.5f}, "top_p must be in (0, 1]");
  expect_invalid({.top_p = nan}, "top_p must be a finite number");
  expect_invalid({.min_p = 1}, "min_p must be in [0, 1), got 1");
  expect_invalid({.min_p = -0.1f}, "min_p must be in [0, 1)");
  expect_invalid({.repetition_penalty = 0}, "repetition_penalty must be > 0, got 0");
  expect_invalid({.repetition_penalty = -1}, "repetition_penalty must be > 0");
  expect_invalid({.presence_penalty = inf}, "presence_penalty must be a finite number");
  expect_invalid({.frequency_penalty = nan}, "frequency_penalty must be a finite number");
  EXPECT_NO_THROW(SamplerConfig{}.validate());
  EXPECT_NO_THROW((SamplerConfig{0, 5, 0.5f, 0.5f, 1.5f, -2, -2}.validate()));
}

TEST(Sampler, RejectsBadInputs) {
  Distribution out;
  Sampler sampler(SamplerConfig{.repetition_penalty = 1.1f}, 4);
  const std::vector<float> logits = {0, 1, 2, 3};
  EXPECT_THAT([&] { sampler.filter(std::span<const float>(logits).first(3), out); },
              ::testing::ThrowsMessage<Error>(HasSubstr("vocabulary 4")));
  const std::vector<std::int32_t> bad = {4};
  EXPECT_THAT(
      [&] {
        sampler.filter(logits, {{}, bad}, out);
      },
      ::testing::ThrowsMessage<Error>(HasSubstr("history token 4")));
  const std::vector<float> masked(4, -INFINITY);
  for (const SamplerConfig& c : {SamplerConfig{}, SamplerConfig{.top_k = 2}, SamplerConfig{.top_p = 0.5f}})
    EXPECT_THAT([&] { Sampler(c, 4).filter(masked, out); },
                ::testing::ThrowsMessage<Error>(HasSubstr("no finite maximum")));
  EXPECT_THROW(Sampler({}, 0), Error);
}

}  // namespace
}  // namespace mtplx

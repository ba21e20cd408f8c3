// Speculative acceptance: exact marginal (analytic), histogram convergence (chi-square), greedy, determinism.
#include "decode/accept.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "base/error.h"
#include "decode/rng.h"
#include "decode/stats.h"

namespace mtplx {
namespace {

using ::testing::HasSubstr;
using Probs = std::vector<float>;

// Random probability vector with the given zero pattern (true = forced zero).
Probs random_probs(std::mt19937_64& gen, const std::vector<bool>& zero) {
  std::gamma_distribution<float> gamma(0.7f, 1.0f);  // Dirichlet(0.7): uneven, like real next-token rows
  Probs p(zero.size());
  float sum = 0;
  for (std::size_t i = 0; i < p.size(); ++i) sum += p[i] = zero[i] ? 0.0f : gamma(gen) + 1e-3f;
  for (float& x : p) x /= sum;
  return p;
}

std::vector<bool> zeros_where(int v, std::mt19937_64& gen, double rate) {
  std::vector<bool> z(static_cast<std::size_t>(v));
  std::bernoulli_distribution coin(rate);
  for (std::size_t i = 0; i < z.size(); ++i) z[i] = coin(gen);
  z[gen() % z.size()] = false;  // at least one token survives
  return z;
}

// (p, q) pairs covering the regimes the rule has to get right.
std::vector<std::pair<Probs, Probs>> test_pairs(std::mt19937_64& gen) {
  std::vector<std::pair<Probs, Probs>> pairs;
  for (int v = 5; v <= 8; ++v) {
    const std::vector<bool> none(static_cast<std::size_t>(v), false);
    std::vector<bool> low(static_cast<std::size_t>(v), false), high(static_cast<std::size_t>(v), false);
    for (int i = 0; i < v; ++i) (i < v / 2 ? low : high)[static_cast<std::size_t>(i)] = true;
    for (int rep = 0; rep < 4; ++rep) {
      pairs.push_back({random_probs(gen, none), random_probs(gen, none)});                      // general
      pairs.push_back({random_probs(gen, none), random_probs(gen, zeros_where(v, gen, 0.5))});  // q = 0 < p
      pairs.push_back({random_probs(gen, zeros_where(v, gen, 0.5)), random_probs(gen, none)});  // p = 0 < q
      pairs.push_back({random_probs(gen, low), random_probs(gen, high)});                       // disjoint
      const Probs same = random_probs(gen, zeros_where(v, gen, 0.3));
      pairs.push_back({same, same});  // p = q
      Probs one_hot_q(static_cast<std::size_t>(v), 0.0f);
      one_hot_q[gen() % one_hot_q.size()] = 1;
      pairs.push_back({random_probs(gen, none), one_hot_q});  // greedy draft
      pairs.push_back({one_hot_q, random_probs(gen, none)});  // greedy target
    }
  }
  return pairs;
}

// Analytic distribution of the token emitted at a position with target p and draft q, built from the
// library's own rule pieces: P(x) = q(x) a(x) + (sum_d q(d) (1 - a(d))) r(x), a = acceptance_probability,
// r = residual_distribution.
std::vector<double> emitted_marginal(const Distribution& p, const Distribution& q) {
  Distribution r;
  residual_distribution(p, q, r);
  const auto v = static_cast<std::size_t>(p.vocab());
  double reject = 0;
  std::vector<double> out(v, 0.0);
  for (std::size_t x = 0; x < v; ++x) {
    const auto t = static_cast<std::int32_t>(x);
    const double qx = q.prob(t);
    if (qx == 0) continue;  // never drafted
    const double a = acceptance_probability(p.prob(t), q.prob(t));
    out[x] += qx * a;
    reject += qx * (1 - a);
  }
  for (std::size_t x = 0; x < v; ++x) out[x] += reject * r.prob(static_cast<std::int32_t>(x));
  return out;
}

// ---- (a) exact rule
// ----------------------------------------------------------------------------------------------

TEST(Accept, EmittedTokenMarginalEqualsTargetExactly) {
  std::mt19937_64 gen(17);
  int checked = 0;
  for (const auto& [pv, qv] : test_pairs(gen)) {
    const auto p = Distribution::from_probs(pv), q = Distribution::from_probs(qv);
    const auto marginal = emitted_marginal(p, q);
    for (std::size_t x = 0; x < pv.size(); ++x)
      ASSERT_NEAR(marginal[x], p.prob(static_cast<std::int32_t>(x)), 1e-6)
          << "pair " << checked << " token " << x;
    ++checked;
  }
  EXPECT_EQ(checked, 4 * 4 * 7);
}

// The same with dense rows (what an unfiltered Sampler produces), mixed with sparse ones.
TEST(Accept, EmittedTokenMarginalEqualsTargetWithDenseRows) {
  std::mt19937_64 gen(18);
  auto dense_row = [](const Probs& probs) {
    std::vector<float> logits;
    for (float x : probs) logits.push_back(std::log(x));  // log 0 = -inf: a zero entry in the dense row
    Distribution d;
    Sampler(SamplerConfig{}, static_cast<int>(probs.size())).filter(logits, d);
    return d;
  };
  for (const auto& [pv, qv] : test_pairs(gen)) {
    const auto pd = dense_row(pv), qd = dense_row(qv);
    ASSERT_TRUE(pd.dense() && qd.dense());
    const auto ps = Distribution::from_probs(pv), qs = Distribution::from_probs(qv);
    for (const auto& [p, q] : {std::pair{&pd, &qd}, {&pd, &qs}, {&ps, &qd}}) {
      const auto marginal = emitted_marginal(*p, *q);
      for (std::size_t x = 0; x < pv.size(); ++x)
        ASSERT_NEAR(marginal[x], p->prob(static_cast<std::int32_t>(x)), 1e-6);
    }
  }
}

TEST(Accept, ResidualIsNormalisedPositivePartOverTheUnion) {
  const auto p = Distribution::from_probs(Probs{0.5f, 0.0f, 0.3f, 0.2f, 0.0f});
  const auto q = Distribution::from_probs(Probs{0.1f, 0.4f, 0.3f, 0.0f, 0.2f});
  Distribution r;
  residual_distribution(p, q, r);  // (p - q)+ = {0.4, 0, 0, 0.2, 0} -> {2/3, 0, 0, 1/3, 0}
  EXPECT_EQ(r.size(), 2);
  EXPECT_NEAR(r.prob(0), 2.0 / 3, 1e-6);
  EXPECT_NEAR(r.prob(3), 1.0 / 3, 1e-6);
  residual_distribution(p, p, r);  // no residual mass: falls back to p
  for (int t = 0; t < 5; ++t) EXPECT_FLOAT_EQ(r.prob(t), p.prob(t));
  EXPECT_FLOAT_EQ(acceptance_probability(0.2f, 0.1f), 1.0f);
  EXPECT_FLOAT_EQ(acceptance_probability(0.1f, 0.4f), 0.25f);
  EXPECT_FLOAT_EQ(acceptance_probability(0.0f, 0.4f), 0.0f);
}

// ---- (b) statistical: the sampled implementation converges to the target
// ---------------------------------------

// A context-dependent toy model: row c of each table is the next-token distribution after token c (row V is
// the start). Drafts condition on earlier drafts and p_i on d_1..d_{i-1}, as in the real cycle, so the joint
// histogram of consecutive emitted tokens checks the rule across positions, not just one position at a time.
struct ToyModel {
  int vocab;
  std::vector<Distribution> target, draft;  // [V + 1] rows each
};

ToyModel make_model(std::uint64_t seed, int v) {
  std::mt19937_64 gen(seed);
  ToyModel m{v, {}, {}};
  for (int c = 0; c <= v; ++c) {
    // Zero patterns differ between p and q rows, so rejections, residuals and disjoint mass all occur.
    m.target.push_back(Distribution::from_probs(random_probs(gen, zeros_where(v, gen, 0.3))));
    m.draft.push_back(Distribution::from_probs(random_probs(gen, zeros_where(v, gen, 0.3))));
  }
  return m;
}

// Runs speculative cycles with depth K until `n` tokens are emitted; returns them as one mixed-radix index.
int emit_sequence(const ToyModel& m, int k, int n, Rng& rng, Distribution& scratch) {
  std::vector<std::int32_t> tokens;
  std::int32_t context = m.vocab;  // start row
  std::vector<std::int32_t> drafts(static_cast<std::size_t>(k));
  std::vector<Distribution> q(static_cast<std::size_t>(k)), p(static_cast<std::size_t>(k + 1));
  while (static_cast<int>(tokens.size()) < n) {
    std::int32_t c = context;
    for (std::size_t i = 0; i < drafts.size(); ++i) {
      q[i] = m.draft[static_cast<std::size_t>(c)];
      p[i] = m.target[static_cast<std::size_t>(c)];
      drafts[i] = c = sample(q[i], rng);
    }
    p.back() = m.target[static_cast<std::size_t>(c)];
    const Verdict v = verify_sampled(drafts, q, p, rng, scratch);
    for (auto t : v.emitted()) tokens.push_back(t);
    context = tokens.back();
  }
  int index = 0;
  for (int i = 0; i < n; ++i) index = index * m.vocab + tokens[static_cast<std::size_t>(i)];
  return index;
}

// Exact joint probability of the first n tokens under plain sampling from the target rows.
std::vector<double> target_joint(const ToyModel& m, int n) {
  std::vector<double> joint(static_cast<std::size_t>(std::pow(m.vocab, n)), 0.0);
  for (std::size_t idx = 0; idx < joint.size(); ++idx) {
    std::vector<int> digits(static_cast<std::size_t>(n));
    for (int i = n - 1, rest = static_cast<int>(idx); i >= 0; --i, rest /= m.vocab)
      digits[static_cast<std::size_t>(i)] = rest % m.vocab;
    double prob = 1;
    int c = m.vocab;
    for (int d : digits) {
      prob *= m.target[static_cast<std::size_t>(c)].prob(d);
      c = d;
    }
    joint[idx] = prob;
  }
  return joint;
}

// Each case: N = 200k sequences, chi-square goodness of fit of the joint histogram of the first n emitted
// tokens against the exact target joint, cells with expected count < 5 pooled. False-alarm rate alpha = 1e-4
// per case (seeds are fixed, so a pass is reproducible; a broken rule gives p-values far below 1e-30).
void expect_converges(int v, int k, int n, std::uint64_t seed, int min_dof = 20) {
  const ToyModel m = make_model(seed, v);
  std::vector<std::int64_t> counts(static_cast<std::size_t>(std::pow(v, n)), 0);
  Rng rng(seed + 1);
  Distribution scratch;
  constexpr int kSamples = 200000;
  for (int s = 0; s < kSamples; ++s) ++counts[static_cast<std::size_t>(emit_sequence(m, k, n, rng, scratch))];
  const Chi2Result r = chi2_goodness_of_fit(counts, target_joint(m, n));
  EXPECT_GT(r.p_value, 1e-4) << "V=" << v << " K=" << k << " tokens=" << n << " chi2=" << r.statistic
                             << " dof=" << r.dof;
  EXPECT_GE(r.dof, min_dof) << "too few testable cells for the check to mean much";
}

TEST(Accept, FirstTokenMatchesTargetK1) {
  expect_converges(8, 1, 1, 101, 4);
}
TEST(Accept, FirstTwoTokensMatchTargetK1Bonus) {
  expect_converges(6, 1, 2, 202);
}
TEST(Accept, FirstTwoTokensMatchTargetK2) {
  expect_converges(6, 2, 2, 303);
}
TEST(Accept, FirstThreeTokensMatchTargetK2Bonus) {
  expect_converges(5, 2, 3, 404);
}
TEST(Accept, FirstThreeTokensMatchTargetK4) {
  expect_converges(5, 4, 3, 505);
}

// ---- greedy
// ----------------------------------------------------------------------------------------------------

TEST(Accept, GreedyAcceptsWhileDraftsMatchArgmax) {
  const std::vector<std::int32_t> drafts = {4, 7, 1};
  const Verdict all = verify_greedy(drafts, std::vector<std::int32_t>{4, 7, 1, 9});
  EXPECT_EQ(all.accepted, 3);
  EXPECT_TRUE(all.bonus());
  EXPECT_THAT(all.emitted(), ::testing::ElementsAre(4, 7, 1, 9));
  const Verdict some = verify_greedy(drafts, std::vector<std::int32_t>{4, 2, 1, 9});
  EXPECT_EQ(some.accepted, 1);
  EXPECT_FALSE(some.bonus());
  EXPECT_THAT(some.emitted(), ::testing::ElementsAre(4, 2));
  const Verdict none = verify_greedy({}, std::vector<std::int32_t>{5});
  EXPECT_THAT(none.emitted(), ::testing::ElementsAre(5));
}

TEST(Accept, SampledRuleWithOneHotTargetIsTheGreedyRule) {
  std::mt19937_64 gen(8);
  constexpr int kVocab = 6, kK = 3;
  Rng rng(8);
  Distribution scratch;
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<std::int32_t> drafts, argmaxes;
    std::vector<Distribution> q, p;
    for (int i = 0; i <= kK; ++i) {
      argmaxes.push_back(static_cast<std::int32_t>(gen() % kVocab));
      p.push_back(Distribution::one_hot(kVocab, argmaxes.back()));
      if (i == kK) break;
      q.push_back(Distribution::from_probs(random_probs(gen, std::vector<bool>(kVocab, false))));
      drafts.push_back(gen() % 2 ? argmaxes.back() : sample(q.back(), rng));
    }
    const Verdict sampled = verify_sampled(drafts, q, p, rng, scratch);
    const Verdict greedy = verify_greedy(drafts, argmaxes);
    ASSERT_EQ(sampled.accepted, greedy.accepted);
    ASSERT_TRUE(std::ranges::equal(sampled.emitted(), greedy.emitted()));
  }
}

// ---- (d) determinism
// -------------------------------------------------------------------------------------------

TEST(Accept, SeededVerificationIsDeterministic) {
  const ToyModel m = make_model(9, 6);
  auto run = [&](std::uint64_t seed) {
    Rng rng(seed);
    Distribution scratch;
    std::vector<int> out;
    for (int i = 0; i < 500; ++i) out.push_back(emit_sequence(m, 3, 3, rng, scratch));
    return out;
  };
  EXPECT_EQ(run(1), run(1));
  EXPECT_NE(run(1), run(2));
}

// ---- (e) bad input
// ---------------------------------------------------------------------------------------------

TEST(Accept, RejectsInconsistentInputs) {
  const auto d = Distribution::from_probs(Probs{0.5f, 0.5f, 0.0f});
  const std::vector<Distribution> one = {d}, two = {d, d};
  Rng rng(1);
  Distribution scratch;
  const std::vector<std::int32_t> draft0 = {0}, draft2 = {2};
  EXPECT_THAT([&] { verify_sampled(draft0, one, one, rng, scratch); },
              ::testing::ThrowsMessage<Error>(HasSubstr("expected 2")));
  EXPECT_THAT([&] { verify_sampled(draft2, one, two, rng, scratch); },
              ::testing::ThrowsMessage<Error>(HasSubstr("draft probability 0")));
  const std::vector<std::int32_t> many(kMaxDraftTokens + 1, 0);
  EXPECT_THAT([&] { verify_greedy(many, std::vector<std::int32_t>(many.size() + 1, 0)); },
              ::testing::ThrowsMessage<Error>(HasSubstr("exceed the limit")));
  const auto other = Distribution::from_probs(Probs{1.0f, 0.0f});
  EXPECT_THAT([&] { residual_distribution(d, other, scratch); },
              ::testing::ThrowsMessage<Error>(HasSubstr("vocabulary")));
}

}  // namespace
}  // namespace mtplx

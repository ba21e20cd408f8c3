// End-to-end exactness of MTP speculative sampling, by statistics: the first three tokens that
// Generator::generate emits with MTP must have the joint distribution of plain sampling from the target.
//
// Oracle: the exact joint law of the first three tokens under plain sampling, built by enumeration. For
// every prefix the trunk runs over prompt + prefix from scratch and the target sampler filters the last row;
// P(t1 t2 t3) = p(t1) p(t2 | t1) p(t3 | t1 t2). With top-k 20 that is at most 20 + 400 forwards. It uses
// neither the generator nor the acceptance code.
//
// Comparisons (each arm: Arm::samples runs with seeds kSeed0 + i; a run stops after its 3rd token):
//   - goodness of fit of every arm's histogram of 3-token sequences to the exact law (chi2_goodness_of_fit);
//   - two-sample homogeneity of every MTP arm against the AR arm (chi2_two_sample), the AR-vs-MTP check.
// Sequences whose expected count is below 5 are pooled into one "other" cell by the stats helpers (Cochran's
// rule). A sampled sequence outside the target's support fails the fit outright.
// False alarms: the family-wise rate over all comparisons of this file is kFamilyAlpha = 1e-3 (Bonferroni:
// each comparison is tested at kFamilyAlpha / comparisons). The seeds are fixed, so the outcome is
// deterministic; the rate is the chance that a correct implementation fails with some other choice of seeds.
//
// Paths: the 1st token comes from the prefill; the 2nd and 3rd come from the first cycle (accepted drafts,
// recovered tokens after a rejection, the bonus at depth 1) or, after an early rejection, from the drafts of
// the second cycle. Depth 1 puts the bonus token inside the window, depth 2 the second draft (drafted from
// the head's own output) and its residual. The random-weight fixture's MTP head predicts nothing, so with
// its full head almost every draft is rejected and a broken acceptance rule would go unnoticed. The arms
// therefore also use trimmed draft heads whose vocabulary is the tokens the target is most likely to emit
// here (read off the exact law: any list is valid for exactness, this one makes drafts land on likely
// tokens), and every arm asserts how many drafts were accepted and rejected at each position, so the test
// cannot pass vacuously.
//
// Power, checked by breaking the acceptance rule on purpose (2026-11-26, not committed): accepting every
// draft fails likely:10 T3 K1 and K2 outright (sequences outside the target's support); drawing the
// recovered token from p instead of (p - q)+ fails the fit of likely:10 T3 K1 at 6000 runs (chi2 102, dof 19,
// p 2.6e-13) but not at 2000 runs (p 4e-3): hence 6000 runs for those arms. The two-sample test against the
// 2000-run AR arm is much weaker (p 0.014 for the same break); the fit to the exact law carries the power.
// Drawing the bonus from the last draft's row instead of the row after it fails likely:10 T3 K1 outright.
// Runtime: on the shared 2-core development box under load ~15 an arm took 50-310 s (not measured idle), so
// every test here is labelled slow.
#include <gtest/gtest.h>

#include "backend/cpu/cpu_backend.h"
#include "support/exactness.h"

namespace mtplx {
namespace {

using namespace exactness;

// The fixture model of this file, on the CPU (2 threads).
constexpr auto& loaded = shared_model<CpuBackend, 2>;

// The MTP arms. The full, q4 and trim:100 heads at the usual draft temperatures have the random head's
// near-zero acceptance: they check the all-rejected path (residual draws) with each head. likely:10 (the two
// eos ids kept by every trimmed head + the 8 likeliest tokens) drafts tokens the target often emits; at
// draft temperature 3 q is nearly uniform over them, so accepted and rejected drafts are both common.
const std::vector<Arm>& mtp_arms() {
  static const std::vector<Arm> arms = [] {
    std::vector<Arm> a;
    a.push_back({"full", 0.7f, 1});
    a.push_back({"full", 1.0f, 2});
    a.push_back({"q4", 1.0f, 2});
    a.push_back({"trim:100", 0.7f, 2});
    a.push_back({"likely:10", 1.0f, 2, 100, 6000});
    for (int depth : {1, 2}) a.push_back({"likely:10", 3.0f, depth, 100, 6000});
    // Greedy drafts (q a point mass, picked by Backend::greedy_tokens) under a sampled target: accepted
    // and rejected (residual = p without the drafted token) both common.
    a.push_back({"likely:10", 0.0f, 2, 100, 4000});
    return a;
  }();
  return arms;
}

// AR fit + per MTP arm (fit + two-sample).
int comparisons() {
  return 1 + 2 * static_cast<int>(mtp_arms().size());
}

double per_comparison_alpha() {
  return kFamilyAlpha / comparisons();
}

const Sampled& ar_samples() {
  static const Sampled s = sample_arm(loaded().model, loaded().law(), {"none", 1, 0});
  return s;
}

TEST(ExactnessSlow, AutoregressiveMatchesTheExactLaw) {
  expect_ar_exact(ar_samples(), loaded().law(), per_comparison_alpha());
}

class ExactnessSlowMtp : public ::testing::TestWithParam<Arm> {};

TEST_P(ExactnessSlowMtp, FirstThreeTokensMatchPlainSampling) {
  const Arm& arm = GetParam();
  expect_arm_exact(arm, sample_arm(loaded().model, loaded().law(), arm), ar_samples().histogram,
                   loaded().law(), per_comparison_alpha());
}

INSTANTIATE_TEST_SUITE_P(Arms, ExactnessSlowMtp, ::testing::ValuesIn(mtp_arms()),
                         [](const auto& param) { return arm_test_name(param.param); });

}  // namespace
}  // namespace mtplx

// Chi-square helpers: survival function against closed forms, both tests on synthetic data.
#include "decode/stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "base/error.h"
#include "decode/rng.h"

namespace mtplx {
namespace {

// Closed forms (independent oracles): dof 1: erfc(sqrt(x/2)); dof 2: exp(-x/2); dof 3: erfc(sqrt(x/2)) +
// sqrt(2x/pi) exp(-x/2); dof 2m: exp(-x/2) sum_{j<m} (x/2)^j / j!.
double even_dof_survival(double x, int dof) {
  double term = 1, sum = 1;
  for (int j = 1; j < dof / 2; ++j) sum += term *= (x / 2) / j;
  return std::exp(-x / 2) * sum;
}

TEST(Chi2Survival, MatchesClosedFormsOnBothBranches) {
  for (double x : {1e-6, 0.01, 0.5, 1.0, 2.5, 3.841458820694124, 7.0, 15.0, 40.0, 120.0, 600.0}) {
    const double s1 = std::erfc(std::sqrt(x / 2));
    const double s3 = s1 + std::sqrt(2 * x / std::numbers::pi) * std::exp(-x / 2);
    EXPECT_NEAR(chi2_survival(x, 1), s1, 1e-12 + 1e-10 * s1) << x;
    EXPECT_NEAR(chi2_survival(x, 3), s3, 1e-12 + 1e-10 * s3) << x;
    for (int dof : {2, 4, 10, 40, 100}) {
      const double expected = even_dof_survival(x, dof);
      EXPECT_NEAR(chi2_survival(x, dof), expected, 1e-12 + 1e-10 * expected) << "x=" << x << " dof=" << dof;
    }
  }
  // Table values: the 5% critical points of dof 1 and 10.
  EXPECT_NEAR(chi2_survival(3.841458820694124, 1), 0.05, 1e-12);
  EXPECT_NEAR(chi2_survival(18.307038053275146, 10), 0.05, 1e-9);
  EXPECT_EQ(chi2_survival(0, 5), 1);
  EXPECT_EQ(chi2_survival(INFINITY, 5), 0);
  EXPECT_THROW(chi2_survival(1, 0), Error);
}

TEST(Chi2Survival, AgreesWithWilsonHilfertyAtLargeDof) {
  // Wilson-Hilferty: (X/k)^(1/3) ~ N(1 - 2/(9k), 2/(9k)); good to ~1e-3 at k = 1000.
  const double k = 1000;
  for (double x : {900.0, 1000.0, 1100.0}) {
    const double z = (std::cbrt(x / k) - (1 - 2 / (9 * k))) / std::sqrt(2 / (9 * k));
    EXPECT_NEAR(chi2_survival(x, k), 0.5 * std::erfc(z / std::sqrt(2.0)), 2e-3) << x;
  }
}

std::vector<std::int64_t> draw_counts(Rng& rng, const std::vector<float>& probs, int n) {
  std::vector<std::int64_t> counts(probs.size(), 0);
  for (int i = 0; i < n; ++i) ++counts[static_cast<std::size_t>(rng.categorical(probs))];
  return counts;
}

// Under the null hypothesis p-values are ~uniform: over 400 replicates the mean is 0.5 +- 0.0144 (1 sd) and
// the fraction below 0.05 is 0.05 +- 0.011. Bounds at ~4 sd give a false-alarm rate of about 1e-4 per check.
void expect_roughly_uniform(const std::vector<double>& p_values) {
  double mean = 0;
  int below = 0;
  for (double p : p_values) mean += p, below += p < 0.05;
  mean /= static_cast<double>(p_values.size());
  const double frac = static_cast<double>(below) / static_cast<double>(p_values.size());
  EXPECT_NEAR(mean, 0.5, 0.06);
  EXPECT_NEAR(frac, 0.05, 0.045);
}

const std::vector<float> kProbs = {0.3f, 0.2f, 0.15f, 0.1f, 0.1f, 0.08f, 0.05f, 0.015f, 0.004f, 0.001f};

TEST(Chi2GoodnessOfFit, NullPValuesAreUniformAndPoolsSparseCells) {
  Rng rng(31);
  const std::vector<double> probs(kProbs.begin(), kProbs.end());
  std::vector<double> p_values;
  for (int rep = 0; rep < 400; ++rep) {
    const Chi2Result r = chi2_goodness_of_fit(draw_counts(rng, kProbs, 2000), probs);
    EXPECT_EQ(r.dof, 8);  // the expected-2 cell is too small alone: merged into the expected-8 one, 9 cells
    p_values.push_back(r.p_value);
  }
  expect_roughly_uniform(p_values);
}

TEST(Chi2GoodnessOfFit, DetectsAWrongDistributionAndImpossibleCounts) {
  Rng rng(32);
  std::vector<double> shifted(kProbs.begin(), kProbs.end());
  shifted[0] -= 0.03, shifted[1] += 0.03;
  EXPECT_LT(chi2_goodness_of_fit(draw_counts(rng, kProbs, 20000), shifted).p_value, 1e-6);
  const std::vector<std::int64_t> counts = {5, 5, 1};
  const Chi2Result r = chi2_goodness_of_fit(counts, std::vector<double>{0.5, 0.5, 0.0});
  EXPECT_EQ(r.p_value, 0);
  EXPECT_TRUE(std::isinf(r.statistic));
}

TEST(Chi2TwoSample, NullPValuesAreUniformWithUnequalSampleSizes) {
  Rng rng(41);
  std::vector<double> p_values;
  for (int rep = 0; rep < 400; ++rep)
    p_values.push_back(
        chi2_two_sample(draw_counts(rng, kProbs, 1500), draw_counts(rng, kProbs, 4000)).p_value);
  expect_roughly_uniform(p_values);
}

TEST(Chi2TwoSample, DetectsDifferentDistributions) {
  Rng rng(42);
  std::vector<float> other = kProbs;
  other[2] -= 0.03f, other[6] += 0.03f;
  const Chi2Result r = chi2_two_sample(draw_counts(rng, kProbs, 20000), draw_counts(rng, other, 20000));
  EXPECT_LT(r.p_value, 1e-6);
  EXPECT_GE(r.dof, 8);
  // Identical histograms: statistic 0, p = 1.
  const auto same = draw_counts(rng, kProbs, 1000);
  EXPECT_EQ(chi2_two_sample(same, same).statistic, 0);
  EXPECT_THROW(chi2_two_sample(same, std::vector<std::int64_t>(same.size(), 0)), Error);
}

}  // namespace
}  // namespace mtplx

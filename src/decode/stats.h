// Chi-square tests for the statistical checks of the sampler, the acceptance rule and (later) AR-vs-MTP
// output histograms. Library code rather than a test helper because generator tests and tools need the same
// verdicts.
//
// Both tests pool sparse categories first: the chi-square approximation to the statistic's distribution needs
// expected counts of about 5 or more per cell (Cochran's rule), so cells below `min_expected` are merged into
// one "rest" cell (and that cell into the smallest regular one if it is still too small).
#pragma once

#include <cstdint>
#include <span>

namespace mtplx {

struct Chi2Result {
  double statistic = 0;
  int dof = 0;         // degrees of freedom after pooling; 0 means nothing was testable (p_value = 1)
  double p_value = 1;  // P(X >= statistic) for X ~ chi-square(dof)
};

// Upper tail P(X >= x) of chi-square with `dof` degrees of freedom = Q(dof/2, x/2), the regularised upper
// incomplete gamma function (series for x/2 < dof/2 + 1, Lentz continued fraction otherwise; ~1e-14
// relative).
double chi2_survival(double x, double dof);

// Goodness of fit of `observed` counts [n] to category probabilities `probs` [n] (normalised here). A count
// in a category of probability 0 is impossible under the hypothesis: statistic = inf, p_value = 0.
Chi2Result chi2_goodness_of_fit(std::span<const std::int64_t> observed, std::span<const double> probs,
                                double min_expected = 5);

// Two-sample test of homogeneity: do counts `a` [n] and `b` [n] (any totals) come from one distribution? The
// pooled 2 x n contingency table: E_a = (a_i + b_i) N_a / N, E_b likewise, dof = cells - 1.
Chi2Result chi2_two_sample(std::span<const std::int64_t> a, std::span<const std::int64_t> b,
                           double min_expected = 5);

}  // namespace mtplx

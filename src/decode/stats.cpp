#include "decode/stats.h"

#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "base/error.h"

namespace mtplx {
namespace {

// P(s, y) by its power series; converges fast for y < s + 1.
double lower_gamma_series(double s, double y) {
  double term = 1.0 / s, sum = term;
  for (int n = 1; n < 10000; ++n) {
    term *= y / (s + n);
    sum += term;
    if (std::abs(term) < std::abs(sum) * 1e-16) break;
  }
  return sum * std::exp(-y + s * std::log(y) - std::lgamma(s));
}

// Q(s, y) by its continued fraction (modified Lentz); converges fast for y >= s + 1 and keeps tiny tails
// exact.
double upper_gamma_fraction(double s, double y) {
  constexpr double kTiny = 1e-300;
  double b = y + 1 - s, c = 1 / kTiny, d = 1 / b, h = d;
  for (int n = 1; n < 10000; ++n) {
    const double an = -n * (n - s);
    b += 2;
    d = an * d + b;
    if (std::abs(d) < kTiny) d = kTiny;
    c = b + an / c;
    if (std::abs(c) < kTiny) c = kTiny;
    d = 1 / d;
    const double delta = d * c;
    h *= delta;
    if (std::abs(delta - 1) < 1e-16) break;
  }
  return h * std::exp(-y + s * std::log(y) - std::lgamma(s));
}

// One pooled cell: observed counts of each sample and the expected count for sample a (for goodness of fit,
// the fitted expectation; for two samples, the pooled expectation of sample a).
struct Cell {
  double a = 0, b = 0, expected = 0;
};

// Merges cells with expected < min_expected into one, and that one into the smallest other cell if still
// small.
std::vector<Cell> pool(const std::vector<Cell>& cells, double min_expected) {
  std::vector<Cell> out;
  Cell rest;
  for (const Cell& c : cells) {
    if (c.expected >= min_expected) {
      out.push_back(c);
    } else {
      rest.a += c.a, rest.b += c.b, rest.expected += c.expected;
    }
  }
  if (rest.expected <= 0) return out;
  if (rest.expected >= min_expected || out.empty()) {
    out.push_back(rest);
  } else {
    Cell* smallest = &out.front();
    for (Cell& c : out)
      if (c.expected < smallest->expected) smallest = &c;
    smallest->a += rest.a, smallest->b += rest.b, smallest->expected += rest.expected;
  }
  return out;
}

Chi2Result finish(double statistic, int cells) {
  Chi2Result r;
  r.statistic = statistic;
  r.dof = cells - 1;
  r.p_value = r.dof > 0 ? chi2_survival(statistic, r.dof) : 1.0;
  return r;
}

}  // namespace

double chi2_survival(double x, double dof) {
  if (!(dof > 0 && std::isfinite(dof))) fail(str("chi-square needs dof > 0, got ", dof), "chi2_survival");
  if (std::isnan(x)) return std::numeric_limits<double>::quiet_NaN();
  if (x <= 0) return 1;
  if (std::isinf(x)) return 0;
  const double s = dof / 2, y = x / 2;
  return y < s + 1 ? 1 - lower_gamma_series(s, y) : upper_gamma_fraction(s, y);
}

Chi2Result chi2_goodness_of_fit(std::span<const std::int64_t> observed, std::span<const double> probs,
                                double min_expected) {
  if (observed.size() != probs.size())
    fail(str(observed.size(), " observed categories but ", probs.size(), " probabilities"),
         "chi2_goodness_of_fit");
  const double n = static_cast<double>(std::accumulate(observed.begin(), observed.end(), std::int64_t{0}));
  const double mass = std::accumulate(probs.begin(), probs.end(), 0.0);
  require(mass > 0 && std::isfinite(mass), "probabilities must have a positive finite sum",
          "chi2_goodness_of_fit");
  std::vector<Cell> cells;
  for (std::size_t i = 0; i < probs.size(); ++i) {
    if (!(probs[i] >= 0)) fail(str("negative probability at category ", i), "chi2_goodness_of_fit");
    if (probs[i] == 0 && observed[i] > 0) return {std::numeric_limits<double>::infinity(), 0, 0.0};
    if (probs[i] > 0) cells.push_back({static_cast<double>(observed[i]), 0, n * probs[i] / mass});
  }
  const auto pooled = pool(cells, min_expected);
  double statistic = 0;
  for (const Cell& c : pooled) statistic += (c.a - c.expected) * (c.a - c.expected) / c.expected;
  return finish(statistic, static_cast<int>(pooled.size()));
}

Chi2Result chi2_two_sample(std::span<const std::int64_t> a, std::span<const std::int64_t> b,
                           double min_expected) {
  if (a.size() != b.size())
    fail(str("samples have ", a.size(), " and ", b.size(), " categories"), "chi2_two_sample");
  const double na = static_cast<double>(std::accumulate(a.begin(), a.end(), std::int64_t{0}));
  const double nb = static_cast<double>(std::accumulate(b.begin(), b.end(), std::int64_t{0}));
  require(na > 0 && nb > 0, "both samples need at least one observation", "chi2_two_sample");
  const double share_a = na / (na + nb);
  // Pool on the smaller of the two expected counts, so both rows of the table meet min_expected.
  const double small_share = std::min(share_a, 1 - share_a);
  std::vector<Cell> cells;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double total = static_cast<double>(a[i] + b[i]);
    if (total > 0)
      cells.push_back({static_cast<double>(a[i]), static_cast<double>(b[i]), total * small_share});
  }
  const auto pooled = pool(cells, min_expected);
  double statistic = 0;
  for (const Cell& c : pooled) {
    const double total = c.a + c.b, ea = total * share_a, eb = total - ea;
    statistic += (c.a - ea) * (c.a - ea) / ea + (c.b - eb) * (c.b - eb) / eb;
  }
  return finish(statistic, static_cast<int>(pooled.size()));
}

}  // namespace mtplx

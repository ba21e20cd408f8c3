// Logits rows for the tests of Backend::greedy_tokens and Backend::top_k (CPU and CUDA), and the oracles
// they are checked against, written from the ops' contract (largest value, lowest index on ties, NaN never
// chosen) independently of the library's selection code: a plain loop, and a full stable sort.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <vector>

namespace mtplx::test {

inline int32_t oracle_greedy(std::span<const float> row) {
  int32_t best = -1;
  for (size_t i = 0; i < row.size(); ++i) {
    if (std::isnan(row[i])) continue;
    if (best < 0 || row[i] > row[static_cast<size_t>(best)]) best = static_cast<int32_t>(i);
  }
  return best;
}

// The k best (value, id) pairs of a row by a stable sort of every comparable entry on the value alone (so
// equal values keep ascending ids), padded with {0, -1} to k.
inline std::vector<std::pair<float, int32_t>> oracle_top_k(std::span<const float> row, int k) {
  std::vector<std::pair<float, int32_t>> all;
  for (size_t i = 0; i < row.size(); ++i)
    if (!std::isnan(row[i])) all.emplace_back(row[i], static_cast<int32_t>(i));
  std::stable_sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  all.resize(static_cast<size_t>(k), {0.0f, -1});
  return all;
}

// `rows` rows of `cols` values: random ones with the hard cases planted row by row (r % 8): a maximum tied
// at several places across the row, -inf and NaN sprinkled in (NaN at index 0 too), an all -inf row, a row
// that is NaN except one -inf, +inf ties, +0 / -0 as the maximum, and plain random values.
inline std::vector<float> greedy_rows(int64_t rows, int64_t cols, uint32_t seed) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> value(-30.0f, 30.0f);
  std::uniform_int_distribution<int64_t> at(0, cols - 1);
  std::vector<float> x(static_cast<size_t>(rows * cols));
  for (auto& v : x) v = value(rng);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x.data() + r * cols;
    switch (r % 8) {
      case 0:  // a tie of the maximum at four random places
        for (int k = 0; k < 4; ++k) row[at(rng)] = 31.0f;
        break;
      case 1:  // -inf and NaN sprinkled, NaN first
        for (int64_t k = 0; k < cols / 16 + 1; ++k) row[at(rng)] = k % 2 ? -kInf : nan;
        row[0] = nan;
        break;
      case 2:  // all -inf: index 0
        for (int64_t c = 0; c < cols; ++c) row[c] = -kInf;
        break;
      case 3:  // NaN everywhere but one -inf
        for (int64_t c = 0; c < cols; ++c) row[c] = nan;
        row[at(rng)] = -kInf;
        break;
      case 4:  // +inf at two places, NaN above it in the index order
        row[at(rng)] = kInf;
        row[at(rng)] = kInf;
        row[at(rng)] = nan;
        break;
      case 5:  // all values <= 0 with +0 and -0 as the maximum: equal, so the lower index wins
        for (int64_t c = 0; c < cols; ++c) row[c] = -std::fabs(row[c]) - 1.0f;
        row[at(rng)] = 0.0f;
        row[at(rng)] = -0.0f;
        break;
      case 6:  // the maximum at the last index, tied with the first
        row[cols - 1] = 40.0f;
        row[0] = 40.0f;
        break;
      default:
        break;
    }
    // At one column the NaN cases leave nothing comparable: that is the throwing case, tested apart.
    if (oracle_greedy(std::span<const float>(row, static_cast<size_t>(cols))) < 0) row[cols - 1] = 1.0f;
  }
  return x;
}

// Rows of few distinct values (integers -3..3, with -0 for 0 half the time, NaN and -inf sprinkled): most
// of a top-k lies in ties, so the lower-id rule decides which entries and in what order.
inline std::vector<float> tied_rows(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> level(-3, 3), kind(0, 19);
  std::vector<float> x(static_cast<size_t>(rows * cols));
  for (auto& v : x) {
    const int k = kind(rng);
    v = k == 0   ? std::numeric_limits<float>::quiet_NaN()
        : k == 1 ? -std::numeric_limits<float>::infinity()
        : k == 2 ? -0.0f
                 : static_cast<float>(level(rng));
  }
  return x;
}

}  // namespace mtplx::test

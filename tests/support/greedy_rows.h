// Logits rows for the tests of Backend::greedy_tokens (CPU default and CUDA), and the oracle they are
// checked against: a plain host loop written from the op's contract (largest value, lowest index on ties,
// NaN never chosen), independent of the library's argmax.
#pragma once

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

}  // namespace mtplx::test

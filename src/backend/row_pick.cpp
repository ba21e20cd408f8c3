#include "backend/row_pick.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace mtplx {

// Eight independent running maxima let the compiler keep eight compare chains in flight (packed max at -O2);
// a single running max is one serial dependency chain.
float max_value(std::span<const float> x) {
  std::array<float, 8> lanes;
  lanes.fill(-INFINITY);
  std::size_t i = 0;
  for (; i + 8 <= x.size(); i += 8)
    for (std::size_t j = 0; j < 8; ++j) lanes[j] = x[i + j] > lanes[j] ? x[i + j] : lanes[j];
  for (; i < x.size(); ++i) lanes[0] = x[i] > lanes[0] ? x[i] : lanes[0];
  float m = lanes[0];
  for (float lane : lanes) m = lane > m ? lane : m;
  return m;
}

int64_t first_max_index(std::span<const float> row) {
  const float top = max_value(row);
  const auto it = std::find(row.begin(), row.end(), top);  // -inf == -inf: an all -inf row finds index 0
  return it == row.end() ? -1 : it - row.begin();
}

void select_top_k(std::span<const float> row, std::size_t k, std::vector<ScoredToken>& out) {
  // One pass with a size-k heap whose front is the worst kept candidate: O(V) compares, and heap updates
  // only when a value beats the current k-th best. Ids arrive ascending, so an equal value never displaces
  // a kept one: ties go to the lower id. Once the heap is full, a block whose maximum does not beat the
  // k-th best is skipped after one vectorisable pass: in a peaked row almost every block is.
  constexpr std::size_t kBlock = 512;
  out.clear();
  if (k == 0) return;
  const auto worst_first = [](const ScoredToken& a, const ScoredToken& b) { return ranks_before(a, b); };
  for (std::size_t i = 0; i < row.size(); ++i) {
    if (i % kBlock == 0 && out.size() == k &&
        max_value(row.subspan(i, std::min(kBlock, row.size() - i))) <= out.front().value) {
      i += kBlock - 1;
      continue;
    }
    const float x = row[i];
    if (std::isnan(x)) continue;
    if (out.size() < k) {
      out.push_back({x, static_cast<std::int32_t>(i)});
      std::push_heap(out.begin(), out.end(), worst_first);
    } else if (x > out.front().value) {
      std::pop_heap(out.begin(), out.end(), worst_first);
      out.back() = {x, static_cast<std::int32_t>(i)};
      std::push_heap(out.begin(), out.end(), worst_first);
    }
  }
  std::sort(out.begin(), out.end(), worst_first);
}

}  // namespace mtplx

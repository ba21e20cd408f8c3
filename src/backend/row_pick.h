// Picks over a row of logits on the host, shared by the sampler's filters and the Backend defaults
// (greedy_tokens, top_k), whose device implementations must pick the same entries in the same order.
//
// Rank: the larger value first, then the lower index; NaN is never picked (-inf is, and ranks last).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace mtplx {

struct ScoredToken {
  float value;
  std::int32_t id;
};

// Whether a ranks before b. -0 and +0 compare equal, so the lower id decides between them.
inline bool ranks_before(const ScoredToken& a, const ScoredToken& b) {
  return a.value > b.value || (a.value == b.value && a.id < b.id);
}

// Largest entry of `row`, ignoring NaN; -inf when there is none (empty, all NaN or all -inf).
float max_value(std::span<const float> row);

// Index of the largest entry (the lowest index among equal ones), NaN never chosen; -1 when the row has no
// comparable entry (empty or all NaN). An all -inf row gives 0.
int64_t first_max_index(std::span<const float> row);

// The min(k, comparable entries) best entries of `row`, best first, into `out` (cleared first; its capacity
// is reused, so a caller that keeps `out` does not allocate once it has grown to k).
void select_top_k(std::span<const float> row, std::size_t k, std::vector<ScoredToken>& out);

}  // namespace mtplx

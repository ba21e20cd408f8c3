#include "decode/depth_policy.h"

namespace mtplx {

// Start optimistic (0.7, about what Qwen3.5 MTP heads reach at depth 1) so the policy explores depth first.
DepthPolicy::DepthPolicy(int max_depth, bool adaptive, double threshold, double decay)
    : max_depth_(max_depth),
      adaptive_(adaptive),
      threshold_(threshold),
      decay_(decay),
      accept_rate_(max_depth > 0 ? max_depth : 0, 0.7) {}

int DepthPolicy::depth() const {
  if (!adaptive_ || max_depth_ <= 1) return max_depth_;
  double reach = 1.0;  // probability that every draft up to position k is accepted
  int depth = 1;
  for (int k = 0; k < max_depth_; ++k) {
    reach *= accept_rate_[k];
    if (reach < threshold_) break;
    depth = k + 1;
  }
  return depth;
}

void DepthPolicy::update(int drafted, int accepted) {
  // Position i was tested only if all drafts before it were accepted.
  for (int i = 0; i < drafted && i <= accepted && i < max_depth_; ++i) {
    const double outcome = i < accepted ? 1.0 : 0.0;
    accept_rate_[i] = decay_ * accept_rate_[i] + (1.0 - decay_) * outcome;
  }
}

}  // namespace mtplx

// Adaptive speculation depth. Tracks, per draft position i, how often draft i is accepted given drafts
// 1..i-1 were (an exponential moving average), and drafts as deep as the chance that the last draft is
// still used stays above a threshold. A fixed policy just returns the configured depth.
#pragma once

#include <vector>

namespace mtplx {

class DepthPolicy {
 public:
  DepthPolicy(int max_depth, bool adaptive, double threshold = 0.25, double decay = 0.9);

  int depth() const;
  // After a cycle that drafted `drafted` tokens of which the first `accepted` were kept.
  void update(int drafted, int accepted);

 private:
  int max_depth_;
  bool adaptive_;
  double threshold_;
  double decay_;
  std::vector<double> accept_rate_;  // [max_depth] P(accept draft i | drafts before it accepted)
};

}  // namespace mtplx

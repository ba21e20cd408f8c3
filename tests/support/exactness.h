// The statistical exactness check of MTP speculative sampling, shared by the CPU test
// (tests/decode/exactness_test.cpp, whose header explains the method, the oracle and the power) and the GPU
// test (tests/cuda/exactness_test.cpp): the exact law of the first kWindow tokens under plain sampling, runs
// of the generator, and the chi-square comparisons.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <map>
#include <memory>
#include <numeric>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "decode/draft_head.h"
#include "decode/generator.h"
#include "decode/sampling.h"
#include "decode/stats.h"
#include "io/checkpoint.h"
#include "model/qwen35.h"
#include "support/temp_dir.h"

namespace mtplx::exactness {

inline constexpr int kWindow = 3;  // tokens compared per run
inline constexpr uint64_t kSeed0 = 0x5eed0000;
inline constexpr double kFamilyAlpha = 1e-3;

using Sequence = std::array<int32_t, kWindow>;
using Law = std::map<Sequence, double>;
using Histogram = std::map<Sequence, int64_t>;

// Chosen among random 4-token prompts because here the target's first three tokens are spread (22
// sequences, the likeliest at 0.15): where p is nearly one-hot any rule emits the same token, and a wrong
// residual or bonus would go unseen.
inline const std::vector<int32_t> kPrompt = {100, 124, 55, 431};

inline SamplerConfig target_sampler() {
  SamplerConfig s;
  s.temperature = 0.6f;
  s.top_p = 0.95f;
  s.top_k = 20;
  return s;
}

// The exact law of the first kWindow tokens under plain sampling (see the file header).
inline Law exact_law(Qwen35Model& model, const SamplerConfig& config) {
  const int vocab = static_cast<int>(model.config().vocab_size);
  Sampler sampler(config, vocab);
  std::vector<float> host(static_cast<size_t>(vocab));
  Law law;
  std::vector<int32_t> tokens = kPrompt;
  Sequence prefix{};
  const auto expand = [&](auto&& self, int depth, double mass) -> void {
    ModelState state = model.new_state(static_cast<int64_t>(tokens.size()));
    const Tensor hidden = model.forward(tokens, state);
    model.backend().download(model.logits(hidden.row_view(hidden.rows - 1, 1)), host);
    Distribution p;
    sampler.filter(host, p);
    for (int i = 0; i < p.size(); ++i) {
      const double pi = p.probs()[static_cast<size_t>(i)];
      if (pi <= 0) continue;
      prefix[static_cast<size_t>(depth)] = p.id_at(i);
      if (depth + 1 == kWindow) {
        law[prefix] += mass * pi;
        continue;
      }
      tokens.push_back(p.id_at(i));
      self(self, depth + 1, mass * pi);
      tokens.pop_back();
    }
  };
  expand(expand, 0, 1.0);
  return law;
}

// The mtplx-q8 fixture on one backend for a whole test file (loading is the slow part of a tiny fixture),
// and the exact law of its first kWindow tokens under target_sampler(), enumerated on first use.
template <class BackendType>
struct LoadedModel {
  template <class... Args>
  explicit LoadedModel(Args&&... backend_args)
      : ckpt(open_checkpoint(testing::fixtures_dir() / "mtplx-q8")),
        backend(std::forward<Args>(backend_args)...),
        model(ckpt, backend) {}
  const Law& law() {
    if (law_.empty()) law_ = exact_law(model, target_sampler());
    return law_;
  }
  Checkpoint ckpt;
  BackendType backend;
  Qwen35Model model;

 private:
  Law law_;
};

// One LoadedModel per backend type for a whole test binary, made on first use with `backend_args`.
template <class BackendType, auto... backend_args>
LoadedModel<BackendType>& shared_model() {
  static LoadedModel<BackendType> model(backend_args...);
  return model;
}

// Token ids by decreasing probability of appearing anywhere in the window (ties by id).
inline std::vector<int32_t> likely_tokens(const Law& law) {
  std::map<int32_t, double> mass;
  for (const auto& [seq, p] : law)
    for (int32_t t : seq) mass[t] += p;
  std::vector<int32_t> ids;
  for (const auto& [t, m] : mass) ids.push_back(t);
  std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return mass[a] > mass[b]; });
  return ids;
}

struct Arm {
  // "none" (AR), "full", "q4", "trim:N" (a fixed list: ids ascending), "likely:N" (trim:N over the tokens
  // the target is likeliest to emit here)
  std::string head;
  float draft_temperature = 1;
  int depth = 0;
  int64_t min_accepted = 0;  // drafts that must have been accepted at every position (coverage)
  int samples = 2000;        // runs
  int draft_top_k = 0;       // the draft sampler's top-k (0 = none; top-p 0.95 with it)

  std::string name() const {
    if (depth == 0) return "AR";
    return str(head, " T", draft_temperature, draft_top_k > 0 ? str(" k", draft_top_k) : "", " K", depth);
  }
};

inline void PrintTo(const Arm& arm, std::ostream* os) {
  *os << arm.name();
}

struct Sampled {
  Histogram histogram;
  std::vector<int64_t> drafted, accepted;  // [depth] totals over the runs
  int64_t on_device = 0;                   // runs whose draws and acceptance ran on the device
};

inline std::unique_ptr<DraftHead> make_head(Qwen35Model& model, const std::string& head, const Law& law) {
  if (head == "none") return nullptr;
  if (head.starts_with("likely:")) {
    return std::make_unique<DraftHead>(model, parse_draft_head("trim:" + head.substr(7)), likely_tokens(law));
  }
  std::vector<int32_t> ids(static_cast<size_t>(model.config().vocab_size));
  std::iota(ids.begin(), ids.end(), 0);
  return std::make_unique<DraftHead>(model, parse_draft_head(head), ids);
}

// arm.samples generations with seeds kSeed0 + i, each stopped after its kWindow-th token.
inline Sampled sample_arm(Qwen35Model& model, const Law& law, const Arm& arm, bool device_sampling = true) {
  const auto head = make_head(model, arm.head, law);
  Generator generator(model, head.get());
  GenerationConfig config;
  config.device_sampling = device_sampling;
  config.target = target_sampler();
  config.draft.temperature = arm.draft_temperature;
  if (arm.draft_top_k > 0) {
    config.draft.top_k = arm.draft_top_k;
    config.draft.top_p = 0.95f;
  }
  config.mtp_depth = arm.depth;
  config.max_tokens = 16;  // the sink stops at kWindow; a larger budget keeps cycles at full depth
  Sampled out;
  out.drafted.assign(static_cast<size_t>(arm.depth), 0);
  out.accepted.assign(static_cast<size_t>(arm.depth), 0);
  for (int i = 0; i < arm.samples; ++i) {
    config.seed = kSeed0 + static_cast<uint64_t>(i);
    int seen = 0;
    const auto result = generator.generate(kPrompt, config, [&](int32_t) { return ++seen < kWindow; });
    EXPECT_EQ(result.tokens.size(), static_cast<size_t>(kWindow));
    if (result.tokens.size() != kWindow) continue;
    Sequence seq;
    std::copy(result.tokens.begin(), result.tokens.end(), seq.begin());
    ++out.histogram[seq];
    out.on_device += result.stats.device_sampling ? 1 : 0;
    for (int k = 0; k < arm.depth; ++k) {
      out.drafted[static_cast<size_t>(k)] += result.stats.drafted_at[static_cast<size_t>(k)];
      out.accepted[static_cast<size_t>(k)] += result.stats.accepted_at[static_cast<size_t>(k)];
    }
  }
  return out;
}

inline Chi2Result fit_to_law(const Histogram& h, const Law& law) {
  std::vector<int64_t> observed;
  std::vector<double> probs;
  for (const auto& [seq, p] : law) {
    const auto it = h.find(seq);
    observed.push_back(it == h.end() ? 0 : it->second);
    probs.push_back(p);
  }
  for (const auto& [seq, n] : h) {
    if (!law.contains(seq)) {  // impossible under the target
      observed.push_back(n);
      probs.push_back(0);
    }
  }
  return chi2_goodness_of_fit(observed, probs);
}

inline Chi2Result two_sample(const Histogram& a, const Histogram& b) {
  std::map<Sequence, std::pair<int64_t, int64_t>> joint;
  for (const auto& [seq, n] : a) joint[seq].first = n;
  for (const auto& [seq, n] : b) joint[seq].second = n;
  std::vector<int64_t> ca, cb;
  for (const auto& [seq, counts] : joint) {
    ca.push_back(counts.first);
    cb.push_back(counts.second);
  }
  return chi2_two_sample(ca, cb);
}

// An MTP arm's verdict: its fit to the exact law, its homogeneity with the AR arm, each at `alpha`, and the
// coverage it promises (rejections at position 1; with min_accepted, acceptances at every position and
// rejections at the last).
inline void expect_arm_exact(const Arm& arm, const Sampled& s, const Histogram& ar, const Law& law,
                             double alpha) {
  const Chi2Result fit = fit_to_law(s.histogram, law);
  const Chi2Result homogeneity = two_sample(ar, s.histogram);
  std::printf("%s: fit chi2 %.1f dof %d p %.3g; vs AR chi2 %.1f dof %d p %.3g; accepted/drafted",
              arm.name().c_str(), fit.statistic, fit.dof, fit.p_value, homogeneity.statistic, homogeneity.dof,
              homogeneity.p_value);
  for (int k = 0; k < arm.depth; ++k) {
    const auto i = static_cast<size_t>(k);
    std::printf(" @%d %lld/%lld", k + 1, static_cast<long long>(s.accepted[i]),
                static_cast<long long>(s.drafted[i]));
  }
  std::printf("\n");
  EXPECT_GT(fit.p_value, alpha) << arm.name();
  EXPECT_GT(homogeneity.p_value, alpha) << arm.name();
  EXPECT_GE(s.drafted[0] - s.accepted[0], 100) << "rejections at position 1";
  for (int k = 0; k < arm.depth; ++k) {
    EXPECT_GE(s.accepted[static_cast<size_t>(k)], arm.min_accepted) << "accepted at position " << k + 1;
  }
  if (arm.min_accepted > 0) {
    const auto last = static_cast<size_t>(arm.depth - 1);
    EXPECT_GE(s.drafted[last] - s.accepted[last], 100) << "rejections at position " << arm.depth;
  }
}

// The AR arm's fit to the exact law at `alpha`, with enough cells to mean something.
inline void expect_ar_exact(const Sampled& ar, const Law& law, double alpha) {
  const Chi2Result fit = fit_to_law(ar.histogram, law);
  std::printf("AR: %zu sequences in the law, %zu seen; fit chi2 %.1f dof %d p %.3g\n", law.size(),
              ar.histogram.size(), fit.statistic, fit.dof, fit.p_value);
  EXPECT_GE(fit.dof, 8);
  EXPECT_GT(fit.p_value, alpha);
}

// A gtest parameter name for an arm.
inline std::string arm_test_name(const Arm& arm) {
  std::string name = arm.name();
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name;
}

}  // namespace mtplx::exactness

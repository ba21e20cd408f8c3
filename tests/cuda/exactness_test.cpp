// The chi-square exactness test of MTP speculative sampling on the GPU (method, oracle and power:
// tests/decode/exactness_test.cpp): the first three tokens the generator emits on the CUDA backend, with
// draws and acceptance on the device (CudaBackend::device_sampler), must have the joint law of plain
// sampling. The law is enumerated with the trunk on the GPU and the host Sampler, which shares no code with
// the device kernels. Skipped when no GPU is present.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>

#include "backend/cuda/cuda_backend.h"
#include "support/exactness.h"

namespace mtplx {
namespace {

using namespace exactness;

// The fixture model of this file, on the GPU.
constexpr auto& loaded = shared_model<CudaBackend, 0>;

// Every path of the device rule, each with a draft top-k cut so that the drafts too are drawn on the device
// (likely:10 has 10 rows, the eos ids among them: k 8 cuts it): the all-rejected residual with the full head;
// accepted and rejected drafts at both positions with likely:10 (sampled q nearly uniform at temperature 3,
// and at 1); greedy drafts (q a point mass) under the sampled target.
const std::vector<Arm>& gpu_arms() {
  static const std::vector<Arm> arms = {
      {"full", 0.7f, 1, 0, 2000, 20},       {"likely:10", 1.0f, 2, 100, 6000, 8},
      {"likely:10", 3.0f, 1, 100, 6000, 8}, {"likely:10", 3.0f, 2, 100, 6000, 8},
      {"likely:10", 0.0f, 2, 100, 4000},
  };
  return arms;
}

double per_comparison_alpha() {
  return kFamilyAlpha / (1 + 2 * static_cast<double>(gpu_arms().size()));
}

const Sampled& ar_samples() {
  static const Sampled s = sample_arm(loaded().model, loaded().law(), {"none", 1, 0});
  return s;
}

template <class Base>
class OnGpu : public Base {
 protected:
  void SetUp() override {
    if (!cuda_device_present()) GTEST_SKIP() << cuda_device_description();
  }
};
using CudaExactnessAr = OnGpu<::testing::Test>;
using CudaExactness = OnGpu<::testing::TestWithParam<Arm>>;

TEST_F(CudaExactnessAr, AutoregressiveMatchesTheExactLaw) {
  expect_ar_exact(ar_samples(), loaded().law(), per_comparison_alpha());
  EXPECT_EQ(ar_samples().on_device, 2000) << "runs that drew on the host";
}

TEST_P(CudaExactness, FirstThreeTokensMatchPlainSampling) {
  const Arm& arm = GetParam();
  const Sampled s = sample_arm(loaded().model, loaded().law(), arm);
  EXPECT_EQ(s.on_device, arm.samples) << "runs that drew on the host";
  expect_arm_exact(arm, s, ar_samples().histogram, loaded().law(), per_comparison_alpha());
}

// Token for token, the device path equals the host path (the same uniforms; the host Sampler and
// verify_sampled as the oracle) where drafts are often accepted, so accepted drafts, rejections and bonus
// tokens all occur: 16 tokens for each of 300 seeds, with sampled drafts (odd k at depth 3) and greedy ones.
TEST_F(CudaExactnessAr, DeviceRunsEqualHostRunsWhereDraftsAreAccepted) {
  const Arm arms[] = {
      {"likely:10", 1.0f, 2, 0, 300, 8}, {"likely:10", 3.0f, 3, 0, 300, 7}, {"likely:10", 0.0f, 2, 0, 300}};
  for (const Arm& arm : arms) {
    const auto head = make_head(loaded().model, arm.head, loaded().law());
    Generator generator(loaded().model, head.get());
    GenerationConfig config;
    config.target = target_sampler();
    config.draft.temperature = arm.draft_temperature;
    config.draft.top_k = arm.draft_top_k;
    config.mtp_depth = arm.depth;
    config.max_tokens = 16;
    std::vector<int64_t> accepted(static_cast<size_t>(arm.depth), 0);
    int64_t rejected_first = 0;
    for (int i = 0; i < arm.samples; ++i) {
      config.seed = kSeed0 + static_cast<uint64_t>(i);
      config.device_sampling = true;
      const auto device = generator.generate(kPrompt, config);
      config.device_sampling = false;
      const auto host = generator.generate(kPrompt, config);
      ASSERT_TRUE(device.stats.device_sampling) << arm.name();
      ASSERT_EQ(device.tokens, host.tokens) << arm.name() << " seed " << config.seed;
      ASSERT_EQ(device.stats.accepted_at, host.stats.accepted_at) << arm.name() << " seed " << config.seed;
      for (int k = 0; k < arm.depth; ++k) accepted[static_cast<size_t>(k)] += device.stats.accepted_at[k];
      rejected_first += device.stats.drafted_at[0] - device.stats.accepted_at[0];
    }
    std::printf("[cuda sampler] %s: accepted at each position", arm.name().c_str());
    for (const int64_t a : accepted) std::printf(" %lld", static_cast<long long>(a));
    std::printf(", rejected at 1: %lld\n", static_cast<long long>(rejected_first));
    EXPECT_GT(accepted.back(), 0) << arm.name() << ": no cycle accepted every draft (bonus untested)";
    EXPECT_GT(rejected_first, 0) << arm.name();
  }
}

INSTANTIATE_TEST_SUITE_P(Arms, CudaExactness, ::testing::ValuesIn(gpu_arms()),
                         [](const auto& param) { return arm_test_name(param.param); });

}  // namespace
}  // namespace mtplx

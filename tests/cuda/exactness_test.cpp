// The chi-square exactness test of MTP speculative sampling on the GPU (method, oracle and power:
// tests/decode/exactness_test.cpp): the first three tokens the generator emits on the CUDA backend, with
// draws and acceptance on the device (CudaBackend::device_sampler), must have the joint law of plain
// sampling. The law is enumerated with the trunk on the GPU and the host Sampler, which shares no code with
// the device kernels. Skipped when no GPU is present.
#include <gtest/gtest.h>

#include <memory>

#include "backend/cuda/cuda_backend.h"
#include "support/exactness.h"

namespace mtplx {
namespace {

using namespace exactness;

LoadedModel<CudaBackend>& loaded() {
  static LoadedModel<CudaBackend> m(0);
  return m;
}

const Law& target_law() {
  return loaded().law();
}

// Every path of the device rule, each with a draft top-k cut so that the drafts too are drawn on the device
// (likely:10 has 10 rows: k 8 cuts it): the all-rejected residual with the full head; accepted and rejected
// drafts at both positions with likely:10 (sampled q nearly uniform at temperature 3, and at 1); greedy
// drafts (q a point mass) under the sampled target.
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
  static const Sampled s = sample_arm(loaded().model, target_law(), {"none", 1, 0});
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
  expect_ar_exact(ar_samples(), target_law(), per_comparison_alpha());
  EXPECT_EQ(ar_samples().on_device, 2000) << "runs that drew on the host";
}

TEST_P(CudaExactness, FirstThreeTokensMatchPlainSampling) {
  const Arm& arm = GetParam();
  const Sampled s = sample_arm(loaded().model, target_law(), arm);
  EXPECT_EQ(s.on_device, arm.samples) << "runs that drew on the host";
  expect_arm_exact(arm, s, ar_samples().histogram, target_law(), per_comparison_alpha());
}

INSTANTIATE_TEST_SUITE_P(Arms, CudaExactness, ::testing::ValuesIn(gpu_arms()),
                         [](const auto& param) { return arm_test_name(param.param); });

}  // namespace
}  // namespace mtplx

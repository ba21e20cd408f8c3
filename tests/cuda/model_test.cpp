// The whole model on the CUDA backend, on every fixture under tests/fixtures/: trunk and MTP logits against
// the transformers / float64 references (the CPU backend's tolerance) and against the CPU backend, prefill
// then decode, captured verify + rollback, and greedy MTP decoding token-identical to AR and to the CPU.
// Skipped when no GPU is present. The fixtures folder is $MTPLX_SOURCE_DIR/tests/fixtures when that is
// set (the GPU machine checks the tree out elsewhere), else the source folder this was built from.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "decode/draft_head.h"
#include "decode/generator.h"
#include "io/checkpoint.h"
#include "model/qwen35.h"
#include "support/reference.h"
#include "support/temp_dir.h"
#include "support/top_k_checks.h"

namespace mtplx {
namespace {

namespace fs = std::filesystem;

using testing::fixture_dirs;
using testing::fixture_name;
using testing::read_reference;
using testing::Reference;
using testing::relative_error;

constexpr double kLogitTolerance = 1e-4;  // the CPU backend's tolerance against the references

std::vector<float> to_host(Backend& backend, const Tensor& t) {
  std::vector<float> host(t.numel());
  backend.download(t, host);
  return host;
}

class CudaFixture : public ::testing::TestWithParam<fs::path> {
 protected:
  void SetUp() override {
    if (!cuda_device_present()) GTEST_SKIP() << cuda_device_description();
    gpu_ = std::make_unique<CudaBackend>(0);
    ckpt_ = std::make_unique<Checkpoint>(open_checkpoint(GetParam()));
    model_ = std::make_unique<Qwen35Model>(*ckpt_, *gpu_);
    ref_ = read_reference(GetParam());
  }
  int64_t T() const { return static_cast<int64_t>(ref_.tokens.size()); }
  std::vector<float> logits_in_pieces(Qwen35Model& model, const std::vector<int64_t>& pieces,
                                      GdnMode mode = GdnMode::kAuto) {
    ModelState state = model.new_state(T());
    std::vector<float> all;
    int64_t at = 0;
    for (int64_t size : pieces) {
      std::span<const int32_t> part(ref_.tokens.data() + at, size);
      const auto host = to_host(model.backend(), model.logits(model.forward(part, state, {mode})));
      all.insert(all.end(), host.begin(), host.end());
      at += size;
    }
    return all;
  }
  void report(const char* what, double error) {
    std::printf("[cuda fixture %s] %s %.3g\n", GetParam().filename().c_str(), what, error);
  }

  std::unique_ptr<CudaBackend> gpu_;
  std::unique_ptr<Checkpoint> ckpt_;
  std::unique_ptr<Qwen35Model> model_;
  Reference ref_;
};

TEST_P(CudaFixture, TrunkLogitsMatchReferenceAndCpu) {
  const auto gpu = logits_in_pieces(*model_, {T()});
  const double error = relative_error(gpu, ref_.logits);
  report("trunk logits vs transformers", error);
  EXPECT_LT(error, kLogitTolerance);
  CpuBackend cpu(4);
  Qwen35Model cpu_model(*ckpt_, cpu);
  const double vs_cpu = relative_error(gpu, logits_in_pieces(cpu_model, {T()}));
  report("trunk logits vs cpu backend", vs_cpu);
  EXPECT_LT(vs_cpu, 1e-5);
}

TEST_P(CudaFixture, MtpLogitsMatchReference) {
  if (ref_.mtp_logits.empty()) GTEST_SKIP() << "fixture has no MTP head";
  ModelState state = model_->new_state(T());
  const Tensor hidden = model_->forward(ref_.tokens, state);
  const std::vector<int32_t> next(ref_.tokens.begin() + 1, ref_.tokens.end());
  const auto ours =
      to_host(*gpu_, model_->logits(model_->mtp_forward(next, hidden.row_view(0, T() - 1), 0, state)));
  const double error = relative_error(ours, ref_.mtp_logits);
  report("MTP logits vs reference", error);
  EXPECT_LT(error, kLogitTolerance);
}

TEST_P(CudaFixture, PrefillThenDecodeAndVerifyWidths) {
  const auto whole = logits_in_pieces(*model_, {T()});
  std::vector<int64_t> pieces = {T() - 12};
  pieces.insert(pieces.end(), 12, 1);
  EXPECT_LT(relative_error(logits_in_pieces(*model_, pieces), whole), 1e-5);
  std::vector<int64_t> widths = {20};
  for (int64_t w = 1; w <= 8; ++w) widths.push_back(w);
  std::vector<int64_t> one_by_one = {20};
  one_by_one.insert(one_by_one.end(), 36, 1);
  EXPECT_LT(relative_error(logits_in_pieces(*model_, widths), logits_in_pieces(*model_, one_by_one)), 1e-5);
}

TEST_P(CudaFixture, RollbackToAnyPrefixEqualsNeverRunningTheRest) {
  const int64_t prefix = 30, width = 6, tail = 6;
  std::vector<int64_t> plain_pieces = {prefix};
  plain_pieces.insert(plain_pieces.end(), width + tail, 1);
  const auto plain = logits_in_pieces(*model_, plain_pieces);
  const int64_t V = model_->config().vocab_size;
  for (int64_t keep = 1; keep <= width; ++keep) {
    ModelState state = model_->new_state(T());
    model_->forward(std::span<const int32_t>(ref_.tokens.data(), prefix), state);
    std::vector<int32_t> verify(ref_.tokens.begin() + prefix, ref_.tokens.begin() + prefix + width);
    for (int64_t i = keep; i < width; ++i) verify[i] = static_cast<int32_t>((verify[i] * 7 + 3) % V);
    model_->forward(verify, state, {GdnMode::kAuto, true});
    model_->rollback(state, keep);
    std::vector<float> after;
    for (int64_t p = prefix + keep; p < prefix + width + tail; ++p) {
      const auto row = to_host(*gpu_, model_->logits(model_->forward(std::span(&ref_.tokens[p], 1), state)));
      after.insert(after.end(), row.begin(), row.end());
    }
    const std::vector<float> expected(plain.begin() + (prefix + keep) * V,
                                      plain.begin() + (prefix + width + tail) * V);
    EXPECT_LT(relative_error(after, expected), 1e-5) << "keep " << keep;
  }
}

GenerationConfig greedy(int depth, int64_t tokens) {
  GenerationConfig config;
  config.target.temperature = 0;
  config.draft.temperature = 0;
  config.mtp_depth = depth;
  config.max_tokens = tokens;
  return config;
}

TEST_P(CudaFixture, GreedyMtpEqualsArEqualsCpu) {
  if (!model_->has_mtp()) GTEST_SKIP() << "fixture has no MTP head";
  const std::vector<int32_t> prompt = {3, 17, 42, 99, 7, 250, 31, 8, 64, 12};
  DraftHead head(*model_, {});
  Generator generator(*model_, &head);
  const auto ar = generator.generate(prompt, greedy(0, 64));
  ASSERT_EQ(ar.tokens.size(), 64u);
  for (int depth = 1; depth <= 4; ++depth)
    EXPECT_EQ(generator.generate(prompt, greedy(depth, 64)).tokens, ar.tokens) << "depth " << depth;
  CpuBackend cpu(4);
  Qwen35Model cpu_model(*ckpt_, cpu);
  Generator cpu_generator(cpu_model, nullptr);
  EXPECT_EQ(cpu_generator.generate(prompt, greedy(0, 64)).tokens, ar.tokens);
}

// Sampled decoding under a top-k cut (the artifacts' default samplers) on the GPU: rows that come to the
// host as their top-k entries (CudaBackend::top_k) give the same tokens as whole rows, AR and MTP, with
// the full and a trimmed draft head.
TEST_P(CudaFixture, SampledTopKOnDeviceEqualsWholeRows) {
  const std::vector<int32_t> prompt = {3, 17, 42, 99, 7, 250, 31, 8, 64, 12};
  std::vector<int32_t> frequent(static_cast<size_t>(model_->config().vocab_size));
  for (size_t i = 0; i < frequent.size(); ++i) frequent[i] = static_cast<int32_t>((i * 7) % frequent.size());
  test::expect_top_k_path_equals_whole_rows(*model_, prompt, frequent, {"full", "trim:300"}, 7);
}

// Draws and acceptance on the device (CudaBackend::device_sampler) give the host path's tokens.
TEST_P(CudaFixture, SampledOnDeviceEqualsHostPath) {
  const std::vector<int32_t> prompt = {3, 17, 42, 99, 7, 250, 31, 8, 64, 12};
  std::vector<int32_t> frequent(static_cast<size_t>(model_->config().vocab_size));
  for (size_t i = 0; i < frequent.size(); ++i) frequent[i] = static_cast<int32_t>((i * 7) % frequent.size());
  const TopKFilter filter{20, 0.6f, 0.95f, 0.0f, model_->config().vocab_size};
  ASSERT_NE(gpu_->device_sampler(filter, &filter, {}, 3), nullptr);
  // The random heads seldom hit: acceptance itself is exercised by tests/cuda/exactness_test.cpp.
  const int64_t accepted =
      test::expect_device_sampling_equals_host(*model_, prompt, frequent, {"full", "trim:300"}, 11);
  std::printf("[cuda sampler] drafts accepted over the runs: %lld\n", static_cast<long long>(accepted));
}

// Greedy drafts kept in device token slots (the next draft step's and the verify's ids read there at
// replay) give the tokens and acceptance of drafts downloaded one by one, with the full and a trimmed head
// (ids mapped on the device).
TEST_P(CudaFixture, GreedyDraftIdsInSlotsEqualHostDrafts) {
  if (!model_->has_mtp()) GTEST_SKIP() << "fixture has no MTP head";
  const std::vector<int32_t> prompt = {3, 17, 42, 99, 7, 250, 31, 8, 64, 12};
  std::vector<int32_t> frequent(static_cast<size_t>(model_->config().vocab_size));
  for (size_t i = 0; i < frequent.size(); ++i) frequent[i] = static_cast<int32_t>((i * 7) % frequent.size());
  test::expect_slotted_drafts_equal_host_drafts(*model_, prompt, frequent, {"full", "trim:300"}, 5);
  // Without step graphs every step reads the slots to the host first (Qwen35Model's non-graph path).
  gpu_->set_graphs(false);
  test::expect_slotted_drafts_equal_host_drafts(*model_, prompt, frequent, {"trim:300"}, 6);
  gpu_->set_graphs(true);
}

// The same on the trained default model, whose head gets drafts past the first accepted.
TEST(CudaDefaultModel, GreedyDraftIdsInSlotsEqualHostDrafts) {
  if (!cuda_device_present()) GTEST_SKIP() << cuda_device_description();
  CudaBackend gpu(0);
  const Checkpoint ckpt = open_checkpoint(testing::source_dir() / "models" / "qwen3.5-tiny-mtplx");
  Qwen35Model model(ckpt, gpu);
  std::vector<int32_t> frequent(static_cast<size_t>(model.config().vocab_size));
  // Token 0 last: a trimmed head keeps ids 1.., so its rows map to other ids (a map left out shows).
  for (size_t i = 0; i < frequent.size(); ++i) frequent[i] = static_cast<int32_t>((i + 1) % frequent.size());
  const std::vector<int32_t> prompt = {3, 17, 42, 99, 7, 250, 31, 8, 64, 12};
  const int64_t accepted =
      test::expect_slotted_drafts_equal_host_drafts(model, prompt, frequent, {"full", "trim:2000"}, 3);
  std::printf("[cuda default model] drafts accepted past the first: %lld\n",
              static_cast<long long>(accepted));
  EXPECT_GT(accepted, 0) << "no draft past the first accepted: chained draft steps untested";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaFixture, ::testing::ValuesIn(fixture_dirs()), fixture_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(CudaFixture);

}  // namespace
}  // namespace mtplx

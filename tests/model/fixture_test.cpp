// The forward pass against transformers: every fixture under tests/fixtures/ holds a checkpoint written by
// tools/reference/make_fixtures.py on the GPU machine and reference.safetensors with the trunk logits
// (transformers, fp32) and MTP logits (a float64 implementation validated against transformers' trunk).
// Also: prefill-then-decode, verify widths and chunked-vs-recurrent GDN all reach the same results.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "base/error.h"
#include "io/checkpoint.h"
#include "model/qwen35.h"
#include "support/reference.h"
#include "support/temp_dir.h"

namespace mtplx {
namespace {

namespace fs = std::filesystem;

// Reported tolerance: max |ours - reference| / max |reference| over a whole logits matrix.
constexpr double kLogitTolerance = 1e-4;

using testing::fixture_dirs;
using testing::fixture_name;
using testing::read_reference;
using testing::Reference;
using testing::relative_error;

std::vector<float> to_host(Backend& backend, const Tensor& t) {
  std::vector<float> host(t.numel());
  backend.download(t, host);
  return host;
}

class FixtureTest : public ::testing::TestWithParam<fs::path> {
 protected:
  void SetUp() override {
    ckpt_ = std::make_unique<Checkpoint>(open_checkpoint(GetParam()));
    model_ = std::make_unique<Qwen35Model>(*ckpt_, cpu_);
    ref_ = read_reference(GetParam());
    ASSERT_EQ(ref_.vocab, model_->config().vocab_size);
  }
  // Logits for every token, processed in pieces of the given sizes.
  std::vector<float> logits_in_pieces(const std::vector<int64_t>& pieces, GdnMode mode = GdnMode::kAuto) {
    ModelState state = model_->new_state(static_cast<int64_t>(ref_.tokens.size()));
    std::vector<float> all;
    int64_t at = 0;
    for (int64_t size : pieces) {
      std::span<const int32_t> part(ref_.tokens.data() + at, size);
      const auto host = to_host(cpu_, model_->logits(model_->forward(part, state, {mode})));
      all.insert(all.end(), host.begin(), host.end());
      at += size;
    }
    return all;
  }
  int64_t T() const { return static_cast<int64_t>(ref_.tokens.size()); }

  CpuBackend cpu_{2};
  std::unique_ptr<Checkpoint> ckpt_;
  std::unique_ptr<Qwen35Model> model_;
  Reference ref_;
};

TEST_P(FixtureTest, TrunkLogitsMatchTransformers) {
  const double error = relative_error(logits_in_pieces({T()}), ref_.logits);
  RecordProperty("trunk_relative_error", std::to_string(error));
  std::printf("[fixture %s] trunk logits relative error %.3g\n", GetParam().filename().c_str(), error);
  EXPECT_LT(error, kLogitTolerance);
}

TEST_P(FixtureTest, MtpLogitsMatchReference) {
  if (ref_.mtp_logits.empty()) GTEST_SKIP() << "fixture has no MTP head";
  ASSERT_TRUE(model_->has_mtp());
  ModelState state = model_->new_state(T());
  const Tensor hidden = model_->forward(ref_.tokens, state);
  const std::vector<int32_t> next(ref_.tokens.begin() + 1, ref_.tokens.end());
  const auto ours =
      to_host(cpu_, model_->logits(model_->mtp_forward(next, hidden.row_view(0, T() - 1), 0, state)));
  const double error = relative_error(ours, ref_.mtp_logits);
  std::printf("[fixture %s] MTP logits relative error %.3g\n", GetParam().filename().c_str(), error);
  EXPECT_LT(error, kLogitTolerance);
}

TEST_P(FixtureTest, PrefillThenDecodeEqualsAllAtOnce) {
  const auto whole = logits_in_pieces({T()});
  std::vector<int64_t> pieces = {T() - 12};
  pieces.insert(pieces.end(), 12, 1);
  EXPECT_LT(relative_error(logits_in_pieces(pieces), whole), 1e-5);
}

TEST_P(FixtureTest, VerifyWidthsEqualOneByOneDecode) {
  const int64_t prefix = 20;
  std::vector<int64_t> one_by_one = {prefix};
  one_by_one.insert(one_by_one.end(), 36, 1);
  const auto reference = logits_in_pieces(one_by_one);
  std::vector<int64_t> widths = {prefix};
  for (int64_t w = 1; w <= 8; ++w) widths.push_back(w);  // 36 tokens in widths 1..8
  EXPECT_LT(relative_error(logits_in_pieces(widths), reference), 1e-5);
}

TEST_P(FixtureTest, ChunkedGdnEqualsRecurrentGdn) {
  const auto chunked = logits_in_pieces({T()}, GdnMode::kChunked);
  const auto recurrent = logits_in_pieces({T()}, GdnMode::kRecurrent);
  EXPECT_LT(relative_error(chunked, recurrent), 1e-5);
}

// Speculative verify: a captured forward of 6 rows rolled back to its first `keep` rows, then continued,
// gives the same logits as never having run the rejected rows.
TEST_P(FixtureTest, RollbackToAnyPrefixEqualsNeverRunningTheRest) {
  const int64_t prefix = 30, width = 6, tail = 10;
  std::vector<int64_t> plain_pieces = {prefix};
  plain_pieces.insert(plain_pieces.end(), width + tail, 1);
  const auto plain = logits_in_pieces(plain_pieces);
  const int64_t V = ref_.vocab;
  for (int64_t keep = 1; keep <= width; ++keep) {
    ModelState state = model_->new_state(T());
    model_->forward(std::span<const int32_t>(ref_.tokens.data(), prefix), state);
    // Verify rows: the real tokens for the kept rows, then garbage that must leave no trace.
    std::vector<int32_t> verify(ref_.tokens.begin() + prefix, ref_.tokens.begin() + prefix + width);
    for (int64_t i = keep; i < width; ++i) verify[i] = static_cast<int32_t>((verify[i] * 7 + 3) % V);
    const auto verify_logits =
        to_host(cpu_, model_->logits(model_->forward(verify, state, {GdnMode::kAuto, true})));
    model_->rollback(state, keep);
    ASSERT_EQ(state.position, prefix + keep);
    for (int64_t i = 0; i < keep; ++i) {
      for (int64_t v = 0; v < V; ++v) {
        ASSERT_NEAR(verify_logits[i * V + v], plain[(prefix + i) * V + v], 1e-4)
            << "keep " << keep << " row " << i;
      }
    }
    std::vector<float> after;
    for (int64_t p = prefix + keep; p < prefix + width + tail; ++p) {
      const auto row = to_host(cpu_, model_->logits(model_->forward(std::span(&ref_.tokens[p], 1), state)));
      after.insert(after.end(), row.begin(), row.end());
    }
    const std::vector<float> expected(plain.begin() + (prefix + keep) * V,
                                      plain.begin() + (prefix + width + tail) * V);
    EXPECT_LT(relative_error(after, expected), 1e-5) << "keep " << keep;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureTest, ::testing::ValuesIn(fixture_dirs()), fixture_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(FixtureTest);

TEST(Fixtures, ArePresent) {
  EXPECT_GE(fixture_dirs().size(), 5u) << "tests/fixtures/ is missing fixtures";
}

}  // namespace
}  // namespace mtplx

// Backend::top_k on the host (the CPU backend's in-place selection and the download-then-select default)
// against an independent oracle (a stable sort of the whole row, tests/support/greedy_rows.h) on rows with
// ties, -inf, NaN, +inf and +0 / -0, at the Qwen3.5 vocabulary and at sizes around the CUDA kernel's chunks;
// and the sampler's candidate path (Sampler::filter_top_k) against its whole-row path.
#include <gtest/gtest.h>

#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "base/error.h"
#include "decode/sampling.h"
#include "support/top_k_checks.h"

namespace mtplx {
namespace {

template <class Select>
void expect_oracle(const std::vector<float>& x, int64_t rows, int64_t cols, int k, Select select) {
  std::vector<ScoredToken> got;
  select(x, rows, cols, k, got);
  test::expect_top_k_oracle(x, rows, cols, k, got);
}

void expect_all_sizes(CpuBackend& cpu, bool use_default) {
  const auto select = [&](const std::vector<float>& x, int64_t rows, int64_t cols, int k,
                          std::vector<ScoredToken>& out) {
    const Tensor t = cpu.upload(x, rows, cols);
    if (use_default)
      cpu.Backend::top_k(t, k, out);
    else
      cpu.top_k(t, k, out);
  };
  for (const int64_t cols : {1, 7, 300, 2047, 2049, 8193, 31040}) {
    for (const int k : {1, 2, 20, 64, 133}) {
      expect_oracle(test::greedy_rows(9, cols, 11), 9, cols, k, select);
      expect_oracle(test::tied_rows(3, cols, 13), 3, cols, k, select);
    }
  }
  expect_oracle(test::greedy_rows(3, 248320, 3), 3, 248320, 20, select);
  expect_oracle(test::tied_rows(1, 248320, 5), 1, 248320, 50, select);
  expect_oracle(test::greedy_rows(2, 5, 7), 2, 5, 9, select);  // k past the row: padded with id -1
}

TEST(TopK, CpuMatchesOracle) {
  CpuBackend cpu(1);
  expect_all_sizes(cpu, false);
}

TEST(TopK, DefaultMatchesOracle) {
  CpuBackend cpu(1);
  expect_all_sizes(cpu, true);
}

TEST(TopK, ZeroKAndEmptyRows) {
  CpuBackend cpu(1);
  std::vector<ScoredToken> out(3);
  cpu.top_k(cpu.upload(std::vector<float>(10, 1.0f), 2, 5), 0, out);
  EXPECT_TRUE(out.empty());
  cpu.top_k(cpu.alloc(0, 100), 4, out);
  EXPECT_TRUE(out.empty());
  EXPECT_THROW(cpu.top_k(cpu.alloc(1, 100), -1, out), Error);
}

// filter_top_k over a row's top-k entries gives the very distribution filter gives over the whole row (the
// generator relies on it to bring k entries per row to the host), for every filter that follows top-k.
TEST(TopK, SamplerCandidatesGiveTheWholeRowDistribution) {
  CpuBackend cpu(1);
  const int64_t vocab = 5000;
  const std::vector<float> rows = test::greedy_rows(8, vocab, 21);
  const std::vector<float> tied = test::tied_rows(2, vocab, 23);
  for (const SamplerConfig config :
       {SamplerConfig{0.6f, 20, 0.95f}, SamplerConfig{1.0f, 40}, SamplerConfig{0.7f, 20, 1.0f, 0.05f},
        SamplerConfig{1.3f, 1}, SamplerConfig{0.01f, 3, 0.5f}}) {
    Sampler sampler(config, static_cast<int>(vocab));
    ASSERT_EQ(sampler.candidates_needed(), config.top_k);
    for (const auto* x : {&rows, &tied}) {
      const int64_t n = static_cast<int64_t>(x->size()) / vocab;
      std::vector<ScoredToken> candidates;
      cpu.top_k(cpu.upload(*x, n, vocab), config.top_k, candidates);
      for (int64_t r = 0; r < n; ++r) {
        Distribution whole, picked;
        const auto pick = [&] {
          sampler.filter_top_k(std::span(candidates).subspan(r * config.top_k, config.top_k), picked);
        };
        try {
          sampler.filter(std::span(*x).subspan(r * vocab, vocab), whole);
        } catch (const Error&) {  // rows without finite mass (all -inf, +inf): the same refusal
          EXPECT_THROW(pick(), Error) << "row " << r;
          continue;
        }
        pick();
        ASSERT_EQ(picked.size(), whole.size()) << "row " << r << " top_k " << config.top_k;
        for (int i = 0; i < whole.size(); ++i) {
          EXPECT_EQ(picked.id_at(i), whole.id_at(i)) << "row " << r;
          EXPECT_EQ(picked.probs()[i], whole.probs()[i]) << "row " << r;
        }
      }
    }
  }
}

TEST(TopK, SamplerNeedsTheWholeRowWithoutATopKCut) {
  const auto needed = [](SamplerConfig config) { return Sampler(config, 100).candidates_needed(); };
  EXPECT_EQ(needed({0.6f, 20}), 20);
  EXPECT_EQ(needed({0.0f, 20}), 0);              // greedy
  EXPECT_EQ(needed({0.6f, 0, 0.9f}), 0);         // top-p alone needs the row's full mass
  EXPECT_EQ(needed({0.6f, 100}), 0);             // k covers the vocabulary: no cut
  EXPECT_EQ(needed({0.6f, 20, 1, 0, 1.1f}), 0);  // penalties change logits outside the top-k
  Sampler greedy({0.0f, 20}, 100);
  Distribution out;
  const std::vector<ScoredToken> candidates = {{1.0f, 3}};
  EXPECT_THROW(greedy.filter_top_k(candidates, out), Error);
  Sampler sampled({0.6f, 2}, 100);
  const std::vector<ScoredToken> outside = {{1.0f, 300}};
  EXPECT_THROW(sampled.filter_top_k(outside, out), Error);
}

}  // namespace
}  // namespace mtplx

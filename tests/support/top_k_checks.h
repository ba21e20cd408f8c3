// Checks shared by the CPU and CUDA tests of Backend::top_k and of the generator's top-k path.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>

#include "backend/row_pick.h"
#include "decode/draft_head.h"
#include "decode/generator.h"
#include "support/greedy_rows.h"

namespace mtplx::test {

// got [rows * k] against oracle_top_k of each row of x [rows, cols]: the ids in order, and the values
// wherever an id was picked.
inline void expect_top_k_oracle(std::span<const float> x, int64_t rows, int64_t cols, int k,
                                std::span<const ScoredToken> got) {
  ASSERT_EQ(got.size(), static_cast<size_t>(rows * k)) << rows << " x " << cols << " k " << k;
  for (int64_t r = 0; r < rows; ++r) {
    const auto want = oracle_top_k(x.subspan(r * cols, cols), k);
    for (int i = 0; i < k; ++i) {
      const ScoredToken& g = got[static_cast<size_t>(r * k + i)];
      ASSERT_EQ(g.id, want[i].second)
          << "row " << r << " rank " << i << " of " << rows << " x " << cols << " k " << k;
      if (g.id >= 0) {
        ASSERT_EQ(g.value, want[i].first) << "row " << r << " rank " << i;
      }
    }
  }
}

// Sampled generation under a top-k cut (the artifacts' default samplers: target 0.6 / 20 / 0.95, draft
// 0.7 / 20 / 0.95) with GenerationConfig::device_top_k on and off gives the same tokens and acceptance,
// AR and MTP depths 1..3 (AR alone without an MTP head), for each draft head spec. Returns the drafts
// accepted at the second position over all runs, so a caller can require that verify rows past the first
// decided tokens.
inline int64_t expect_top_k_path_equals_whole_rows(Qwen35Model& model, std::span<const int32_t> prompt,
                                                   std::span<const int32_t> frequent,
                                                   std::initializer_list<const char*> specs, uint64_t seed) {
  int64_t second_accepted = 0;
  for (const char* spec : specs) {
    std::optional<DraftHead> head;
    if (model.has_mtp()) head.emplace(model, parse_draft_head(spec), frequent);
    Generator generator(model, head ? &*head : nullptr);
    for (int depth = 0; depth <= (head ? 3 : 0); ++depth) {
      GenerationConfig config;
      config.target = {0.6f, 20, 0.95f};
      config.draft = {0.7f, 20, 0.95f};
      config.mtp_depth = depth;
      config.max_tokens = 48;
      config.seed = seed;
      const auto picked = generator.generate(prompt, config);
      config.device_top_k = false;
      const auto whole = generator.generate(prompt, config);
      EXPECT_EQ(picked.tokens, whole.tokens) << spec << " depth " << depth;
      EXPECT_EQ(picked.stats.accepted_at, whole.stats.accepted_at) << spec << " depth " << depth;
      if (depth > 1) second_accepted += picked.stats.accepted_at[1];
    }
  }
  return second_accepted;
}

}  // namespace mtplx::test

// Checks shared by the CPU and CUDA tests of Backend::top_k and of the generator's top-k path.
#pragma once

#include <gtest/gtest.h>

#include <array>
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

struct SamplerPair {
  SamplerConfig target, draft;
};

// Generation over every draft head spec (AR alone without an MTP head), sampler pair and MTP depth 0..3,
// twice: with `first` applied to the config and with `second`; both must give the same tokens and the same
// acceptance, and `check(a, b)` may test more. Returns the drafts accepted at each position over the first
// runs, so a caller can require that the acceptance rule decided tokens.
template <class Check>
std::array<int64_t, 3> expect_same_generations(Qwen35Model& model, std::span<const int32_t> prompt,
                                               std::span<const int32_t> frequent,
                                               std::initializer_list<const char*> specs,
                                               std::span<const SamplerPair> samplers, uint64_t seed,
                                               void (*first)(GenerationConfig&),
                                               void (*second)(GenerationConfig&), const Check& check) {
  std::array<int64_t, 3> accepted{};
  for (const char* spec : specs) {
    std::optional<DraftHead> head;
    if (model.has_mtp()) head.emplace(model, parse_draft_head(spec), frequent);
    Generator generator(model, head ? &*head : nullptr);
    for (const SamplerPair& s : samplers) {
      for (int depth = 0; depth <= (head ? 3 : 0); ++depth) {
        GenerationConfig config;
        config.target = s.target;
        config.draft = s.draft;
        config.mtp_depth = depth;
        config.max_tokens = 48;
        config.seed = seed;
        first(config);
        const auto a = generator.generate(prompt, config);
        second(config);
        const auto b = generator.generate(prompt, config);
        EXPECT_EQ(a.tokens, b.tokens) << spec << " depth " << depth << " draft T " << s.draft.temperature;
        EXPECT_EQ(a.stats.accepted_at, b.stats.accepted_at) << spec << " depth " << depth;
        check(a, b);
        for (int i = 0; i < depth; ++i) accepted[static_cast<size_t>(i)] += a.stats.accepted_at[i];
      }
    }
  }
  return accepted;
}

// Sampled generation under a top-k cut (the artifacts' default samplers: target 0.6 / 20 / 0.95, draft
// 0.7 / 20 / 0.95) on the host, with the rows' top-k picked by the backend (GenerationConfig::device_top_k)
// or whole rows, gives the same tokens and acceptance, for each draft head spec. Returns the drafts
// accepted at the second position over all runs, so a caller can require that verify rows past the first
// decided tokens.
inline int64_t expect_top_k_path_equals_whole_rows(Qwen35Model& model, std::span<const int32_t> prompt,
                                                   std::span<const int32_t> frequent,
                                                   std::initializer_list<const char*> specs, uint64_t seed) {
  const SamplerPair defaults[] = {{{0.6f, 20, 0.95f}, {0.7f, 20, 0.95f}}};
  const auto accepted = expect_same_generations(
      model, prompt, frequent, specs, defaults, seed, [](GenerationConfig& c) { c.device_sampling = false; },
      [](GenerationConfig& c) { c.device_top_k = false; }, [](const auto&, const auto&) {});
  return accepted[1];
}

// Sampled generation with draws and acceptance on the device (GenerationConfig::device_sampling) gives the
// host path's tokens and acceptance (the same uniforms, and the host Sampler and verify_sampled as the
// oracle), for each draft head spec, with sampled drafts, greedy drafts, a target with min-p and odd k; the
// first runs must have taken the device path. Returns the drafts accepted over all MTP runs.
inline int64_t expect_device_sampling_equals_host(Qwen35Model& model, std::span<const int32_t> prompt,
                                                  std::span<const int32_t> frequent,
                                                  std::initializer_list<const char*> specs, uint64_t seed) {
  const SamplerPair samplers[] = {
      {{0.6f, 20, 0.95f}, {0.7f, 20, 0.95f}},
      {{0.6f, 20, 0.95f}, {0.0f}},
      {{0.8f, 40, 0.9f, 0.05f}, {1.0f, 8, 1.0f}},
      {{0.7f, 25, 0.9f}, {0.9f, 7, 0.95f}},  // odd k: rows of shared memory 4 bytes off 8 without padding
  };
  const auto accepted = expect_same_generations(
      model, prompt, frequent, specs, samplers, seed, [](GenerationConfig&) {},
      [](GenerationConfig& c) { c.device_sampling = false; },
      [](const GenerationResult& device, const GenerationResult& host) {
        EXPECT_TRUE(device.stats.device_sampling);
        EXPECT_FALSE(host.stats.device_sampling);
      });
  return accepted[0] + accepted[1] + accepted[2];
}

// Greedy drafts kept in token slots (GenerationConfig::device_draft_ids: each draft step reads its id where
// it was picked, the verify reads the cycle's ids at once) give the tokens and acceptance of drafts brought
// to the host one by one, with a greedy and a sampled target, for each draft head spec; so do sampled
// drafts, which a device sampler draws into the slots (mapping a trimmed head's rows through the slots' id
// map) or, one by one, to the host (through its own copy). Returns the greedy drafts accepted past the
// first position, so a caller can require that chained draft steps decided tokens.
inline int64_t expect_slotted_drafts_equal_host_drafts(Qwen35Model& model, std::span<const int32_t> prompt,
                                                       std::span<const int32_t> frequent,
                                                       std::initializer_list<const char*> specs,
                                                       uint64_t seed) {
  const auto compare = [&](std::span<const SamplerPair> samplers) {
    return expect_same_generations(
        model, prompt, frequent, specs, samplers, seed, [](GenerationConfig&) {},
        [](GenerationConfig& c) { c.device_draft_ids = false; },
        [](const GenerationResult& slotted, const GenerationResult& host) {
          EXPECT_EQ(slotted.stats.drafted_at, host.stats.drafted_at);
          EXPECT_EQ(slotted.stats.cycles, host.stats.cycles);
        });
  };
  const SamplerPair greedy_drafts[] = {{{0.0f}, {0.0f}}, {{0.6f, 20, 0.95f}, {0.0f}}};
  const SamplerPair sampled_drafts[] = {{{0.6f, 20, 0.95f}, {0.7f, 20, 0.95f}}};
  const auto accepted = compare(greedy_drafts);
  compare(sampled_drafts);
  return accepted[1] + accepted[2];
}

}  // namespace mtplx::test

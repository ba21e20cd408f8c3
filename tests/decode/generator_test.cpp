// MTP speculative decoding end to end on the transformers-verified fixtures:
// - greedy: MTP output at depths 1..4 is token-identical to AR;
// - commit equivalence: after many accepted and rejected cycles the trunk state gives the same next-token
//   logits as an AR forward over the same tokens;
// - edge cases: depth beyond the tokens left, eos inside the drafts, stop inside a cycle, 1-token prompt,
//   context full, invalid sampler values.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_backend.h"
#include "base/error.h"
#include "decode/generator.h"
#include "io/checkpoint.h"
#include "support/temp_dir.h"
#include "support/top_k_checks.h"

namespace mtplx {
namespace {

namespace fs = std::filesystem;

struct Loaded {
  explicit Loaded(const std::string& name)
      : ckpt(open_checkpoint(testing::fixtures_dir() / name)), cpu(2), model(ckpt, cpu) {}
  Checkpoint ckpt;
  CpuBackend cpu;
  Qwen35Model model;
};

const std::vector<int32_t> kPrompt = {3, 17, 42, 99, 7, 250, 31, 8, 64, 12};

std::vector<std::string> mtp_fixtures() {
  std::vector<std::string> names;
  for (const char* name : {"hf-causal-tied", "hf-cond-untied", "hf-causal-f32", "mtplx-q8", "mtplx-q4"}) {
    if (fs::exists(testing::fixtures_dir() / name)) names.push_back(name);
  }
  return names;
}

GenerationConfig greedy(int depth, int64_t tokens) {
  GenerationConfig config;
  config.target.temperature = 0;
  config.draft.temperature = 0;
  config.mtp_depth = depth;
  config.max_tokens = tokens;
  return config;
}

class GreedyEquivalence : public ::testing::TestWithParam<std::string> {};

// DraftHead::greedy_token (the backend's pick) is the lowest-id argmax of DraftHead::logits, mapped to its
// token id, for the full, requantized and trimmed heads, over MTP rows of a real prompt.
TEST_P(GreedyEquivalence, DraftHeadGreedyTokenIsTheArgmaxOfItsLogits) {
  Loaded m(GetParam());
  const int64_t V = m.model.config().vocab_size;
  std::vector<int32_t> frequent(static_cast<size_t>(V));
  for (int64_t i = 0; i < V; ++i) frequent[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7) % V);
  ModelState state = m.model.new_state(64);
  const Tensor hidden = m.model.forward(kPrompt, state);
  for (const char* spec : {"full", "q4", "trim:37", "trim:37:q4"}) {
    DraftHead head(m.model, parse_draft_head(spec), frequent);
    for (int64_t t = 0; t + 1 < static_cast<int64_t>(kPrompt.size()); ++t) {
      const Tensor h =
          m.model.mtp_forward({&kPrompt[static_cast<size_t>(t + 1)], 1}, hidden.row_view(t, 1), t, state);
      const auto logits = head.logits(h);
      const auto best = std::max_element(logits.begin(), logits.end()) - logits.begin();  // first of ties
      const int32_t want = head.ids().empty() ? static_cast<int32_t>(best) : head.ids()[best];
      EXPECT_EQ(head.greedy_token(h), want) << spec << " slot " << t;
    }
  }
}

// A trimmed head requantized (trim:N:q4) holds, row for row, what the requantized whole head (q4) holds for
// the kept tokens: the same logits at every kept id, bit for bit. Parsing takes only the documented forms.
TEST_P(GreedyEquivalence, TrimmedRequantizedHeadIsTheRequantizedHeadsRows) {
  Loaded m(GetParam());
  const int64_t V = m.model.config().vocab_size;
  std::vector<int32_t> frequent(static_cast<size_t>(V));
  for (int64_t i = 0; i < V; ++i) frequent[static_cast<size_t>(i)] = static_cast<int32_t>((i * 11) % V);
  DraftHead whole(m.model, parse_draft_head("q4"));
  DraftHead trimmed(m.model, parse_draft_head("trim:50:q4"), frequent);
  EXPECT_EQ(trimmed.spec().describe(), "trim:50:q4");
  ASSERT_EQ(trimmed.size(), static_cast<int64_t>(trimmed.ids().size()));
  EXPECT_GE(trimmed.size(), 50);
  EXPECT_LT(trimmed.bytes(), whole.bytes());
  ModelState state = m.model.new_state(64);
  const Tensor hidden = m.model.forward(kPrompt, state);
  const Tensor h = m.model.mtp_forward({&kPrompt[1], 1}, hidden.row_view(0, 1), 0, state);
  const auto all = whole.logits(h);
  const std::vector<float> full_row(all.begin(), all.end());
  const auto kept = trimmed.logits(h);
  for (size_t i = 0; i < kept.size(); ++i)
    EXPECT_EQ(kept[i], full_row[static_cast<size_t>(trimmed.ids()[i])]) << "kept row " << i;
  for (const char* bad : {"trim:50:q3", "trim:50:", "trim::q4", "trim:0:q4", "trim:50:q4:q4"})
    EXPECT_THROW(parse_draft_head(bad), Error) << bad;
}

TEST_P(GreedyEquivalence, MtpDepthsOneToFourMatchAutoregressive) {
  Loaded m(GetParam());
  DraftHead head(m.model, {});
  Generator generator(m.model, &head);
  const auto ar = generator.generate(kPrompt, greedy(0, 72));
  ASSERT_EQ(ar.tokens.size(), 72u);
  for (int depth = 1; depth <= 4; ++depth) {
    const auto mtp = generator.generate(kPrompt, greedy(depth, 72));
    EXPECT_EQ(mtp.tokens, ar.tokens) << "depth " << depth;
    EXPECT_GT(mtp.stats.cycles, 0);
    EXPECT_LE(mtp.stats.cycles, 72);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GreedyEquivalence, ::testing::ValuesIn(mtp_fixtures()),
                         [](const auto& param) {
                           std::string name = param.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// Sampled decoding under a top-k cut (the artifacts' default samplers): rows that come to the host as their
// top-k entries (Backend::top_k, GenerationConfig::device_top_k) give the same tokens and acceptance as
// whole rows, AR and MTP depths 1..3, with the full and a trimmed draft head. On the trained default model,
// whose head gets most drafts accepted, so every verify row's candidates decide tokens.
TEST(Generator, SampledTopKCandidatesEqualWholeRows) {
  Checkpoint ckpt = open_checkpoint(testing::source_dir() / "models" / "qwen3.5-tiny-mtplx");
  CpuBackend cpu(2);
  Qwen35Model model(ckpt, cpu);
  const int64_t V = model.config().vocab_size;
  std::vector<int32_t> frequent(static_cast<size_t>(V));
  for (int64_t i = 0; i < V; ++i) frequent[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  const int64_t second_accepted =
      test::expect_top_k_path_equals_whole_rows(model, kPrompt, frequent, {"full", "trim:2000"}, 5);
  EXPECT_GT(second_accepted, 0) << "no second draft accepted: verify rows past the first untested";
}

// Greedy drafts kept in token slots equal drafts brought to the host one by one (same tokens, drafts and
// acceptance), on the trained default model so that chained drafts are accepted.
TEST(Generator, GreedyDraftIdsInSlotsEqualHostDrafts) {
  Checkpoint ckpt = open_checkpoint(testing::source_dir() / "models" / "qwen3.5-tiny-mtplx");
  CpuBackend cpu(2);
  Qwen35Model model(ckpt, cpu);
  std::vector<int32_t> frequent(static_cast<size_t>(model.config().vocab_size));
  // Token 0 last: a trimmed head keeps ids 1.., so its rows map to other ids (a map left out shows).
  for (size_t i = 0; i < frequent.size(); ++i) frequent[i] = static_cast<int32_t>((i + 1) % frequent.size());
  EXPECT_GT(test::expect_slotted_drafts_equal_host_drafts(model, kPrompt, frequent, {"full", "trim:2000"}, 3),
            0)
      << "no draft past the first accepted: chained draft steps untested";
}

TEST(Generator, AutoregressiveWorksWithoutMtpHead) {
  if (!fs::exists(testing::fixtures_dir() / "mlx-q4")) GTEST_SKIP();
  Loaded m("mlx-q4");
  ASSERT_FALSE(m.model.has_mtp());
  Generator generator(m.model, nullptr);
  EXPECT_EQ(generator.generate(kPrompt, greedy(0, 20)).tokens.size(), 20u);
  EXPECT_THROW(generator.generate(kPrompt, greedy(2, 20)), Error);
}

// Sampled decoding with a random-weight head rejects often; high temperatures flatten p and q enough that
// some drafts are accepted too. The state must still equal an AR run's.
TEST(Generator, StateAfterMixedCyclesEqualsAutoregressive) {
  Loaded m("mtplx-q8");
  for (const char* spec : {"full", "q4"}) {
    DraftHead head(m.model, parse_draft_head(spec));
    Generator generator(m.model, &head);
    GenerationConfig config;
    config.target.temperature = 4.0f;
    config.draft.temperature = 4.0f;
    config.mtp_depth = 3;
    config.max_tokens = 40;
    config.seed = 5;
    config.final_logits = true;
    const auto out = generator.generate(kPrompt, config);
    ASSERT_EQ(out.tokens.size(), 40u);
    int accepted = 0, rejected = 0;
    for (size_t i = 0; i < out.stats.drafted_at.size(); ++i) {
      accepted += static_cast<int>(out.stats.accepted_at[i]);
      rejected += static_cast<int>(out.stats.drafted_at[i] - out.stats.accepted_at[i]);
    }
    EXPECT_GT(accepted, 0) << spec;
    EXPECT_GT(rejected, 0) << spec;

    std::vector<int32_t> all = kPrompt;
    all.insert(all.end(), out.tokens.begin(), out.tokens.end());
    ModelState state = m.model.new_state(static_cast<int64_t>(all.size()));
    const Tensor hidden = m.model.forward(all, state);
    const Tensor logits = m.model.logits(hidden.row_view(hidden.rows - 1, 1));
    std::vector<float> expected(logits.numel());
    m.cpu.download(logits, expected);
    ASSERT_EQ(out.final_logits.size(), expected.size());
    double diff = 0, scale = 0;
    for (size_t i = 0; i < expected.size(); ++i) {
      diff = std::max(diff, std::fabs(double(out.final_logits[i]) - expected[i]));
      scale = std::max(scale, std::fabs(double(expected[i])));
    }
    EXPECT_LT(diff / scale, 1e-5) << spec;
  }
}

TEST(Generator, DepthLargerThanTokensLeft) {
  Loaded m("hf-causal-tied");
  DraftHead head(m.model, {});
  Generator generator(m.model, &head);
  const auto ar = generator.generate(kPrompt, greedy(0, 3));
  for (int64_t n = 1; n <= 3; ++n) {
    const auto mtp = generator.generate(kPrompt, greedy(6, n));
    EXPECT_EQ(mtp.tokens, std::vector<int32_t>(ar.tokens.begin(), ar.tokens.begin() + n));
    EXPECT_EQ(mtp.finish, FinishReason::kLength);
  }
}

TEST(Generator, EosInsideDraftsStopsExactlyThere) {
  Loaded m("hf-causal-tied");
  DraftHead head(m.model, {});
  Generator generator(m.model, &head);
  const auto ar = generator.generate(kPrompt, greedy(0, 40));
  // Declare the 10th greedy token an eos: both modes must stop right before it.
  auto config = greedy(4, 40);
  config.eos_ids = {ar.tokens[9]};
  const auto first = std::find(ar.tokens.begin(), ar.tokens.end(), ar.tokens[9]) - ar.tokens.begin();
  for (int depth : {0, 1, 3, 4}) {
    config.mtp_depth = depth;
    const auto out = generator.generate(kPrompt, config);
    EXPECT_EQ(out.finish, FinishReason::kEos);
    EXPECT_EQ(out.tokens, std::vector<int32_t>(ar.tokens.begin(), ar.tokens.begin() + first)) << depth;
  }
}

TEST(Generator, StopInsideACycleEmitsNothingAfterIt) {
  Loaded m("hf-causal-tied");
  DraftHead head(m.model, {});
  Generator generator(m.model, &head);
  for (int stop_at : {1, 5, 6, 7}) {
    for (int depth : {0, 3}) {
      int seen = 0;
      const auto out =
          generator.generate(kPrompt, greedy(depth, 30), [&](int32_t) { return ++seen < stop_at; });
      EXPECT_EQ(out.tokens.size(), static_cast<size_t>(stop_at));
      EXPECT_EQ(seen, stop_at);
      EXPECT_EQ(out.finish, FinishReason::kStop);
    }
  }
}

TEST(Generator, OneTokenPrompt) {
  Loaded m("mtplx-q4");
  DraftHead head(m.model, {});
  Generator generator(m.model, &head);
  const std::vector<int32_t> prompt = {5};
  EXPECT_EQ(generator.generate(prompt, greedy(3, 16)).tokens,
            generator.generate(prompt, greedy(0, 16)).tokens);
}

TEST(Generator, ContextFull) {
  Loaded m("hf-causal-tied");
  DraftHead head(m.model, {});
  Generator generator(m.model, &head);
  auto config = greedy(0, 100);
  config.context = 16;
  const auto ar = generator.generate(kPrompt, config);
  EXPECT_EQ(ar.finish, FinishReason::kContext);
  EXPECT_EQ(ar.tokens.size(), 16u - kPrompt.size() + 1);  // the last token is emitted, not forwarded
  config.mtp_depth = 3;
  const auto mtp = generator.generate(kPrompt, config);
  EXPECT_EQ(mtp.finish, FinishReason::kContext);
  EXPECT_EQ(mtp.tokens, ar.tokens);
  config.context = 10;
  EXPECT_THROW(generator.generate(kPrompt, config), Error);  // the prompt does not fit
}

TEST(Generator, InvalidSamplerValuesAreClearErrors) {
  Loaded m("hf-causal-tied");
  Generator generator(m.model, nullptr);
  auto config = greedy(0, 4);
  config.target.top_p = 1.5f;
  EXPECT_THROW(generator.generate(kPrompt, config), Error);
  config = greedy(0, 4);
  config.draft.temperature = -1;
  EXPECT_THROW(generator.generate(kPrompt, config), Error);
  config = greedy(0, 4);
  config.mtp_depth = 99;
  EXPECT_THROW(generator.generate(kPrompt, config), Error);
}

}  // namespace
}  // namespace mtplx

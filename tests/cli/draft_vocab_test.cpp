// mtplx draft-vocab against an independent count: the corpus ids come from `mtplx tokenize` (itself
// checked against Hugging Face tokenizers in tests/text), counted and ordered here with a plain map and
// an explicit sort (count descending, id ascending).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "support/command.h"

namespace mtplx::testing {
namespace {

using nlohmann::json;

const std::string kCorpusA =
    "the cat sat on the mat. the dog sat on the log.\n<|im_start|>user\nwhere is the cat?<|im_end|>\n";
const std::string kCorpusB = "A mat, a log, a cat; the end. 123 456 123\n\n\tthe the the\n";

std::filesystem::path tokenizer_folder(const TempDir& dir) {
  const auto folder = dir / "model";
  std::filesystem::create_directories(folder);
  std::filesystem::copy_file(fixtures_dir() / "hf-causal-tied" / "tokenizer.json", folder / "tokenizer.json");
  return folder;
}

TEST(DraftVocab, CountsAndOrderMatchAnIndependentCount) {
  TempDir dir;
  const auto model = tokenizer_folder(dir);
  write_file(dir / "a.txt", kCorpusA);
  write_file(dir / "b.txt", kCorpusB);

  std::map<int32_t, int64_t> counts;
  int64_t total = 0;
  for (const char* name : {"a.txt", "b.txt"}) {
    const json ids =
        run_json_lines({"tokenize", "--model", model.string(), "--file", (dir / name).string()}).at(0);
    for (const auto& id : ids) {
      ++counts[id.get<int32_t>()];
      ++total;
    }
  }
  std::vector<std::pair<int32_t, int64_t>> expected(counts.begin(), counts.end());
  std::sort(expected.begin(), expected.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  // The corpus must exercise the tie rule.
  ASSERT_TRUE(std::adjacent_find(expected.begin(), expected.end(), [](const auto& a, const auto& b) {
                return a.second == b.second;
              }) != expected.end());

  const auto result = run_mtplx({"draft-vocab", "--model", model.string(), "--file", (dir / "a.txt").string(),
                                 "--file", (dir / "b.txt").string()});
  ASSERT_EQ(result.status, 0) << result.err;
  const json vocab = json::parse(read_file(model / "draft_vocab.json"));
  ASSERT_EQ(vocab["token_ids"].size(), expected.size());
  ASSERT_EQ(vocab["counts"].size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(vocab["token_ids"][i], expected[i].first) << i;
    EXPECT_EQ(vocab["counts"][i], expected[i].second) << i;
  }
  EXPECT_EQ(vocab["corpus_tokens"], total);
  EXPECT_EQ(vocab["source"], json({(dir / "a.txt").string(), (dir / "b.txt").string()}));

  // --size keeps the head of the same order; --out writes elsewhere.
  const auto small =
      run_mtplx({"draft-vocab", "--model", model.string(), "--file", (dir / "a.txt").string(), "--file",
                 (dir / "b.txt").string(), "--size", "5", "--out", (dir / "top5.json").string()});
  ASSERT_EQ(small.status, 0) << small.err;
  const json top = json::parse(read_file(dir / "top5.json"));
  ASSERT_EQ(top["token_ids"].size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(top["token_ids"][i], expected[i].first);
}

TEST(DraftVocab, MissingInputsAreClearErrors) {
  TempDir dir;
  const auto model = tokenizer_folder(dir);
  write_file(dir / "a.txt", kCorpusA);
  const auto missing = (dir / "nope.txt").string();
  auto result = run_mtplx(
      {"draft-vocab", "--model", model.string(), "--file", (dir / "a.txt").string(), "--file", missing});
  EXPECT_EQ(result.status, 1);
  EXPECT_NE(result.err.find("corpus file not found"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find(missing), std::string::npos) << result.err;
  EXPECT_FALSE(std::filesystem::exists(model / "draft_vocab.json"));

  result = run_mtplx({"draft-vocab", "--model", dir.path().string(), "--file", (dir / "a.txt").string()});
  EXPECT_EQ(result.status, 1);
  EXPECT_NE(result.err.find("no tokenizer.json"), std::string::npos) << result.err;

  result = run_mtplx({"draft-vocab", "--model", model.string(), "--file", (dir / "a.txt").string(), "--out",
                      (dir / "no" / "such" / "dir.json").string()});
  EXPECT_EQ(result.status, 1);
  EXPECT_NE(result.err.find("output folder does not exist"), std::string::npos) << result.err;
}

// The written file drives a trim:N draft head; greedy MTP output stays identical to AR with it.
TEST(DraftVocab, TrimmedDraftHeadKeepsGreedyOutput) {
  TempDir dir;
  const auto model = dir / "model";
  std::filesystem::create_directories(model);
  for (const auto& entry : std::filesystem::directory_iterator(fixtures_dir() / "hf-causal-tied"))
    std::filesystem::create_symlink(entry.path(), model / entry.path().filename());
  write_file(dir / "a.txt", kCorpusA + kCorpusB);
  ASSERT_EQ(run_mtplx({"draft-vocab", "--model", model.string(), "--file", (dir / "a.txt").string()}).status,
            0);
  std::vector<std::string> args = {"generate", "--model", model.string(), "--prompt", "the cat",
                                   "--temp",   "0",       "--draft-temp", "0",        "--max-tokens",
                                   "24",       "--json"};
  auto ar = args;
  ar.insert(ar.end(), {"--mtp-depth", "0"});
  auto trimmed = args;
  trimmed.insert(trimmed.end(), {"--mtp-depth", "2", "--draft-head", "trim:16"});
  EXPECT_EQ(run_json_lines(trimmed).at(0)["ids"], run_json_lines(ar).at(0)["ids"]);
}

}  // namespace
}  // namespace mtplx::testing

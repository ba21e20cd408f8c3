// Tokenizer parity with Hugging Face `tokenizers` (Rust core through its npm binding) on the real Qwen3
// tokenizer.json and on variants of it that exercise the other supported components.
#include "text/tokenizer.h"

#include <gtest/gtest.h>

#include <random>

#include "base/error.h"
#include "text/corpus.h"
#include "text/oracle.h"
#include "text/utf8.h"

namespace mtplx::text {
namespace {

using nlohmann::json;

constexpr std::string_view kQwen35Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

json load_qwen3() {
  return json::parse(test::read_text(test::qwen3_tokenizer_json()));
}

// Writes a tokenizer.json variant and returns its path.
std::filesystem::path write_variant(const json& j, std::string_view name) {
  auto path = test::scratch_dir(name) / "tokenizer.json";
  test::write_text(path, j.dump());
  return path;
}

std::vector<std::string> added_contents(const json& j) {
  std::vector<std::string> out;
  for (const auto& t : j["added_tokens"]) out.push_back(t["content"]);
  return out;
}

// Encodes the corpus with both implementations and expects identical ids for every string.
void expect_same_encoding(const std::filesystem::path& tokenizer_json,
                          const std::vector<std::string>& texts) {
  Tokenizer ours = Tokenizer::from_file(tokenizer_json);
  json oracle = test::run_oracle("tokenize.mjs", {{"tokenizer", tokenizer_json.string()}, {"texts", texts}});
  ASSERT_EQ(oracle["ids"].size(), texts.size());
  int mismatches = 0;
  for (size_t i = 0; i < texts.size() && mismatches < 5; ++i) {
    auto expected = oracle["ids"][i].get<std::vector<TokenId>>();
    auto got = ours.encode(texts[i]);
    if (got != expected) {
      ++mismatches;
      ADD_FAILURE() << "text #" << i << " " << json(texts[i]).dump() << "\n  expected "
                    << json(expected).dump() << "\n  got      " << json(got).dump();
    }
  }
}

TEST(TokenizerOracle, Qwen3MatchesHuggingFaceOnMixedCorpus) {
  auto j = load_qwen3();
  auto texts = test::text_corpus(1, 3000, added_contents(j));
  // Long runs stress the regex's lookahead backtracking (PCRE2 JIT stack) and the BPE heap.
  texts.push_back(std::string(200000, ' ') + "x");
  texts.push_back(std::string(50000, '\n') + " \t \r\n" + std::string(30000, '\t'));
  texts.push_back(std::string(100000, 'a'));
  expect_same_encoding(test::qwen3_tokenizer_json(), texts);
}

TEST(TokenizerOracle, Qwen35RegexMatchesHuggingFace) {
  auto j = load_qwen3();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = kQwen35Regex;
  auto path = write_variant(j, "qwen35_regex");
  expect_same_encoding(path, test::text_corpus(2, 2000, added_contents(j)));
}

// The tokenizers shipped with the model fixtures (written by transformers; null BPE affixes, a small vocab).
TEST(TokenizerOracle, FixtureTokenizersMatchHuggingFace) {
  const auto path = test::source_dir() / "tests" / "fixtures" / "hf-causal-tied" / "tokenizer.json";
  auto j = json::parse(test::read_text(path));
  expect_same_encoding(path, test::text_corpus(3, 500, added_contents(j)));
}

// GPT-2 style: ByteLevel with its own regex and prefix space, "a b" merges, NFKC in a Sequence, and added
// tokens using lstrip / rstrip / single_word / normalized.
TEST(TokenizerOracle, ByteLevelRegexAndAddedTokenOptionsMatchHuggingFace) {
  auto j = load_qwen3();
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "NFKC"}}})}};
  j["pre_tokenizer"] = {
      {"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  for (auto& m : j["model"]["merges"]) m = m[0].get<std::string>() + " " + m[1].get<std::string>();
  int next_id = 151669;
  auto add = [&](std::string content, bool special, bool lstrip, bool rstrip, bool single_word,
                 bool normalized) {
    j["added_tokens"].push_back({{"id", next_id++},
                                 {"content", content},
                                 {"single_word", single_word},
                                 {"lstrip", lstrip},
                                 {"rstrip", rstrip},
                                 {"normalized", normalized},
                                 {"special", special}});
  };
  add("[MASK]", true, true, false, false, false);
  add("<sep>", true, false, true, false, false);
  add("hello", false, false, false, true, true);
  add("ﬁle", false, false, false, false, true);  // NFKC turns the ligature into "file" before matching
  add("<|im_start|>user", true, false, false, false, false);  // longest match wins over <|im_start|>
  auto path = write_variant(j, "bytelevel_regex");
  auto specials = added_contents(j);
  for (std::string extra : {"  [MASK]  ", "x[MASK]", "<sep>   \n y", "hello", "xhello", "hello_", " hello!",
                            "file", "ﬁle", "hellohello"}) {
    specials.push_back(extra);
  }
  expect_same_encoding(path, test::text_corpus(3, 2000, specials));
}

TEST(TokenizerOracle, DecodeMatchesHuggingFaceIncludingBrokenUtf8) {
  auto path = test::qwen3_tokenizer_json();
  Tokenizer ours = Tokenizer::from_file(path);
  std::mt19937 rng(7);
  std::uniform_int_distribution<TokenId> any_id(0, ours.vocab_size() - 1);
  std::uniform_int_distribution<TokenId> byte_token(0, 255);  // single bytes, often partial UTF-8
  std::vector<std::vector<TokenId>> sequences;
  for (const auto& text : test::text_corpus(4, 300, added_contents(load_qwen3()))) {
    sequences.push_back(ours.encode(text));
  }
  for (int i = 0; i < 400; ++i) {
    std::vector<TokenId> seq;
    for (int k = 0; k < 1 + i % 12; ++k) seq.push_back(k % 3 == 0 ? byte_token(rng) : any_id(rng));
    sequences.push_back(seq);
  }
  json oracle = test::run_oracle("tokenize.mjs", {{"tokenizer", path.string()}, {"decode", sequences}});
  for (size_t i = 0; i < sequences.size(); ++i) {
    ASSERT_EQ(ours.decode(sequences[i]), oracle["decoded"][i].get<std::string>())
        << json(sequences[i]).dump();
    ASSERT_EQ(ours.decode(sequences[i], true), oracle["decoded_skip_special"][i].get<std::string>());
    // Streaming: same text overall, and every piece is whole characters.
    StreamDecoder stream(ours);
    std::string joined;
    for (TokenId id : sequences[i]) {
      std::string piece = stream.push(id);
      ASSERT_FALSE(first_invalid_byte(piece).has_value());
      joined += piece;
    }
    joined += stream.flush();
    ASSERT_EQ(joined, oracle["decoded"][i].get<std::string>()) << json(sequences[i]).dump();
  }
}

TEST(Tokenizer, StreamingHoldsBackSplitCharacters) {
  Tokenizer t = Tokenizer::from_file(test::qwen3_tokenizer_json());
  // "€" is E2 82 AC; feed it as three single-byte tokens.
  auto byte_id = [&](unsigned char b) { return *t.token_to_id(byte_level_char(b)); };
  StreamDecoder stream(t);
  EXPECT_EQ(stream.push(byte_id(0xE2)), "");
  EXPECT_EQ(stream.push(byte_id(0x82)), "");
  EXPECT_EQ(stream.push(byte_id(0xAC)), "€");
  EXPECT_EQ(stream.push(byte_id(0xE2)), "");
  EXPECT_EQ(stream.flush(), "\xEF\xBF\xBD");
}

TEST(Tokenizer, SpecialTokensAsPlainTextWhenAsked) {
  auto j = load_qwen3();
  Tokenizer ours = Tokenizer::from_file(test::qwen3_tokenizer_json());
  // Oracle: the same tokenizer with its special tokens renamed to unmatchable strings (ids unchanged)
  // sees their text as plain text.
  for (auto& t : j["added_tokens"]) {
    if (t["special"].get<bool>()) t["content"] = "\x01unmatchable" + t["id"].dump();
  }
  auto path = write_variant(j, "no_specials");
  std::vector<std::string> texts = {"<|im_start|>user\nhi<|im_end|>",
                                    "<tool_call>{}</tool_call><think>x</think>", "a<|endoftext|>b"};
  json oracle = test::run_oracle("tokenize.mjs", {{"tokenizer", path.string()}, {"texts", texts}});
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(ours.encode(texts[i], {.parse_special = false}), oracle["ids"][i].get<std::vector<TokenId>>());
  }
}

TEST(Tokenizer, UnsupportedComponentsAreNamed) {
  auto j = load_qwen3();
  j["normalizer"] = {{"type", "Lowercase"}};
  try {
    Tokenizer::from_json_text(j.dump(), "test.json");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Lowercase"), std::string::npos) << e.what();
  }
  j = load_qwen3();
  j["pre_tokenizer"]["pretokenizers"][0] = {{"type", "Metaspace"}};
  EXPECT_THROW(Tokenizer::from_json_text(j.dump(), "test.json"), Error);
  EXPECT_THROW(Tokenizer::from_json_text("{nope", "test.json"), Error);
}

TEST(Tokenizer, EmptyBpeAffixesLoadOthersAreRejected) {
  for (const json& empty : {json(nullptr), json("")}) {
    auto j = load_qwen3();
    j["model"]["continuing_subword_prefix"] = empty;
    j["model"]["end_of_word_suffix"] = empty;
    EXPECT_NO_THROW(Tokenizer::from_json_text(j.dump(), "test.json"));
  }
  auto j = load_qwen3();
  j["model"]["continuing_subword_prefix"] = "##";
  EXPECT_THROW(Tokenizer::from_json_text(j.dump(), "test.json"), Error);
}

TEST(Tokenizer, RejectsInvalidUtf8Input) {
  Tokenizer t = Tokenizer::from_file(test::qwen3_tokenizer_json());
  EXPECT_THROW(t.encode("abc\xFF"), Error);
}

}  // namespace
}  // namespace mtplx::text

// text::GeneratedText against plain string operations: the text it releases equals the full decoded text
// cut at the first occurrence of the stop string (std::string::find), for stop strings starting and ending
// at every character position of a text with multi-byte characters and a special token; ids_for_text() is
// the shortest prefix of the ids whose decoding (Tokenizer::decode) starts with that text.
#include <gtest/gtest.h>

#include "text/generated_text.h"
#include "text/oracle.h"

namespace mtplx::text {
namespace {

const std::string kText = "Hello, w\xC3\xB6rld! \xE4\xBD\xA0\xE5\xA5\xBD <|im_end|> 12 + 30 = 42\n\tdone";

// The fixtures' tokenizer (byte-level BPE with Qwen's special tokens); no Node oracle needed.
std::filesystem::path fixture_tokenizer() {
  return test::source_dir() / "tests" / "fixtures" / "hf-causal-tied" / "tokenizer.json";
}

std::vector<size_t> char_starts(const std::string& s) {
  std::vector<size_t> starts;
  for (size_t i = 0; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) starts.push_back(i);
  starts.push_back(s.size());
  return starts;
}

TEST(GeneratedText, CutsAtTheFirstStopStringWithTheIdsThatCarryTheText) {
  const auto tokenizer = Tokenizer::from_file(fixture_tokenizer());
  const auto ids = tokenizer.encode(kText);
  ASSERT_EQ(tokenizer.decode(ids), kText);
  const auto starts = char_starts(kText);
  int cases = 0;
  for (size_t a = 0; a + 1 < starts.size(); ++a) {
    for (size_t b = a + 1; b < starts.size() && b <= a + 6; ++b) {
      const std::string stop = kText.substr(starts[a], starts[b] - starts[a]);
      const std::string expected = kText.substr(0, kText.find(stop));
      SCOPED_TRACE(stop);
      GeneratedText out(tokenizer, {"never", stop});
      std::string released;
      size_t pushed = 0;
      for (TokenId id : ids) {
        released += out.push(id);
        ++pushed;
        if (out.stopped()) break;
      }
      released += out.finish();
      ASSERT_TRUE(out.stopped());
      EXPECT_EQ(out.matched_stop(), stop);
      EXPECT_EQ(released, expected);
      EXPECT_EQ(out.text(), expected);
      // The stop is noticed at the token holding its last byte: decoding fewer ids does not contain it.
      EXPECT_NE(tokenizer.decode(std::span(ids).first(pushed)).find(stop), std::string::npos);
      EXPECT_EQ(tokenizer.decode(std::span(ids).first(pushed - 1)).find(stop), std::string::npos);
      const auto kept = out.ids_for_text();
      ASSERT_LE(kept.size(), pushed);
      EXPECT_TRUE(std::equal(kept.begin(), kept.end(), ids.begin()));
      EXPECT_EQ(tokenizer.decode(kept).substr(0, expected.size()), expected);
      if (!kept.empty()) {
        EXPECT_NE(tokenizer.decode(std::span(kept).first(kept.size() - 1)).substr(0, expected.size()),
                  expected);
      }
      EXPECT_EQ(out.push(ids.front()), "");
      ++cases;
    }
  }
  EXPECT_GT(cases, 100);
}

TEST(GeneratedText, WithoutAStopEverythingIsReleased) {
  const auto tokenizer = Tokenizer::from_file(fixture_tokenizer());
  const auto ids = tokenizer.encode(kText);
  GeneratedText out(tokenizer, {"not in the text", ""});
  std::string released;
  for (TokenId id : ids) released += out.push(id);
  released += out.finish();
  EXPECT_FALSE(out.stopped());
  EXPECT_EQ(released, kText);
  EXPECT_EQ(out.ids_for_text(), ids);
}

}  // namespace
}  // namespace mtplx::text

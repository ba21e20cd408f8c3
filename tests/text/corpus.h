// Deterministic generators of test inputs: mixed text that stresses pre-tokenization (all Unicode
// planes, combining marks, ZWJ emoji, code, whitespace runs, CRLF, special tokens inside text).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mtplx::test {

// `count` strings; `specials` are written into some of them verbatim.
std::vector<std::string> text_corpus(uint32_t seed, size_t count, const std::vector<std::string>& specials);

}  // namespace mtplx::test

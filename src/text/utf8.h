// UTF-8 helpers shared by the tokenizer, the streaming detokenizer and the Jinja interpreter.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mtplx::text {

// Length of the valid UTF-8 sequence starting at s[i], or 0 when the bytes there are not one
// (overlong forms, surrogates and code points above U+10FFFF are invalid, as in Rust's str).
size_t valid_sequence_length(std::string_view s, size_t i);

// Index of the first byte that does not start a valid sequence, or nullopt when `s` is valid UTF-8.
std::optional<size_t> first_invalid_byte(std::string_view s);

// Decodes the code point at s[i] (which must be valid) and advances i past it.
char32_t next_code_point(std::string_view s, size_t& i);

void append_utf8(std::string& out, char32_t cp);

// Replaces every maximal invalid subsequence by U+FFFD, exactly like Rust's String::from_utf8_lossy.
std::string to_valid_utf8(std::string_view bytes);

// Length of the longest prefix of `bytes` that does not end inside a sequence which further bytes could
// still complete. A streaming decoder emits this prefix and keeps the rest.
size_t complete_prefix_length(std::string_view bytes);

// Unicode NFC normalization of valid UTF-8 (utf8proc); pure-ASCII stretches are copied untouched.
std::string nfc(std::string_view s);

}  // namespace mtplx::text

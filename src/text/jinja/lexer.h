// Splits a Jinja template into tokens. Whitespace control follows transformers' environment
// (trim_blocks=True, lstrip_blocks=True, a single trailing newline dropped) plus the "-" modifiers.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mtplx::jinja {

enum class TokenKind {
  kText,
  kVarStart,
  kVarEnd,
  kBlockStart,
  kBlockEnd,
  kName,
  kString,
  kInt,
  kFloat,
  kOp,
  kEnd
};

struct Token {
  TokenKind kind;
  std::string text;  // text, name, operator, or the decoded string literal
  int line;
};

// `name` is used in error messages ("<name> line N").
std::vector<Token> tokenize(std::string_view source, std::string_view name);

}  // namespace mtplx::jinja

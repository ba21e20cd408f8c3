// Shows a streamed reply on a terminal with the reasoning (<think> block) set apart from the answer; used
// by `mtplx chat` and by `mtplx generate`'s plain-text output.
#pragma once

#include <ostream>
#include <string>
#include <string_view>

#include "text/output_parser.h"

namespace mtplx::cli {

enum class ReplyStyle {
  kRaw,      // the model's text unchanged, tags included (piped `mtplx generate` output stays exact)
  kDim,      // reasoning in ANSI dim, the answer plain (a terminal)
  kLabeled,  // reasoning lines start with "think: ", the answer with "assistant: " (no ANSI codes)
};

// kDim when `stream` is a terminal, else `otherwise`.
ReplyStyle terminal_style(FILE* stream, ReplyStyle otherwise);

class ReplyView {
 public:
  ReplyView(std::ostream& out, ReplyStyle style, text::OutputParserOptions options);

  // Shows the next piece of generated text (of any size; tags may be split across pieces).
  void push(std::string_view text);
  // Ends the reply, leaving the cursor at the start of a line; returns the whole reply parsed.
  const text::ParsedOutput& finish();

 private:
  enum class Section { kNone, kReasoning, kContent };
  void show(const text::ParsedOutput& part);
  void enter(Section section);
  void write(std::string_view text);

  std::ostream& out_;
  ReplyStyle style_;
  text::OutputParser parser_;
  text::ParsedOutput whole_;
  Section section_ = Section::kNone;
  bool line_start_ = true;
};

}  // namespace mtplx::cli

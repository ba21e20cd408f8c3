#include "reply_view.h"

#include <unistd.h>

#include <cstdio>

namespace mtplx::cli {
namespace {

constexpr std::string_view kDimOn = "\x1b[2m";
constexpr std::string_view kDimOff = "\x1b[0m";
constexpr std::string_view kThinkLabel = "think: ";
constexpr std::string_view kAnswerLabel = "assistant: ";

}  // namespace

ReplyStyle terminal_style(FILE* stream, ReplyStyle otherwise) {
  return isatty(fileno(stream)) ? ReplyStyle::kDim : otherwise;
}

ReplyView::ReplyView(std::ostream& out, ReplyStyle style, text::OutputParserOptions options)
    : out_(out), style_(style), parser_(std::move(options)) {}

void ReplyView::push(std::string_view text) {
  if (style_ == ReplyStyle::kRaw) out_ << text << std::flush;
  show(parser_.push(text));
}

const text::ParsedOutput& ReplyView::finish() {
  show(parser_.finish());
  if (style_ == ReplyStyle::kRaw) return whole_;
  if (section_ == Section::kReasoning && style_ == ReplyStyle::kDim) out_ << kDimOff;
  if (!line_start_) out_ << '\n';
  line_start_ = true;
  section_ = Section::kNone;
  out_ << std::flush;
  return whole_;
}

void ReplyView::show(const text::ParsedOutput& part) {
  whole_.append(part);
  if (style_ == ReplyStyle::kRaw) return;
  if (!part.reasoning.empty()) {
    enter(Section::kReasoning);
    write(part.reasoning);
  }
  if (!part.content.empty()) {
    enter(Section::kContent);
    write(part.content);
  }
  for (const auto& call : part.tool_calls) {
    enter(Section::kContent);
    write("[tool call " + call.name + " " + call.arguments.dump() + "]");
  }
  out_ << std::flush;
}

// Switching sections: the answer starts on its own line after reasoning, and the dim attribute never
// leaks past the reasoning.
void ReplyView::enter(Section section) {
  if (section == section_) return;
  if (section_ == Section::kReasoning && style_ == ReplyStyle::kDim) out_ << kDimOff;
  if (!line_start_) out_ << '\n';
  line_start_ = true;
  section_ = section;
  if (section == Section::kReasoning && style_ == ReplyStyle::kDim) out_ << kDimOn;
  if (section == Section::kContent && style_ == ReplyStyle::kLabeled) {
    out_ << kAnswerLabel;
    line_start_ = false;
  }
}

// Labeled reasoning carries its label on every line so a transcript shows which lines were thought.
void ReplyView::write(std::string_view text) {
  const bool label_lines = style_ == ReplyStyle::kLabeled && section_ == Section::kReasoning;
  for (char c : text) {
    if (line_start_ && label_lines) out_ << kThinkLabel;
    out_ << c;
    line_start_ = c == '\n';
  }
}

}  // namespace mtplx::cli

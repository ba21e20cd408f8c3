#include "text/jinja/lexer.h"

#include <algorithm>
#include <cctype>

#include "base/error.h"
#include "text/utf8.h"

namespace mtplx::jinja {

namespace {

class Lexer {
 public:
  Lexer(std::string_view source, std::string_view name) : src_(source), name_(name) {
    if (!src_.empty() && src_.back() == '\n') src_.remove_suffix(1);  // keep_trailing_newline=False
  }

  std::vector<Token> run() {
    while (pos_ < src_.size()) {
      size_t open = find_tag(pos_);
      if (open == std::string_view::npos) {
        text(src_.substr(pos_));
        break;
      }
      text(src_.substr(pos_, open - pos_));
      tag(open);
    }
    out_.push_back({TokenKind::kEnd, "", line_});
    return std::move(out_);
  }

 private:
  size_t find_tag(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string_view::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return std::string_view::npos;
  }

  void error(std::string_view what) const { fail(what, str(name_, " line ", line_)); }

  void text(std::string_view t) {
    std::string s(t);
    if (strip_next_) s.erase(0, std::min(s.size(), s.find_first_not_of(" \t\r\n")));
    if (trim_newline_ && !strip_next_) {
      if (s.rfind("\r\n", 0) == 0) {
        s.erase(0, 2);
      } else if (!s.empty() && s[0] == '\n') {
        s.erase(0, 1);
      }
    }
    strip_next_ = trim_newline_ = false;
    size_t begin = static_cast<size_t>(t.data() - src_.data());
    text_at_line_start_ = begin == 0 || src_[begin - 1] == '\n';
    for (char c : t) line_ += c == '\n';
    if (!s.empty()) out_.push_back({TokenKind::kText, std::move(s), line_});
  }

  // Removes whitespace before a tag: everything for "{%-", spaces and tabs back to the line start for
  // lstrip_blocks (block and comment tags only, and only when nothing else precedes on that line).
  void strip_before(char kind, char modifier) {
    if (out_.empty() || out_.back().kind != TokenKind::kText) return;
    std::string& s = out_.back().text;
    if (modifier == '-') {
      s.erase(s.find_last_not_of(" \t\r\n") + 1);
    } else if (modifier != '+' && kind != '{') {
      size_t i = s.find_last_not_of(" \t");
      if (i == std::string::npos ? text_at_line_start_ : s[i] == '\n')
        s.erase(i == std::string::npos ? 0 : i + 1);
    }
    if (s.empty()) out_.pop_back();
  }

  void tag(size_t open) {
    char kind = src_[open + 1];
    pos_ = open + 2;
    char modifier = pos_ < src_.size() && (src_[pos_] == '-' || src_[pos_] == '+') ? src_[pos_] : 0;
    // A text token that became empty after "-" is dropped, so strip in the token list.
    strip_before(kind, modifier);
    if (modifier) ++pos_;
    if (kind == '#') {
      size_t close = src_.find("#}", pos_);
      if (close == std::string_view::npos) error("unterminated comment");
      for (size_t i = pos_; i < close; ++i) line_ += src_[i] == '\n';
      strip_next_ = close > pos_ && src_[close - 1] == '-';
      trim_newline_ = true;
      pos_ = close + 2;
      return;
    }
    out_.push_back({kind == '{' ? TokenKind::kVarStart : TokenKind::kBlockStart, "", line_});
    expression(kind == '{' ? '}' : '%');
  }

  void expression(char closer) {
    int depth = 0;
    while (true) {
      while (pos_ < src_.size() && std::isspace(static_cast<unsigned char>(src_[pos_])))
        line_ += src_[pos_++] == '\n';
      if (pos_ >= src_.size()) error("unexpected end of template inside a tag");
      char c = src_[pos_];
      if (depth == 0) {
        const std::string end{closer, '}'};
        bool minus = c == '-' && src_.substr(pos_ + 1, 2) == end;
        if (minus || src_.substr(pos_, 2) == end) {
          pos_ += minus ? 3 : 2;
          out_.push_back({closer == '}' ? TokenKind::kVarEnd : TokenKind::kBlockEnd, "", line_});
          strip_next_ = minus;
          trim_newline_ = closer == '%';
          return;
        }
      }
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t b = pos_;
        while (pos_ < src_.size() &&
               (std::isalnum(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_'))
          ++pos_;
        out_.push_back({TokenKind::kName, std::string(src_.substr(b, pos_ - b)), line_});
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        number();
      } else if (c == '\'' || c == '"') {
        string_literal(c);
      } else {
        op(depth);
      }
    }
  }

  void number() {
    size_t b = pos_;
    bool is_float = false;
    while (pos_ < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_'))
      ++pos_;
    if (pos_ + 1 < src_.size() && src_[pos_] == '.' &&
        std::isdigit(static_cast<unsigned char>(src_[pos_ + 1]))) {
      is_float = true;
      ++pos_;
      while (pos_ < src_.size() && std::isdigit(static_cast<unsigned char>(src_[pos_]))) ++pos_;
    }
    if (pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
      is_float = true;
      ++pos_;
      if (pos_ < src_.size() && (src_[pos_] == '+' || src_[pos_] == '-')) ++pos_;
      while (pos_ < src_.size() && std::isdigit(static_cast<unsigned char>(src_[pos_]))) ++pos_;
    }
    std::string digits;
    for (char d : src_.substr(b, pos_ - b)) {
      if (d != '_') digits += d;
    }
    out_.push_back({is_float ? TokenKind::kFloat : TokenKind::kInt, digits, line_});
  }

  void string_literal(char quote) {
    std::string value;
    ++pos_;
    while (pos_ < src_.size() && src_[pos_] != quote) {
      char c = src_[pos_++];
      if (c == '\n') ++line_;
      if (c != '\\' || pos_ >= src_.size()) {
        value += c;
        continue;
      }
      char e = src_[pos_++];
      switch (e) {
        case 'n':
          value += '\n';
          break;
        case 't':
          value += '\t';
          break;
        case 'r':
          value += '\r';
          break;
        case 'b':
          value += '\b';
          break;
        case 'f':
          value += '\f';
          break;
        case '0':
          value += '\0';
          break;
        case 'u': {
          if (pos_ + 4 > src_.size()) error("bad \\u escape in string literal");
          text::append_utf8(
              value, static_cast<char32_t>(std::stoul(std::string(src_.substr(pos_, 4)), nullptr, 16)));
          pos_ += 4;
          break;
        }
        case '\\':
        case '\'':
        case '"':
          value += e;
          break;
        default:
          value += '\\';
          value += e;  // Python keeps unknown escapes verbatim
      }
    }
    if (pos_ >= src_.size()) error("unterminated string literal");
    ++pos_;
    out_.push_back({TokenKind::kString, std::move(value), line_});
  }

  void op(int& depth) {
    static constexpr std::string_view kTwo[] = {"**", "//", "==", "!=", "<=", ">="};
    for (auto two : kTwo) {
      if (src_.substr(pos_, 2) == two) {
        out_.push_back({TokenKind::kOp, std::string(two), line_});
        pos_ += 2;
        return;
      }
    }
    char c = src_[pos_];
    if (std::string_view("+-*/%~<>=()[]{},.:|").find(c) == std::string_view::npos) {
      error(str("unexpected character '", c, "'"));
    }
    if (c == '(' || c == '[' || c == '{') ++depth;
    if ((c == ')' || c == ']' || c == '}') && depth > 0) --depth;
    out_.push_back({TokenKind::kOp, std::string(1, c), line_});
    ++pos_;
  }

  std::string_view src_;
  std::string_view name_;
  size_t pos_ = 0;
  int line_ = 1;
  bool strip_next_ = false;
  bool trim_newline_ = false;
  bool text_at_line_start_ = false;  // the last text token starts a line (for lstrip_blocks)
  std::vector<Token> out_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source, std::string_view name) {
  return Lexer(source, name).run();
}

}  // namespace mtplx::jinja

#define PCRE2_CODE_UNIT_WIDTH 8
#include "text/regex.h"

#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "base/error.h"
#include "text/utf8.h"

namespace mtplx::text {

namespace {

struct CodeFree {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
struct MatchDataFree {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};
struct JitStackFree {
  void operator()(pcre2_jit_stack* s) const { pcre2_jit_stack_free(s); }
};
struct MatchContextFree {
  void operator()(pcre2_match_context* c) const { pcre2_match_context_free(c); }
};

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof buffer);
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

struct Regex::Impl {
  std::unique_ptr<pcre2_code, CodeFree> code;
  bool jit = false;
};

namespace {

// tokenizers compiles split patterns with Oniguruma, whose \s is the Unicode White_Space property; PCRE2's
// \s also takes U+180E (via \h). Rewriting \s and \S as explicit sets keeps the two engines identical.
constexpr std::string_view kWhiteSpaceSet =
    R"(\t-\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

std::unique_ptr<pcre2_code, CodeFree> compile(std::string_view pattern, std::string_view where) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  // The input is validated once before splitting, so PCRE2 need not re-check UTF-8 on every call.
  std::unique_ptr<pcre2_code, CodeFree> code(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()),
                                                           pattern.size(), PCRE2_UTF | PCRE2_UCP, &error,
                                                           &offset, nullptr));
  if (!code) {
    fail(str("cannot compile split regex at offset ", offset, ": ", pcre2_message(error)), where,
         "the pattern must be valid Oniguruma/PCRE syntax");
  }
  return code;
}

bool in_general_category(utf8proc_category_t cat, std::string_view property) {
  static constexpr const char* kNames[] = {"Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd",
                                           "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm",
                                           "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co"};
  std::string_view name = kNames[cat];
  return property.size() == 1 ? name[0] == property[0] : name == property;
}

// Letters, marks and numbers that utf8proc knows but PCRE2's older Unicode tables leave unassigned
// (e.g. CJK Extension H). Oniguruma in tokenizers knows them, so \p{L} etc. are widened with these.
std::vector<std::pair<char32_t, utf8proc_category_t>> newer_code_points() {
  std::string probe;
  std::vector<std::pair<char32_t, utf8proc_category_t>> candidates;
  for (char32_t cp = 0x80; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
    if (cat < UTF8PROC_CATEGORY_LU || cat > UTF8PROC_CATEGORY_NO) continue;
    candidates.emplace_back(cp, cat);
    append_utf8(probe, cp);
  }
  auto code = compile(R"(\p{Cn})", "built-in probe");
  std::unique_ptr<pcre2_match_data, MatchDataFree> data(
      pcre2_match_data_create_from_pattern(code.get(), nullptr));
  std::vector<std::pair<char32_t, utf8proc_category_t>> out;
  size_t pos = 0;
  while (pcre2_match(code.get(), reinterpret_cast<PCRE2_SPTR>(probe.data()), probe.size(), pos, 0, data.get(),
                     nullptr) > 0) {
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.get());
    size_t i = ov[0];
    char32_t cp = next_code_point(probe, i);
    auto it =
        std::lower_bound(candidates.begin(), candidates.end(), std::make_pair(cp, utf8proc_category_t{}));
    out.push_back(*it);
    pos = ov[1];
  }
  return out;
}

std::string class_ranges(const std::vector<std::pair<char32_t, utf8proc_category_t>>& extra,
                         std::string_view property) {
  std::string out;
  for (size_t i = 0; i < extra.size();) {
    if (!in_general_category(extra[i].second, property)) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j + 1 < extra.size() && extra[j + 1].first == extra[j].first + 1 &&
           in_general_category(extra[j + 1].second, property)) {
      ++j;
    }
    out += str("\\x{", std::hex, static_cast<uint32_t>(extra[i].first), "}");
    if (j > i) out += str("-\\x{", std::hex, static_cast<uint32_t>(extra[j].first), "}");
    i = j + 1;
  }
  return out;
}

bool is_category_property(std::string_view p) {
  static constexpr std::string_view kProps[] = {"L",  "Lu", "Ll", "Lt", "Lm", "Lo", "M",
                                                "Mn", "Mc", "Me", "N",  "Nd", "Nl", "No"};
  return std::find(std::begin(kProps), std::end(kProps), p) != std::end(kProps);
}

class PatternRewriter {
 public:
  PatternRewriter(std::string_view pattern, std::string_view where) : pattern_(pattern), where_(where) {}

  std::string run() {
    for (i_ = 0; i_ < pattern_.size(); ++i_) {
      char c = pattern_[i_];
      if (c == '\\' && i_ + 1 < pattern_.size()) {
        escape();
      } else if (c == '[' && !in_class_) {
        in_class_ = true;
        out_ += c;
        if (i_ + 1 < pattern_.size() && pattern_[i_ + 1] == '^') out_ += pattern_[++i_];
        if (i_ + 1 < pattern_.size() && pattern_[i_ + 1] == ']') out_ += pattern_[++i_];  // literal ] first
      } else {
        if (c == ']' && in_class_) in_class_ = false;
        out_ += c;
      }
    }
    return out_;
  }

 private:
  void escape() {
    char e = pattern_[++i_];
    if (e == 's' || e == 'S') {
      require(e == 's' || !in_class_, "\\S inside a character class is not supported", where_);
      std::string set(kWhiteSpaceSet);
      out_ += in_class_ ? set : (e == 's' ? "[" : "[^") + set + "]";
      return;
    }
    if ((e == 'p' || e == 'P') && i_ + 1 < pattern_.size()) {
      std::string_view property;
      size_t end = i_;
      if (pattern_[i_ + 1] == '{') {
        end = pattern_.find('}', i_);
        if (end != std::string_view::npos) property = pattern_.substr(i_ + 2, end - i_ - 2);
      } else {
        end = i_ + 1;
        property = pattern_.substr(i_ + 1, 1);
      }
      if (is_category_property(property)) {
        std::string original = str("\\", e, "{", property, "}");
        if (!extra_) extra_ = newer_code_points();
        std::string ranges = class_ranges(*extra_, property);
        i_ = end;
        if (ranges.empty()) {
          out_ += original;
        } else if (in_class_) {
          require(e == 'p', str("\\P{", property, "} inside a character class is not supported"), where_);
          out_ += "\\p{" + std::string(property) + "}" + ranges;
        } else {
          out_ += (e == 'p' ? "[\\p{" : "[^\\p{") + std::string(property) + "}" + ranges + "]";
        }
        return;
      }
    }
    out_ += '\\';
    out_ += e;
  }

  std::string_view pattern_;
  std::string_view where_;
  std::string out_;
  size_t i_ = 0;
  bool in_class_ = false;
  std::optional<std::vector<std::pair<char32_t, utf8proc_category_t>>> extra_;
};

}  // namespace

Regex::Regex(std::string_view original, std::string_view where)
    : pattern_(original), impl_(std::make_unique<Impl>()) {
  impl_->code = compile(PatternRewriter(original, where).run(), where);
  impl_->jit = pcre2_jit_compile(impl_->code.get(), PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

void Regex::for_each_match(std::string_view text, const std::function<void(size_t, size_t)>& on_match) const {
  std::unique_ptr<pcre2_match_data, MatchDataFree> data(
      pcre2_match_data_create_from_pattern(impl_->code.get(), nullptr));
  std::unique_ptr<pcre2_match_context, MatchContextFree> context(pcre2_match_context_create(nullptr));
  std::unique_ptr<pcre2_jit_stack, JitStackFree> stack;
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos <= text.size()) {
    int rc = pcre2_match(impl_->code.get(), subject, text.size(), pos, PCRE2_NO_UTF_CHECK, data.get(),
                         context.get());
    if (rc == PCRE2_ERROR_NOMATCH) return;
    if (rc < 0) fail(str("regex match failed: ", pcre2_message(rc)), "tokenizer split regex");
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.get());
    size_t begin = ov[0], end = ov[1];
    if (end > begin) {
      on_match(begin, end);
      pos = end;
    } else {
      if (end >= text.size()) return;
      pos = end + 1;
      while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
    }
  }
}

std::string regex_escape(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    auto u = static_cast<unsigned char>(c);
    bool plain = u >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!plain) out += '\\';
    out += c;
  }
  return out;
}

}  // namespace mtplx::text

#include "text/corpus.h"

#include <array>
#include <random>
#include <string_view>

namespace mtplx::test {

namespace {

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

constexpr std::array<std::string_view, 24> kWords = {
    "Hello",  "world",    "the",     " quick", "brown",    "fox",    "naïve",   "café",
    "Straße", "don't",    "I'M",     "we'LL",  "they're",  "it'S",   "you've",  "she'd",
    "ÉCOLE",  "Ελληνικά", "русский", "日本語", "中文字符", "한국어", "العربية", "हिन्दी"};

constexpr std::array<std::string_view, 12> kCode = {
    "def f(x):\n    return x**2\n",
    "for (int i = 0; i < n; ++i) {\r\n\tsum += a[i];\r\n}\r\n",
    "const obj = {\"key\": [1, 2, 3], 'v': null};",
    "    if x != None and y >= 10:  # comment\n",
    "SELECT * FROM t WHERE id=42;\n\n\n",
    "<div class=\"x\">&nbsp;</div>",
    "x = 3.14159e-10 + 0xFF - 1_000_000",
    "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
    "$ ls -la | grep '^d' > out.txt 2>&1",
    "#include <vector>\nint main(){return 0;}",
    "\t\t\treturn;\n\t}\n",
    "a_b__c___d //// **** ~~~~ ....",
};

constexpr std::array<char32_t, 26> kSpaces = {
    ' ',    ' ',    ' ',    '\t',   '\n',   '\n',   '\r',   0x0B,   0x0C,   0x85,   0xA0,   0x1680, 0x2000,
    0x2003, 0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0x180E, 0x200B, 0xFEFF, ' ',    '\t'};

struct Generator {
  std::mt19937 rng;
  const std::vector<std::string>& specials;

  size_t pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); }
  char32_t range(char32_t lo, char32_t hi) { return std::uniform_int_distribution<char32_t>(lo, hi)(rng); }

  char32_t any_code_point() {
    for (;;) {
      char32_t cp = pick(4) == 0 ? range(0x10000, 0x10FFFF) : range(0x20, 0xFFFF);
      if (cp < 0xD800 || cp > 0xDFFF) return cp;
    }
  }

  char32_t script_letter() {
    switch (pick(12)) {
      case 0:
        return range('a', 'z');
      case 1:
        return range('A', 'Z');
      case 2:
        return range(0xC0, 0x24F);  // Latin-1 + Extended
      case 3:
        return range(0x391, 0x3C9);  // Greek
      case 4:
        return range(0x410, 0x44F);  // Cyrillic
      case 5:
        return range(0x5D0, 0x5EA);  // Hebrew
      case 6:
        return range(0x627, 0x64A);  // Arabic
      case 7:
        return range(0x905, 0x939);  // Devanagari
      case 8:
        return range(0xE01, 0xE30);  // Thai
      case 9:
        return range(0x4E00, 0x9FFF);  // CJK
      case 10:
        return range(0xAC00, 0xD7A3);  // Hangul syllables
      default:
        return range(0x3041, 0x30FF);  // Kana
    }
  }

  void fragment(std::string& out) {
    switch (pick(14)) {
      case 0:  // random code points from every plane
        for (size_t n = 1 + pick(6); n > 0; --n) append_utf8(out, any_code_point());
        break;
      case 1:  // letters with stacked combining marks
        for (size_t n = 1 + pick(4); n > 0; --n) {
          append_utf8(out, script_letter());
          for (size_t m = pick(4); m > 0; --m) append_utf8(out, range(0x300, 0x36F));
        }
        break;
      case 2: {  // emoji, ZWJ sequences, skin tones, variation selectors, flags
        for (size_t n = 1 + pick(3); n > 0; --n) {
          append_utf8(out, range(0x1F300, 0x1F6FF));
          if (pick(2)) append_utf8(out, range(0x1F3FB, 0x1F3FF));
          if (pick(2)) append_utf8(out, 0xFE0F);
          if (pick(2)) append_utf8(out, 0x200D);
        }
        if (pick(3) == 0) {
          append_utf8(out, range(0x1F1E6, 0x1F1FF));
          append_utf8(out, range(0x1F1E6, 0x1F1FF));
        }
        break;
      }
      case 3:  // whitespace runs, CRLF
        for (size_t n = 1 + pick(12); n > 0; --n) {
          if (pick(5) == 0) {
            out += "\r\n";
          } else {
            append_utf8(out, kSpaces[pick(kSpaces.size())]);
          }
        }
        break;
      case 4:
        out += kCode[pick(kCode.size())];
        break;
      case 5:
        if (!specials.empty()) out += specials[pick(specials.size())];
        break;
      case 6:  // digits: ASCII, Arabic-Indic, fullwidth, superscripts, long numbers
        for (size_t n = 1 + pick(12); n > 0; --n) {
          constexpr std::array<char32_t, 5> bases = {'0', 0x660, 0xFF10, 0x966, '0'};
          append_utf8(out, bases[pick(bases.size())] + static_cast<char32_t>(pick(10)));
        }
        break;
      case 7:  // punctuation and symbols
        for (size_t n = 1 + pick(6); n > 0; --n) {
          constexpr std::string_view punct = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
          if (pick(4) == 0) {
            append_utf8(out, range(0x2010, 0x205E));
          } else {
            out += punct[pick(punct.size())];
          }
        }
        break;
      case 8:
        out += kWords[pick(kWords.size())];
        break;
      case 9:  // contractions in any case, after letters or spaces
        out += pick(2) ? "x" : " ";
        out += std::array<std::string_view, 10>{"'s",  "'S", "'t",  "'re", "'RE",
                                                "'ve", "'m", "'ll", "'Ll", "'d"}[pick(10)];
        break;
      case 10:  // decomposed forms that NFC composes, Hangul jamo
        out += pick(2) ? "e\xCC\x81" : "\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8";
        break;
      default:  // a word of one script, optionally after a space
        if (pick(2)) out += ' ';
        for (size_t n = 1 + pick(8); n > 0; --n) append_utf8(out, script_letter());
        break;
    }
  }
};

}  // namespace

std::vector<std::string> text_corpus(uint32_t seed, size_t count, const std::vector<std::string>& specials) {
  Generator g{std::mt19937(seed), specials};
  std::vector<std::string> out;
  out.reserve(count);
  out.emplace_back();
  out.emplace_back(" ");
  out.emplace_back("\r\n");
  while (out.size() < count) {
    std::string s;
    for (size_t n = 1 + g.pick(10); n > 0; --n) g.fragment(s);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace mtplx::test

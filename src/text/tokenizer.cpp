#include "text/tokenizer.h"

#include <utf8proc.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "text/utf8.h"

namespace mtplx::text {

namespace {

constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Rust's char::is_whitespace (the White_Space property), which tokenizers uses for lstrip/rstrip.
bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// Rust regex's Unicode \w (which tokenizers uses for single_word): Alphabetic, marks, decimal digits,
// connector punctuation and the joiners ZWNJ/ZWJ. Alphabetic is approximated by L and Nl.
bool is_word_char(char32_t c) {
  if (c == 0x200C || c == 0x200D) return true;
  auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_ME) || cat == UTF8PROC_CATEGORY_ND ||
         cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_PC;
}

char32_t last_code_point(std::string_view s) {
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return next_code_point(s, i);
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  require(in.good(), "cannot open file", path.string(),
          "check that the checkpoint folder has tokenizer.json");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

bool type_is(const nlohmann::json& j, std::string_view type) {
  return j.is_object() && j.contains("type") && j["type"] == type;
}

}  // namespace

// Finds added tokens in text: leftmost match first, longest among those starting there (aho-corasick
// LeftmostLongest in tokenizers), then applies single_word / lstrip / rstrip.
class Tokenizer::AddedMatcher {
 public:
  struct Segment {
    TokenId id;  // -1 for plain text
    size_t begin, end;
  };

  explicit AddedMatcher(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
    std::stable_sort(tokens_.begin(), tokens_.end(), [](const AddedToken& a, const AddedToken& b) {
      return a.content.size() > b.content.size();
    });
    for (const auto& t : tokens_) {
      if (!t.content.empty()) first_byte_[static_cast<unsigned char>(t.content[0])] = true;
    }
  }
  bool empty() const { return tokens_.empty(); }

  std::vector<Segment> split(std::string_view s, bool parse_special) const {
    std::vector<Segment> out;
    size_t done = 0;  // end of the last emitted token
    size_t pos = 0;
    while (pos < s.size()) {
      const AddedToken* hit = find_at(s, pos);
      if (!hit) {
        ++pos;
        continue;
      }
      size_t start = pos, stop = pos + hit->content.size();
      pos = stop;
      if (!parse_special && hit->special) continue;
      if (hit->single_word) {
        bool start_ok = start == 0 || !is_word_char(last_code_point(s.substr(0, start)));
        size_t k = stop;
        bool stop_ok = stop == s.size() || !is_word_char(next_code_point(s, k));
        if (!start_ok || !stop_ok) continue;
      }
      if (hit->lstrip) {
        size_t left = start;
        while (left > done) {
          size_t prev = left - 1;
          while (prev > 0 && (static_cast<unsigned char>(s[prev]) & 0xC0) == 0x80) --prev;
          size_t k = prev;
          if (!is_white_space(next_code_point(s, k))) break;
          left = prev;
        }
        start = left;
      }
      if (hit->rstrip) {
        size_t k = stop;
        while (k < s.size()) {
          size_t next = k;
          if (!is_white_space(next_code_point(s, next))) break;
          k = next;
        }
        stop = k;
        pos = std::max(pos, stop);
      }
      if (start > done) out.push_back({-1, done, start});
      out.push_back({hit->id, start, stop});
      done = stop;
    }
    if (done < s.size() || out.empty()) out.push_back({-1, done, s.size()});
    return out;
  }

 private:
  const AddedToken* find_at(std::string_view s, size_t pos) const {
    if (!first_byte_[static_cast<unsigned char>(s[pos])]) return nullptr;
    for (const auto& t : tokens_) {
      if (!t.content.empty() && s.compare(pos, t.content.size(), t.content) == 0) return &t;
    }
    return nullptr;
  }

  std::vector<AddedToken> tokens_;
  bool first_byte_[256] = {};
};

Tokenizer::Tokenizer(std::unique_ptr<Bpe> model) : model_(std::move(model)) {}

Tokenizer Tokenizer::from_file(const std::filesystem::path& tokenizer_json) {
  return from_json_text(read_file(tokenizer_json), tokenizer_json.string());
}

Tokenizer Tokenizer::from_json_text(std::string_view json_text, std::string_view where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::parse_error& e) {
    fail(str("tokenizer.json is not valid JSON: ", e.what()), where);
  }
  require(j.is_object() && j.contains("model"), "tokenizer.json has no 'model' section", where);
  // The cheap components first, so an unsupported one is reported before the vocabulary is built.
  Tokenizer t(nullptr);
  t.load_normalizer(j.value("normalizer", nlohmann::json()), where);
  bool byte_level = false;
  t.load_pre_tokenizer(j.value("pre_tokenizer", nlohmann::json()), where, byte_level);
  require(byte_level, "the pre-tokenizer has no ByteLevel step", where, "mtplx supports byte-level BPE only");
  auto decoder = j.value("decoder", nlohmann::json());
  require(type_is(decoder, "ByteLevel"), str("unsupported decoder ", decoder.dump()), where,
          "mtplx supports the ByteLevel decoder only");
  auto post = j.value("post_processor", nlohmann::json());
  require(post.is_null() || type_is(post, "ByteLevel"), str("unsupported post_processor ", post.dump()),
          where, "only none or ByteLevel (which changes offsets, not ids) are supported");
  t.model_ = std::make_unique<Bpe>(j["model"], where);
  t.load_added_tokens(j.value("added_tokens", nlohmann::json::array()), where);
  t.build_decoding_table();
  return t;
}

void Tokenizer::load_normalizer(const nlohmann::json& j, std::string_view where) {
  if (j.is_null()) return;
  std::string type = j.value("type", "");
  if (type == "Sequence") {
    for (const auto& step : j.value("normalizers", nlohmann::json::array())) load_normalizer(step, where);
  } else if (type == "NFC") {
    normalizers_.push_back(Normalization::kNfc);
  } else if (type == "NFD") {
    normalizers_.push_back(Normalization::kNfd);
  } else if (type == "NFKC") {
    normalizers_.push_back(Normalization::kNfkc);
  } else if (type == "NFKD") {
    normalizers_.push_back(Normalization::kNfkd);
  } else {
    fail(str("unsupported normalizer '", type, "'"), where,
         "supported: NFC, NFD, NFKC, NFKD, Sequence, none");
  }
}

void Tokenizer::load_pre_tokenizer(const nlohmann::json& j, std::string_view where, bool& byte_level) {
  if (j.is_null()) return;
  std::string type = j.value("type", "");
  if (type == "Sequence") {
    for (const auto& step : j.value("pretokenizers", nlohmann::json::array())) {
      load_pre_tokenizer(step, where, byte_level);
    }
  } else if (type == "Split") {
    require(!j.value("invert", false), "Split pre-tokenizer with invert=true is not supported", where);
    const auto& pattern = j.at("pattern");
    std::string regex = pattern.contains("Regex") ? pattern["Regex"].get<std::string>()
                                                  : regex_escape(pattern.at("String").get<std::string>());
    static const std::pair<std::string_view, SplitBehavior> kBehaviors[] = {
        {"Isolated", SplitBehavior::kIsolated},
        {"Removed", SplitBehavior::kRemoved},
        {"MergedWithPrevious", SplitBehavior::kMergedWithPrevious},
        {"MergedWithNext", SplitBehavior::kMergedWithNext}};
    std::string behavior = j.value("behavior", "Isolated");
    auto it = std::find_if(std::begin(kBehaviors), std::end(kBehaviors),
                           [&](const auto& b) { return b.first == behavior; });
    require(it != std::end(kBehaviors), str("unsupported Split behavior '", behavior, "'"), where,
            "supported: Isolated, Removed, MergedWithPrevious, MergedWithNext");
    pre_tokenizer_.push_back({Regex(regex, where), it->second, false});
  } else if (type == "ByteLevel") {
    byte_level = true;
    PreTokenizerStep step;
    step.add_prefix_space = j.value("add_prefix_space", true);
    if (j.value("use_regex", true)) step.split.emplace(kGpt2Pattern, where);
    pre_tokenizer_.push_back(std::move(step));
  } else {
    fail(str("unsupported pre-tokenizer '", type, "'"), where, "supported: Split, ByteLevel, Sequence");
  }
}

void Tokenizer::load_added_tokens(const nlohmann::json& j, std::string_view where) {
  // Ids are assigned the way tokenizers does on load, not read from the file: a content already in the
  // vocabulary keeps that id, a new one takes the next free id after the model's vocabulary. For every
  // published checkpoint this reproduces the ids written in the file.
  auto model_size = static_cast<TokenId>(model_->vocab().size());
  std::optional<TokenId> max_added;
  std::vector<AddedToken> raw, normalized;
  for (const auto& t : j) {
    AddedToken a;
    a.content = t.at("content").get<std::string>();
    a.special = t.value("special", false);
    a.lstrip = t.value("lstrip", false);
    a.rstrip = t.value("rstrip", false);
    a.normalized = t.value("normalized", !a.special);
    a.single_word = t.value("single_word", false);
    require(!first_invalid_byte(a.content), "added token is not valid UTF-8", where);
    if (std::any_of(added_.begin(), added_.end(),
                    [&](const AddedToken& b) { return b.content == a.content; })) {
      continue;
    }
    auto in_vocab = model_->vocab().find(a.content);
    if (in_vocab != model_->vocab().end()) {
      a.id = in_vocab->second;
    } else {
      a.id = max_added && *max_added >= model_size ? *max_added + 1 : model_size;
    }
    max_added = std::max(max_added.value_or(a.id), a.id);
    added_.push_back(a);
    if (a.normalized) {
      a.content = normalize(a.content);  // matched after the text is normalized
      normalized.push_back(std::move(a));
    } else {
      raw.push_back(std::move(a));
    }
  }
  raw_matcher_ = std::make_shared<const AddedMatcher>(std::move(raw));
  normalized_matcher_ = std::make_shared<const AddedMatcher>(std::move(normalized));
}

void Tokenizer::build_decoding_table() {
  TokenId n = model_->vocab_size();
  for (const auto& a : added_) n = std::max(n, a.id + 1);
  decoded_.assign(static_cast<size_t>(n), {});
  special_.assign(static_cast<size_t>(n), false);
  auto set = [&](TokenId id, const std::string& token) {
    std::string bytes;
    // The ByteLevel decoder maps a token back to bytes when every character is in its alphabet and
    // otherwise keeps the token's own UTF-8.
    decoded_[static_cast<size_t>(id)] = byte_level_decode(token, bytes) ? bytes : token;
  };
  for (TokenId id = 0; id < model_->vocab_size(); ++id) {
    if (!model_->token(id).empty()) set(id, model_->token(id));
  }
  for (const auto& a : added_) {
    set(a.id, a.content);
    special_[static_cast<size_t>(a.id)] = a.special;
  }
}

std::string Tokenizer::normalize(std::string_view text) const {
  if (normalizers_.size() == 1 && normalizers_[0] == Normalization::kNfc) return nfc(text);
  std::string s(text);
  for (auto n : normalizers_) {
    if (n == Normalization::kNfc) {
      s = nfc(s);
      continue;
    }
    auto options =
        UTF8PROC_STABLE |
        (n == Normalization::kNfd || n == Normalization::kNfkd ? UTF8PROC_DECOMPOSE : UTF8PROC_COMPOSE);
    if (n == Normalization::kNfkc || n == Normalization::kNfkd) options |= UTF8PROC_COMPAT;
    utf8proc_uint8_t* raw = nullptr;
    auto len =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                     static_cast<utf8proc_ssize_t>(s.size()), &raw, static_cast<utf8proc_option_t>(options));
    std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(raw, &std::free);
    require(len >= 0, "Unicode normalization failed", "tokenizer input");
    s.assign(reinterpret_cast<const char*>(raw), static_cast<size_t>(len));
  }
  return s;
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, EncodeOptions options) const {
  if (auto bad = first_invalid_byte(text)) {
    fail(str("text is not valid UTF-8 at byte ", *bad), "tokenizer input", "pass UTF-8 text");
  }
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 8);
  for (const auto& seg : raw_matcher_->split(text, options.parse_special)) {
    if (seg.id >= 0) {
      out.push_back(seg.id);
    } else {
      encode_plain(text.substr(seg.begin, seg.end - seg.begin), false, options, out);
    }
  }
  return out;
}

void Tokenizer::encode_plain(std::string_view text, bool normalized, const EncodeOptions& options,
                             std::vector<TokenId>& out) const {
  if (text.empty()) return;
  if (normalized || normalizers_.empty()) {
    if (normalized_matcher_->empty()) return encode_normalized(text, out);
    for (const auto& seg : normalized_matcher_->split(text, options.parse_special)) {
      if (seg.id >= 0) {
        out.push_back(seg.id);
      } else {
        encode_normalized(text.substr(seg.begin, seg.end - seg.begin), out);
      }
    }
    return;
  }
  std::string norm = normalize(text);
  encode_plain(norm, true, options, out);
}

void Tokenizer::encode_normalized(std::string_view text, std::vector<TokenId>& out) const {
  if (!text.empty()) pre_tokenize(text, 0, out);
}

// Applies pre-tokenizer step `step` to `piece` and passes each resulting piece straight on to the next
// step (and finally to BPE), so no list of all pieces of a long text is ever built.
void Tokenizer::pre_tokenize(std::string_view piece, size_t step_index, std::vector<TokenId>& out) const {
  if (step_index == pre_tokenizer_.size()) return model_->encode_piece(piece, out);
  const PreTokenizerStep& step = pre_tokenizer_[step_index];
  std::string prefixed;
  if (step.add_prefix_space && piece.front() != ' ') {
    prefixed.reserve(piece.size() + 1);
    prefixed += ' ';
    prefixed += piece;
    piece = prefixed;
  }
  if (!step.split) return pre_tokenize(piece, step_index + 1, out);
  auto next = [&](size_t b, size_t e) {
    if (e > b) pre_tokenize(piece.substr(b, e - b), step_index + 1, out);
  };
  if (step.behavior == SplitBehavior::kIsolated || step.behavior == SplitBehavior::kRemoved) {
    bool keep_matches = step.behavior == SplitBehavior::kIsolated;
    size_t prev = 0;
    step.split->for_each_match(piece, [&](size_t b, size_t e) {
      next(prev, b);
      if (keep_matches) next(b, e);
      prev = e;
    });
    next(prev, piece.size());
    return;
  }
  // Merged behaviours join a match to its neighbour, which needs the whole list of parts.
  struct Part {
    size_t begin, end;
    bool match;
  };
  std::vector<Part> parts;
  size_t prev = 0;
  step.split->for_each_match(piece, [&](size_t b, size_t e) {
    if (b > prev) parts.push_back({prev, b, false});
    parts.push_back({b, e, true});
    prev = e;
  });
  if (prev < piece.size()) parts.push_back({prev, piece.size(), false});
  bool with_next = step.behavior == SplitBehavior::kMergedWithNext;
  if (with_next) std::reverse(parts.begin(), parts.end());
  std::vector<Part> merged;
  bool previous_match = false;
  for (const auto& p : parts) {
    if (p.match && !previous_match && !merged.empty()) {
      (with_next ? merged.back().begin : merged.back().end) = with_next ? p.begin : p.end;
    } else {
      merged.push_back(p);
    }
    previous_match = p.match;
  }
  if (with_next) std::reverse(merged.begin(), merged.end());
  for (const auto& p : merged) next(p.begin, p.end);
}

std::string Tokenizer::decode(std::span<const TokenId> ids, bool skip_special) const {
  std::string bytes;
  for (TokenId id : ids) {
    if (id < 0 || id >= vocab_size()) continue;  // unknown ids are skipped, as in tokenizers
    if (skip_special && special_[static_cast<size_t>(id)]) continue;
    bytes += decoded_[static_cast<size_t>(id)];
  }
  return to_valid_utf8(bytes);
}

std::optional<std::string> Tokenizer::id_to_token(TokenId id) const {
  for (const auto& a : added_) {
    if (a.id == id) return a.content;
  }
  const std::string& t = model_->token(id);
  if (t.empty()) return std::nullopt;
  return t;
}

std::optional<TokenId> Tokenizer::token_to_id(std::string_view token) const {
  for (const auto& a : added_) {
    if (a.content == token) return a.id;
  }
  auto it = model_->vocab().find(std::string(token));
  if (it == model_->vocab().end()) return std::nullopt;
  return it->second;
}

std::string_view Tokenizer::token_bytes(TokenId id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return decoded_[static_cast<size_t>(id)];
}

bool Tokenizer::is_special(TokenId id) const {
  return id >= 0 && id < vocab_size() && special_[static_cast<size_t>(id)];
}

std::string StreamDecoder::push(TokenId id) {
  if (skip_special_ && tokenizer_->is_special(id)) return {};
  pending_ += tokenizer_->token_bytes(id);
  size_t n = complete_prefix_length(pending_);
  std::string out = to_valid_utf8(std::string_view(pending_).substr(0, n));
  pending_.erase(0, n);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out = to_valid_utf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace mtplx::text

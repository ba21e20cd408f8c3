#include "text/bpe.h"

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <queue>

#include "base/error.h"
#include "text/utf8.h"

namespace mtplx::text {

namespace {

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 are shifted to 256+.
struct ByteAlphabet {
  std::array<char32_t, 256> to_cp{};
  std::array<int16_t, 256 + 68> to_byte{};
  constexpr ByteAlphabet() {
    to_byte.fill(-1);
    char32_t shifted = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
      to_cp[static_cast<size_t>(b)] = printable ? static_cast<char32_t>(b) : shifted++;
      to_byte[to_cp[static_cast<size_t>(b)]] = static_cast<int16_t>(b);
    }
  }
};
constexpr ByteAlphabet kAlphabet;

char32_t byte_to_code_point(unsigned char b) {
  return kAlphabet.to_cp[b];
}

int code_point_to_byte(char32_t cp) {
  return cp < kAlphabet.to_byte.size() ? kAlphabet.to_byte[cp] : -1;
}

uint64_t pair_key(TokenId a, TokenId b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

}  // namespace

std::string byte_level_char(unsigned char byte) {
  std::string out;
  append_utf8(out, byte_to_code_point(byte));
  return out;
}

bool byte_level_decode(std::string_view token, std::string& bytes) {
  size_t i = 0;
  while (i < token.size()) {
    if (valid_sequence_length(token, i) == 0) return false;
    int b = code_point_to_byte(next_code_point(token, i));
    if (b < 0) return false;
    bytes += static_cast<char>(b);
  }
  return true;
}

Bpe::Bpe(const nlohmann::json& model, std::string_view where) {
  auto type = model.value("type", std::string("BPE"));
  require(type == "BPE", str("unsupported tokenizer model type '", type, "'"), where,
          "mtplx supports byte-level BPE models only");
  require(model.value("dropout", nlohmann::json()).is_null(), "BPE dropout is not supported", where);
  require(!model.value("byte_fallback", false), "BPE byte_fallback is not supported", where);
  // Both affixes may be absent, null or "" in the wild; only a non-empty string changes the encoding.
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const auto affix = model.value(key, nlohmann::json());
    require(affix.is_null() || (affix.is_string() && affix.get<std::string>().empty()),
            str("BPE ", key, " is not supported"), where, "mtplx supports byte-level BPE without affixes");
  }
  auto unk = model.value("unk_token", nlohmann::json());
  require(unk.is_null(), "BPE unk_token is not supported (byte-level vocabularies need none)", where);
  ignore_merges_ = model.value("ignore_merges", false);

  require(model.contains("vocab") && model["vocab"].is_object(), "BPE model has no vocab object", where);
  for (const auto& [token, id_json] : model["vocab"].items()) {
    auto id = id_json.get<TokenId>();
    require(id >= 0, str("negative token id for '", token, "'"), where);
    vocab_.emplace(token, id);
    if (static_cast<size_t>(id) >= tokens_.size()) tokens_.resize(static_cast<size_t>(id) + 1);
    tokens_[static_cast<size_t>(id)] = token;
    std::string bytes;
    if (byte_level_decode(token, bytes)) bytes_to_id_.emplace(std::move(bytes), id);
  }
  for (int b = 0; b < 256; ++b) {
    auto it = vocab_.find(byte_level_char(static_cast<unsigned char>(b)));
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }
  if (model.contains("merges")) load_merges(model["merges"], where);
}

void Bpe::load_merges(const nlohmann::json& merges, std::string_view where) {
  merges_.reserve(merges.size());
  uint32_t rank = 0;
  for (const auto& m : merges) {
    std::string a, b;
    if (m.is_string()) {
      auto line = m.get<std::string>();
      auto space = line.find(' ');
      require(space != std::string::npos && line.find(' ', space + 1) == std::string::npos,
              str("merge #", rank, " '", line, "' is not two tokens separated by one space"), where);
      a = line.substr(0, space);
      b = line.substr(space + 1);
    } else {
      require(m.is_array() && m.size() == 2, str("merge #", rank, " is not a pair"), where);
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    }
    auto ia = vocab_.find(a), ib = vocab_.find(b), ir = vocab_.find(a + b);
    require(ia != vocab_.end() && ib != vocab_.end() && ir != vocab_.end(),
            str("merge #", rank, " (", a, " ", b, ") uses a token missing from the vocab"), where);
    // Later duplicates win, as in tokenizers' HashMap construction.
    merges_.insert_or_assign(pair_key(ia->second, ib->second), Merge{rank, ir->second});
    ++rank;
  }
}

const std::string& Bpe::token(TokenId id) const {
  static const std::string kEmpty;
  if (id < 0 || static_cast<size_t>(id) >= tokens_.size()) return kEmpty;
  return tokens_[static_cast<size_t>(id)];
}

const Bpe::Merge* Bpe::find_merge(TokenId a, TokenId b) const {
  auto it = merges_.find(pair_key(a, b));
  return it == merges_.end() ? nullptr : &it->second;
}

void Bpe::encode_piece(std::string_view bytes, std::vector<TokenId>& out) const {
  if (bytes.empty()) return;
  if (ignore_merges_) {
    if (auto it = bytes_to_id_.find(std::string(bytes)); it != bytes_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  constexpr size_t kMaxCachedLength = 64;
  constexpr size_t kMaxCacheEntries = 1 << 18;
  bool cacheable = bytes.size() <= kMaxCachedLength;
  if (cacheable) {
    std::lock_guard lock(cache_->mutex);
    if (auto it = cache_->entries.find(bytes); it != cache_->entries.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<TokenId> ids;
  merge_word(bytes, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard lock(cache_->mutex);
    if (cache_->entries.size() < kMaxCacheEntries)
      cache_->entries.emplace(std::string(bytes), std::move(ids));
  }
}

// Standard BPE: repeatedly apply the lowest-ranked merge, leftmost first. A heap over adjacent pairs with
// lazy invalidation keeps long pieces (whitespace runs, long words) near-linear.
void Bpe::merge_word(std::string_view bytes, std::vector<TokenId>& out) const {
  std::vector<TokenId> ids;
  ids.reserve(bytes.size());
  for (char c : bytes) {
    TokenId id = byte_ids_[static_cast<unsigned char>(c)];
    if (id >= 0) ids.push_back(id);  // tokenizers drops characters it cannot map when there is no unk
  }
  const size_t n = ids.size();
  std::vector<int> prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int>(i + 1) : -1;
  }
  struct Candidate {
    uint32_t rank;
    int left;
    int right;
    TokenId left_id;
    TokenId right_id;
    TokenId result;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto push = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    auto l = static_cast<size_t>(left), r = static_cast<size_t>(right);
    if (const Merge* m = find_merge(ids[l], ids[r]))
      heap.push({m->rank, left, right, ids[l], ids[r], m->result});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int>(i), static_cast<int>(i + 1));
  std::vector<bool> alive(n, true);
  while (!heap.empty()) {
    Candidate c = heap.top();
    heap.pop();
    auto l = static_cast<size_t>(c.left), r = static_cast<size_t>(c.right);
    if (!alive[l] || !alive[r] || next[l] != c.right || ids[l] != c.left_id || ids[r] != c.right_id) continue;
    ids[l] = c.result;
    alive[r] = false;
    next[l] = next[r];
    if (next[r] >= 0) prev[static_cast<size_t>(next[r])] = c.left;
    push(prev[l], c.left);
    push(c.left, next[l]);
  }
  for (size_t i = 0; i < n; ++i) {
    if (alive[i]) out.push_back(ids[i]);
  }
}

}  // namespace mtplx::text

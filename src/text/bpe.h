// Byte-level BPE model (the `model` section of tokenizer.json). Works on raw bytes: the GPT-2 byte-to-
// unicode alphabet of the vocabulary is undone once at load, so encoding never re-maps characters.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mtplx::text {

using TokenId = int32_t;

// Maps a byte to its printable stand-in in byte-level vocabularies ("Ġ" for space) and back.
std::string byte_level_char(unsigned char byte);
// Appends the raw bytes of a byte-level token string; false when a character is outside the alphabet.
bool byte_level_decode(std::string_view token, std::string& bytes);

class Bpe {
 public:
  // `where` names the file for error messages.
  Bpe(const nlohmann::json& model, std::string_view where);

  // Appends the ids of one pre-tokenized piece (raw bytes).
  void encode_piece(std::string_view bytes, std::vector<TokenId>& out) const;

  // The vocabulary token string (as written in tokenizer.json), empty when the id is unknown.
  const std::string& token(TokenId id) const;
  TokenId vocab_size() const { return static_cast<TokenId>(tokens_.size()); }
  const std::unordered_map<std::string, TokenId>& vocab() const { return vocab_; }

 private:
  struct Merge {
    uint32_t rank;
    TokenId result;
  };
  void load_merges(const nlohmann::json& merges, std::string_view where);
  void merge_word(std::string_view bytes, std::vector<TokenId>& out) const;
  const Merge* find_merge(TokenId a, TokenId b) const;

  std::unordered_map<std::string, TokenId> vocab_;        // token string as in the file
  std::unordered_map<std::string, TokenId> bytes_to_id_;  // raw bytes of byte-level tokens
  std::vector<std::string> tokens_;
  TokenId byte_ids_[256];
  std::unordered_map<uint64_t, Merge> merges_;
  bool ignore_merges_ = false;

  // Recently seen pieces: real text repeats words constantly, and a lookup is far cheaper than merging.
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Cache {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<TokenId>, StringHash, std::equal_to<>> entries;
  };
  std::unique_ptr<Cache> cache_ = std::make_unique<Cache>();
};

}  // namespace mtplx::text

// Hugging Face tokenizer.json (byte-level BPE) in C++: encode and decode give the same ids and text as the
// `tokenizers` library. Supported: BPE model; normalizer NFC/NFD/NFKC/NFKD/Sequence/none; pre-tokenizer
// Split(regex or string) and ByteLevel, alone or in a Sequence; ByteLevel decoder; added tokens with
// lstrip/rstrip/normalized/single_word. Anything else is rejected at load with an error naming it.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "text/bpe.h"
#include "text/regex.h"

namespace mtplx::text {

struct AddedToken {
  TokenId id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool single_word = false;
};

struct EncodeOptions {
  // When false, special added tokens written in the text are tokenized as plain text (tokenizers'
  // `encode_special_tokens`); non-special added tokens are still matched.
  bool parse_special = true;
};

class Tokenizer {
 public:
  static Tokenizer from_file(const std::filesystem::path& tokenizer_json);
  // `where` names the source in error messages.
  static Tokenizer from_json_text(std::string_view json_text, std::string_view where);

  std::vector<TokenId> encode(std::string_view text, EncodeOptions options = {}) const;
  std::string decode(std::span<const TokenId> ids, bool skip_special = false) const;

  // The token string as stored in tokenizer.json, or nullopt for an unknown id.
  std::optional<std::string> id_to_token(TokenId id) const;
  std::optional<TokenId> token_to_id(std::string_view token) const;
  // Raw bytes a token stands for in decoded text (may be part of a UTF-8 sequence).
  std::string_view token_bytes(TokenId id) const;
  bool is_special(TokenId id) const;
  const std::vector<AddedToken>& added_tokens() const { return added_; }
  // Number of ids: one past the largest id of the vocabulary and the added tokens.
  TokenId vocab_size() const { return static_cast<TokenId>(decoded_.size()); }

 private:
  enum class Normalization { kNfc, kNfd, kNfkc, kNfkd };
  enum class SplitBehavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext };
  struct PreTokenizerStep {
    std::optional<Regex> split;  // absent for a ByteLevel step without regex
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool add_prefix_space = false;
  };
  class AddedMatcher;

  explicit Tokenizer(std::unique_ptr<Bpe> model);
  void load_normalizer(const nlohmann::json& j, std::string_view where);
  void load_pre_tokenizer(const nlohmann::json& j, std::string_view where, bool& byte_level);
  void load_added_tokens(const nlohmann::json& j, std::string_view where);
  void build_decoding_table();

  std::string normalize(std::string_view text) const;
  void encode_plain(std::string_view text, bool normalized, const EncodeOptions& options,
                    std::vector<TokenId>& out) const;
  void encode_normalized(std::string_view text, std::vector<TokenId>& out) const;
  void pre_tokenize(std::string_view piece, size_t step_index, std::vector<TokenId>& out) const;

  std::unique_ptr<Bpe> model_;
  std::vector<Normalization> normalizers_;
  std::vector<PreTokenizerStep> pre_tokenizer_;
  std::vector<AddedToken> added_;
  std::shared_ptr<const AddedMatcher> raw_matcher_;         // tokens with normalized=false
  std::shared_ptr<const AddedMatcher> normalized_matcher_;  // tokens with normalized=true
  std::vector<std::string> decoded_;                        // id -> bytes in decoded text
  std::vector<bool> special_;                               // id -> special added token
};

// Turns a stream of token ids into text pieces that are always whole UTF-8 characters: bytes of a
// character split across tokens are held back until it is complete. The pieces concatenated equal
// Tokenizer::decode of all ids.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = false)
      : tokenizer_(&tokenizer), skip_special_(skip_special) {}
  std::string push(TokenId id);
  // Emits what is still held back (an unfinished character becomes U+FFFD).
  std::string flush();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace mtplx::text

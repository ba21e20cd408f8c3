// The LM head used for drafts only. Acceptance stays exact with any draft head because it uses the q the
// draft was actually sampled from; a cheaper head only changes how often drafts are accepted.
//   full    - the model's own LM head
//   q<bits> - a copy of the LM head requantized to MLX affine <bits>-bit, group 64, made at load time
//   trim:N  - the N most frequent tokens' rows only (tokens outside get q = 0), in the head's own format
//   trim:N:q<bits> - those rows requantized to MLX affine <bits>-bit, group 64 (both savings at once)
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/quantize.h"
#include "model/qwen35.h"

namespace mtplx {

struct DraftHeadSpec {
  enum class Kind { kFull, kQuantized, kTrimmed };
  Kind kind = Kind::kFull;
  int bits = 4;                   // kQuantized
  int group_size = 64;            // kQuantized
  int64_t trim = 0;               // kTrimmed: rows kept
  bool trim_requantized = false;  // kTrimmed: the kept rows requantized to `bits`, `group_size`

  std::string describe() const;
};

// "full", "q4", "q8", "trim:N", "trim:N:q4", "trim:N:q8"; throws with the accepted forms on anything else.
DraftHeadSpec parse_draft_head(std::string_view text);

// Token ids by decreasing frequency, from a JSON file {"token_ids": [...]} (`mtplx draft-vocab` writes it).
std::vector<int32_t> read_draft_vocab(const std::filesystem::path& path);

class DraftHead {
 public:
  // `frequent` lists token ids by decreasing frequency (needed for trim:N; the eos ids are always kept).
  DraftHead(Qwen35Model& model, const DraftHeadSpec& spec, std::span<const int32_t> frequent = {});

  // Draft logits for one post-mtp.norm row [1, H]; entry i scores token token_of(i).
  std::span<const float> logits(const Tensor& hidden_row);
  // The same logits left where the backend computed them [1, size()].
  Tensor project(const Tensor& hidden_row);
  // The token a greedy draft picks from that row: the argmax of the draft logits (ties -> lowest id, as
  // Sampler's greedy rule), found by the backend where the logits are, so only the id comes to the host.
  int32_t greedy_token(const Tensor& hidden_row);
  // Token slots whose mapped picks are this head's token ids (Backend::token_slots with ids()).
  std::unique_ptr<TokenSlots> token_slots(int count);
  // greedy_token's pick for that row queued into `slots` (made by token_slots) at `slot`: the id stays where
  // the logits are, for the next draft step and the verify (no host round trip).
  void greedy_pick(const Tensor& hidden_row, TokenSlots& slots, int slot);
  // The k best draft logits of that row, picked by the backend where the logits are (Backend::top_k), best
  // first; ids index this head's rows, like the entries of logits() (map them with ids() when trimmed).
  void top_k(const Tensor& hidden_row, int k, std::vector<ScoredToken>& out);
  // Token ids of the draft vocabulary in ascending order; empty when it is the whole vocabulary.
  std::span<const int32_t> ids() const { return ids_; }
  int64_t size() const { return head_.rows; }
  const WeightMatrix& matrix() const { return head_; }  // as prepared for the backend
  size_t bytes() const { return head_.bytes(); }
  const DraftHeadSpec& spec() const { return spec_; }

 private:
  void make_quantized(const WeightMatrix& source);
  void make_trimmed(const WeightMatrix& source, std::span<const int32_t> frequent);

  Qwen35Model& model_;
  DraftHeadSpec spec_;
  WeightMatrix head_;
  QuantizedMatrix quantized_;       // storage of a requantized head
  std::vector<std::byte> trimmed_;  // storage of a trimmed head (codes or values, then scales, biases)
  std::vector<int32_t> ids_;        // [head_.rows] for a trimmed head
  std::vector<float> host_logits_;  // [head_.rows]
};

}  // namespace mtplx

// Generated token ids turned into the text a user sees: decoded as a stream (whole UTF-8 characters only)
// and cut right before the first stop string, which may arrive split across any number of tokens.
//
// Ids and a stop string: generation stops after the token that completes the stop string, so the
// generated ids run past the text. ids_for_text() gives the ids that carry the text: every token up to
// and including the one holding the text's last byte. A token that straddles the start of the stop
// string is kept (its leading bytes belong to the text), so decoding those ids may reach into the stop
// string; the text itself never does. Text that ends right where a token ends has exactly its own ids.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "text/stop_strings.h"
#include "text/tokenizer.h"

namespace mtplx::text {

class GeneratedText {
 public:
  GeneratedText(const Tokenizer& tokenizer, std::vector<std::string> stops);

  // Adds one generated token; returns the text that became safe to show. After a stop string matched,
  // stopped() is true and further tokens add nothing.
  std::string push(TokenId id);
  // End of generation: returns the text still held back (nothing after a stop).
  std::string finish();

  bool stopped() const { return matcher_.stopped(); }
  const std::string& matched_stop() const { return matched_; }
  // Everything returned by push() and finish() so far.
  const std::string& text() const { return text_; }
  // The pushed ids that carry text() (see the file comment); all of them when no stop string matched.
  std::vector<TokenId> ids_for_text() const;

 private:
  std::string release(StopStringMatcher::Result result);

  StreamDecoder decoder_;
  StopStringMatcher matcher_;
  std::string text_;
  std::string matched_;
  std::vector<TokenId> ids_;
  std::vector<size_t> decoded_after_;  // [ids] decoded bytes (before stop matching) after each id
  size_t decoded_ = 0;
};

}  // namespace mtplx::text

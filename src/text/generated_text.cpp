#include "text/generated_text.h"

#include <algorithm>

namespace mtplx::text {

GeneratedText::GeneratedText(const Tokenizer& tokenizer, std::vector<std::string> stops)
    : decoder_(tokenizer), matcher_(std::move(stops)) {}

std::string GeneratedText::release(StopStringMatcher::Result result) {
  if (result.stopped) matched_ = result.matched;
  text_ += result.text;
  return std::move(result.text);
}

std::string GeneratedText::push(TokenId id) {
  if (stopped()) return {};
  const std::string piece = decoder_.push(id);
  decoded_ += piece.size();
  ids_.push_back(id);
  decoded_after_.push_back(decoded_);
  return release(matcher_.push(piece));
}

std::string GeneratedText::finish() {
  if (stopped()) return {};
  std::string out = release(matcher_.push(decoder_.flush()));
  if (!stopped()) {
    std::string rest = matcher_.flush();
    text_ += rest;
    out += rest;
  }
  return out;
}

std::vector<TokenId> GeneratedText::ids_for_text() const {
  if (!stopped()) return ids_;
  if (text_.empty()) return {};
  // The first id after which the decoder had produced at least the text's bytes holds its last byte.
  const auto last = std::lower_bound(decoded_after_.begin(), decoded_after_.end(), text_.size());
  const auto count = std::min<size_t>(static_cast<size_t>(last - decoded_after_.begin()) + 1, ids_.size());
  return {ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(count)};
}

}  // namespace mtplx::text

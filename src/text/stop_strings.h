// Stop strings over streamed text: a stop string may arrive split across any number of tokens, so text
// that could still become one is held back until it is known not to.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mtplx::text {

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops);

  struct Result {
    std::string text;      // safe to emit now
    bool stopped = false;  // a stop string matched; `text` ends right before it
    std::string matched;   // which one
  };
  // Feeds more text; after a stop, further input is ignored.
  Result push(std::string_view text);
  // End of generation: releases what was held back.
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace mtplx::text

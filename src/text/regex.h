// A compiled PCRE2 pattern (UTF + Unicode properties, JIT) used by the tokenizer's split step.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace mtplx::text {

class Regex {
 public:
  // `where` names the source of the pattern for error messages.
  Regex(std::string_view pattern, std::string_view where);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  // Calls on_match(begin, end) for each non-overlapping, non-empty match in `text` (valid UTF-8), left
  // to right; after an empty match the search resumes one character later, like Oniguruma's find_iter.
  void for_each_match(std::string_view text, const std::function<void(size_t, size_t)>& on_match) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Impl;
  std::string pattern_;
  std::unique_ptr<Impl> impl_;
};

// Quotes `literal` so that it matches itself.
std::string regex_escape(std::string_view literal);

}  // namespace mtplx::text

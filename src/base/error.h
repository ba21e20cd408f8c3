// Errors: every failure the user can cause is reported as mtplx::Error with what went wrong, where, and how
// to fix it. Front ends print the message and exit nonzero (CLI) or answer 4xx (server).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace mtplx {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Concatenates streamable values into a string.
template <class... Parts>
std::string str(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

// Throws Error("<what> [in <where>]. <fix>"). `where` and `fix` may be empty.
[[noreturn]] void fail(std::string_view what, std::string_view where = {}, std::string_view fix = {});

// Checks an invariant that bad input can break; throws like fail() when `ok` is false.
inline void require(bool ok, std::string_view what, std::string_view where = {}, std::string_view fix = {}) {
  if (!ok) fail(what, where, fix);
}

}  // namespace mtplx

#include "base/error.h"

namespace mtplx {

void fail(std::string_view what, std::string_view where, std::string_view fix) {
  std::string message(what);
  if (!where.empty()) message += str(" [in ", where, "]");
  if (!fix.empty()) message += str(". ", fix);
  throw Error(message);
}

}  // namespace mtplx

#include "token_list.h"

#include <climits>
#include <sstream>

#include "base/error.h"

namespace mtplx::cli {

std::vector<int32_t> parse_token_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    long value = -1;
    try {
      value = std::stol(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    require(used == item.size() && !item.empty() && value >= 0 && value <= INT32_MAX,
            str("bad token id \"", item, "\" in --tokens"), "",
            "pass comma-separated non-negative integers, e.g. 1,2,3");
    ids.push_back(static_cast<int32_t>(value));
  }
  require(!ids.empty(), "no token ids in --tokens", "",
          "pass comma-separated non-negative integers, e.g. 1,2,3");
  return ids;
}

}  // namespace mtplx::cli

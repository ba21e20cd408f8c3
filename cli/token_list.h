// Token ids given on the command line: "1,2,3".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mtplx::cli {

// Parses comma-separated non-negative ids; throws mtplx::Error naming the bad item.
std::vector<int32_t> parse_token_ids(const std::string& text);

}  // namespace mtplx::cli

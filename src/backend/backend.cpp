// Default implementations of the optional Backend features: a backend without step graphs refuses them.
#include "backend/backend.h"

#include "base/error.h"

namespace mtplx {

void Backend::begin_capture(std::span<const int32_t>, int64_t) {
  fail(str("internal error: the ", name(), " backend has no step graphs"));
}

std::unique_ptr<Backend::Graph> Backend::end_capture() {
  fail(str("internal error: the ", name(), " backend has no step graphs"));
}

void Backend::replay(Graph&, std::span<const int32_t>, int64_t) {
  fail(str("internal error: the ", name(), " backend has no step graphs"));
}

}  // namespace mtplx

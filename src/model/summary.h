// A structured description of a loaded checkpoint (what `mtplx inspect` prints).
#pragma once

#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "model/qwen35.h"

namespace mtplx {

nlohmann::json summarize_model(const Checkpoint& ckpt, const Qwen35Model& model);

}  // namespace mtplx

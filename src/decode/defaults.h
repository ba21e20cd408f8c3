// Generation defaults a checkpoint carries: generation_config.json (sampler, eos ids) and the MTPLX runtime
// contract (target and draft samplers, depth, draft LM head), in that order of precedence (contract last).
#pragma once

#include "decode/draft_head.h"
#include "decode/generator.h"
#include "io/checkpoint.h"
#include "model/config.h"

namespace mtplx {

struct GenerationDefaults {
  GenerationConfig config;
  DraftHeadSpec draft_head;
};

GenerationDefaults generation_defaults(const Checkpoint& ckpt, const ModelConfig& model_config, bool has_mtp);

}  // namespace mtplx

// Internal to the CUDA backend: causal attention for many query rows (attention_prefill.cu,
// attention_mma.cu), called by attention.cu.
#pragma once

#include "backend/backend.h"
#include "backend/cuda/cuda_context.h"

namespace mtplx::cuda {

// out = softmax(q K^T * scale, causal) V for args.q's rows at positions position.get() + t. False (nothing
// queued) where it does not apply: head_dim other than 128 or 256, or a GQA group that does not divide 64.
bool attention_prefill(const AttentionArgs& args, Position position, Queue queue);

// The same on tensor cores (attention_mma.cu): K and V split into fp16 hi/lo planes in scratch memory, three
// products per pair of operands. False (nothing queued) where it does not apply: fewer than 64 rows,
// head_dim other than 128 or 256, a GQA group over 64, a step graph being captured (the planes are sized by
// the host's position), or a device with less shared memory than a block needs.
bool attention_prefill_mma(const AttentionArgs& args, Position position, Queue queue);

}  // namespace mtplx::cuda

// Internal to the CUDA backend: Gated DeltaNet prefill in chunks of 64 tokens (gdn_chunks.cu), called by
// gdn.cu.
#pragma once

#include "backend/backend.h"
#include "backend/cuda/cuda_context.h"

namespace mtplx::cuda {

// gdn_chunked's function in chunks with matrix products. False (nothing queued) where it does not apply:
// per-row states asked for, Dk other than 64 or 128, Dv over 128 or not a multiple of 32, fewer rows than
// one chunk, or a device with less shared memory than the kernels need.
bool gdn_chunks(const GdnArgs& args, Queue queue);

}  // namespace mtplx::cuda

// Internal to the CUDA backend: the word-interleaved fused GEMV (matmul_gemv.cu), called by matmul.cu.
#pragma once

#include <cstdint>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/matmul_mma.h"
#include "backend/weight.h"

namespace mtplx::cuda {

// y = x W^T for T = 1..8 rows with the word-interleaved kernel, for fused-GEMV path `path` (matmul.cu's
// fast_path: 8 or 4 for affine codes, 16 for BF16). False when it does not serve this matrix, width or these
// options (BF16; widths gemv_wide_chosen declines; other group sizes): the caller then runs the classic
// kernel.
bool gemv_wide(const WeightMatrix& w, int path, const float* x, float* y, int64_t T, Queue queue);
// Whether 8- or 4-bit codes (path 8 or 4) at T rows go to the interleaved kernel under these options: a
// forced variant (GemvOptions batch, words or warps), else from GemvOptions::wide8_from / wide4_from rows.
bool gemv_wide_chosen(int path, int64_t T, const GemvOptions& options);

// y = x W^T for T = 1..8 rows on the integer tensor cores (matmul_imma.cu), for 8- and 4-bit codes whose
// groups are whole 64-column slices (gemv_imma_supported). Used from GemvOptions::mma_from rows on, and for
// matrices of >= 5,120 rows and columns from GemvOptions::mma_large_from rows on.
// x comes as fixed-point pieces written by imma_activations (laid out for `bits`-bit codes), so weights
// of one code width that share an input convert it once.
struct ImmaActivations {
  const void* pieces;
  const float* sums;
  const float* inverse;
  int bits;
};
bool gemv_imma_supported(const WeightMatrix& w);
size_t imma_scratch_bytes(int64_t T, int64_t cols);
ImmaActivations imma_activations(const float* x, int64_t T, int64_t cols, int bits, void* scratch,
                                 Queue queue);
void gemv_imma(const WeightMatrix& w, const ImmaActivations& x, float* y, int64_t T, Queue queue);
// Whether matmul.cu sends T rows times `w` to gemv_imma on this queue (mma_from, mma_large_from).
bool takes_gemv_mma(const WeightMatrix& w, int64_t T, const Queue& stream);

}  // namespace mtplx::cuda

// Internal to the CUDA backend: the tensor-core GEMM for T > 8 rows (matmul_mma.cu), called by matmul.cu.
#pragma once

#include <cstdint>

#include "backend/cuda/cuda_context.h"
#include "backend/weight.h"

namespace mtplx::cuda {

// Whether gemm_mma serves `w`: 8-bit or 4-bit affine codes with groups of a multiple of 64 columns, or dense
// BF16 with a multiple of 64 columns.
bool gemm_mma_supported(const WeightMatrix& w);

// Device bytes split_activations needs for T rows of `cols` columns.
size_t gemm_mma_scratch_bytes(int64_t T, int64_t cols);

// x [T, cols] split for the tensor-core GEMM (mma_util.cuh: chunks of hi/lo fp16, P times each 64-column
// slice's sum, 1 / P per row), written into `scratch` (gemm_mma_scratch_bytes(T, cols) bytes, untouched
// until the work that reads it has run) by one kernel queued here. `chunks` points to uint4 values in
// device memory.
struct SplitActivations {
  const void* chunks;
  const float* sums;
  const float* inverse;
};
SplitActivations split_activations(const float* x, int64_t T, int64_t cols, void* scratch, Queue queue);

// y = x W^T for T rows on tensor cores, x given split, for a matrix gemm_mma_supported accepts.
void gemm_mma(const WeightMatrix& w, const SplitActivations& x, float* y, int64_t T, Queue queue);

}  // namespace mtplx::cuda

// Internal to the CUDA backend: the tensor-core GEMMs for T > 8 rows, called by matmul.cu: mma.sync
// (matmul_mma.cu) and warpgroup MMAs (matmul_wgmma.cu), with the activation split they share.
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

// How split_activations lays out a row's 256 bytes of hi/lo fp16 halves per 64-column slice:
//   kFragments (gemm_mma): 16 chunks of 16 bytes, chunk 4s + c = columns 16c + 4s .. + 3 as hi[4], lo[4]:
//              what lane c feeds to mma step s (mma_util.cuh);
//   kTiles     (gemm_wgmma): per tile of 128 rows and slice, 32 KiB in the form the wgmma's operand takes in
//              shared memory, so one bulk copy moves it: the hi plane (a 128-byte line per row), then the lo
//              plane; a line in k order, chunk 2s + h, word c = columns 16c + 4s + 2h, + 1 (the order in
//              which the weight codes enter the A fragments, matmul_wgmma.cu), chunk q of row r stored at q ^
//              (r & 7) (the 128-byte swizzle). The last tile's rows past T are left unwritten.
enum class SplitLayout { kFragments, kTiles };

// x [T, cols] split for a tensor-core GEMM (hi/lo fp16 halves of x P, P times each 64-column slice's sum,
// 1 / P per row), written into `scratch` (gemm_mma_scratch_bytes(T, cols) bytes, untouched until the work
// that reads it has run) by one kernel queued here. `chunks` points to uint4 values in device memory.
struct SplitActivations {
  const void* chunks;
  const float* sums;
  const float* inverse;
};
SplitActivations split_activations(const float* x, int64_t T, int64_t cols, void* scratch, Queue queue,
                                   SplitLayout layout = SplitLayout::kFragments);

// y = x W^T for T rows on tensor cores, x given split (kFragments), for a matrix gemm_mma_supported accepts.
void gemm_mma(const WeightMatrix& w, const SplitActivations& x, float* y, int64_t T, Queue queue);

// Whether gemm_wgmma serves `w` at T rows here: 8-bit or 4-bit affine codes with groups of a multiple of 64
// columns, a matrix and a split within the kernel's 32-bit offsets, on a device that runs the sm_90a code
// (Context::wgmma_code; elsewhere gemm_mma serves).
bool gemm_wgmma_supported(const WeightMatrix& w, int64_t T, const Context& context);

// Whether this device runs matmul_wgmma.cu's sm_90a code (rather than a JIT of the compute_90 PTX, where
// that kernel traps): a probe kernel's answer, asked once when the Context is made.
bool wgmma_code_loaded();

// The same product with warpgroup MMAs (matmul_wgmma.cu), x given split (kTiles).
void gemm_wgmma(const WeightMatrix& w, const SplitActivations& x, float* y, int64_t T, Queue queue);

}  // namespace mtplx::cuda

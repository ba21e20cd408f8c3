// CPU matrix kernels over WeightMatrix (dense F32/F16/BF16 and affine 2..8-bit). Activations are fp32.
// Multi-threaded over output rows; SIMD (AVX2/FMA, chosen at run time) with a portable fallback.
// For T rows of input each weight byte is read once (decode and speculative verify widths 1..8), and
// large T is processed in tiles so prefill runs as matrix-matrix products.
#pragma once

#include <cstdint>

#include "backend/weight.h"
#include "base/thread_pool.h"

namespace mtplx::cpu {

// y[t, r] = sum_c x[t, c] * W[r, c] for t < T. x is [T, w.cols] row-major, y is [T, w.rows] row-major.
void matmul(const WeightMatrix& w, const float* x, float* y, int64_t T, ThreadPool& pool);

// out[c] = W[row, c] for c < w.cols (embedding lookup), dequantized to fp32.
void dequantize_row(const WeightMatrix& w, int64_t row, float* out);

}  // namespace mtplx::cpu

// CPU matrix kernels over WeightMatrix (dense F32/F16/BF16 and affine 2..8-bit). Activations are fp32.
// Multi-threaded over output rows; SIMD (AVX-512 or AVX2/FMA, chosen at run time) with a portable fallback.
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

// Instruction-set paths of matmul. Auto picks the best one this CPU runs; naming one lets tests and
// benchmarks exercise every path on a single machine.
enum class Isa { Auto, Portable, Avx2, Avx512 };

// Whether this CPU (and build) can run `isa`. Auto and Portable always can.
bool isa_supported(Isa isa);

// matmul on a chosen path. Throws mtplx::Error when `isa` is not supported here.
void matmul(const WeightMatrix& w, const float* x, float* y, int64_t T, ThreadPool& pool, Isa isa);

// Largest T handled by the row kernels (every weight byte read once for all T rows); larger T goes to
// the tiled matrix-matrix path.
inline constexpr int64_t kMaxRowKernelT = 8;

}  // namespace mtplx::cpu

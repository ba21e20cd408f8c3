// Internal pieces shared by the matmul driver (matmul.cpp) and its per-ISA kernels (matmul_portable.cpp,
// matmul_avx2.cpp). Not part of the backend interface.
#pragma once

#include <cstdint>
#include <span>

#include "backend/weight.h"
#include "base/dtype.h"

namespace mtplx::cpu::detail {

// Activations as the row kernels (T <= kMaxRowKernelT) read them, prepared once per call.
struct RowArgs {
  const float* x = nullptr;     // [T, cols] as given
  const float* xq = nullptr;    // [T, cols] in code order (see code_order), for 2/4/8-bit on AVX2
  const float* xsum = nullptr;  // [T, cols / group_size]: sum of x over each quantization group
  int64_t T = 0;
  float* y = nullptr;  // [T, rows]
};

// Scale / bias element i of a quantized matrix as fp32.
inline float load_param(const void* base, DType type, int64_t i) {
  switch (type) {
    case DType::BF16:
      return bf16_to_float(static_cast<const uint16_t*>(base)[i]);
    case DType::F16:
      return f16_to_float(static_cast<const uint16_t*>(base)[i]);
    default:
      return static_cast<const float*>(base)[i];
  }
}

// The AVX2 kernels for 2/4/8 bits widen 8 packed bytes at a time to 8 int32 lanes and peel the n = 8/bits
// codes of each byte off with shifts, so a chunk of 32 codes comes out as 4 vectors where vector v
// = piece * n + k holds, in lane j, code 8n * piece + n * j + k. Permuting x once per call into that order
// (rather than shuffling every weight) keeps the inner loop to load, shift, mask, convert, FMA.
// Returns the natural column (within a 32-code chunk) of position i = v * 8 + j.
inline int code_order(int bits, int i) {
  const int n = 8 / bits;
  const int v = i / 8, j = i % 8;
  const int piece = v / n, k = v % n;
  return 8 * n * piece + n * j + k;
}

// Dequantizes W[row, c0 .. c0 + out.size()) to fp32 (any supported dtype and bit width).
void dequantize_span(const WeightMatrix& w, int64_t row, int64_t c0, std::span<float> out);

// Row kernels: for r in [r0, r1) and t < a.T, a.y[t * w.rows + r] = dot(x[t], W[r]). `scratch` holds at
// least w.cols floats (the caller allocates it once per call and thread).
void rows_portable(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1, std::span<float> scratch);
void rows_avx2(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1, std::span<float> scratch);

// Tile kernels of the matrix-matrix path: c[i * kTileN + j] = sum_k xrows[i][k] * panel[k * kTileN + j]
// for i < kTileM, j < kTileN, k < kc.
inline constexpr int kTileM = 6;
inline constexpr int kTileN = 16;
void tile_portable(const float* const* xrows, const float* panel, int64_t kc, float* c);
void tile_avx2(const float* const* xrows, const float* panel, int64_t kc, float* c);

}  // namespace mtplx::cpu::detail

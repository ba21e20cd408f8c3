// Plain C++ loops of the CPU backend that the compiler vectorizes (GDN recurrence, attention), and how they
// get wide vectors: the library is built for baseline x86-64 (SSE2), so the functions marked
// MTPLX_VECTOR_CLONES are also compiled for x86-64-v3 (AVX2 + FMA) and x86-64-v4 (AVX-512), and the loader
// picks the widest clone this CPU runs (GCC / Clang function multiversioning). Elsewhere the mark is empty.
#pragma once

#include <cstdint>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MTPLX_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MTPLX_VECTOR_CLONES
#endif

namespace mtplx::cpu {

// sum_i x[i] * y[i] as 16 interleaved partial sums added pairwise at the end. A plain running sum cannot
// be vectorized without reordering its additions (which the compiler may not do); this order vectorizes
// as written.
inline float dot_lanes(const float* x, const float* y, int64_t n) {
  constexpr int kLanes = 16;
  float part[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) part[l] += x[i + l] * y[i + l];
  for (int l = 0; i < n; ++i, ++l) part[l] += x[i] * y[i];
  for (int width = kLanes / 2; width > 0; width /= 2)
    for (int l = 0; l < width; ++l) part[l] += part[l + width];
  return part[0];
}

}  // namespace mtplx::cpu

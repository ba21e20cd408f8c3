// Plain C++ loops of the CPU backend that the compiler vectorizes (GDN recurrence, attention), and how they
// get wide vectors: the library is built for baseline x86-64 (SSE2), so the functions marked
// MTPLX_VECTOR_CLONES are also compiled for x86-64-v3 (AVX2 + FMA) and x86-64-v4 (AVX-512), and the loader
// picks the widest clone this CPU runs (GCC / Clang function multiversioning). Elsewhere the mark is empty.
#pragma once

#include <cstdint>
#include <cstring>

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

// e^x in plain arithmetic, so that loops calling it vectorize (std::exp is a library call and keeps a loop
// scalar): x = n ln2 + r with |r| <= ln2 / 2, e^r by Cephes' degree-6 expf polynomial, 2^n written into
// the exponent bits. Within 8.2e-8 relative (under one ulp) of e^x on [-87, 88]; inputs outside are clamped
// to it (so the result stays a normal float, e.g. e^-100 gives e^-87 = 1.6e-38 and e^100 gives e^88
// = 1.7e38), NaN stays NaN.
inline float exp_lanes(float x) {
  x = x > 88.0f ? 88.0f : x;  // written so that a NaN x passes through
  x = x < -87.0f ? -87.0f : x;
  // Adding 1.5 * 2^23 rounds x log2(e) to the nearest integer n, which lands in the low mantissa bits.
  constexpr float kRound = 12582912.0f;
  const float shifted = x * 1.44269504088896341f + kRound;
  const float n = shifted - kRound;
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;  // ln 2 in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  uint32_t bits = 0;
  std::memcpy(&bits, &shifted, sizeof bits);                      // 0x4b400000 + n
  const uint32_t scale_bits = (bits - 0x4b400000u + 127u) << 23;  // 2^n, n in [-126, 127]
  float scale = 0;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  return p * scale;
}

// x * sigmoid(x) and sigmoid(x) on exp_lanes.
inline float silu_lanes(float x) {
  return x / (1.0f + exp_lanes(-x));
}
inline float sigmoid_lanes(float x) {
  return 1.0f / (1.0f + exp_lanes(-x));
}

}  // namespace mtplx::cpu

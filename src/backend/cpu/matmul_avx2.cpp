// AVX2 + FMA kernels, chosen at run time. Every function that uses AVX2 carries the target attribute
// (rather than compiling the file with -mavx2) so the rest of the binary stays baseline x86-64, and all of
// them have internal linkage so no AVX2 copy of an inline function can leak into other translation units.
#include "backend/cpu/matmul_internal.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

// The "#pragma GCC unroll" lines unroll the small constant loops over accumulator arrays fully and early, so
// GCC keeps the accumulators in registers instead of storing the array to the stack on every iteration.

#define MTPLX_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace mtplx::cpu::detail {
namespace {

MTPLX_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Eight consecutive dense weights as fp32.
template <DType D>
MTPLX_AVX2 inline __m256 load8(const void* row, int64_t i) {
  if constexpr (D == DType::F32) {
    return _mm256_loadu_ps(static_cast<const float*>(row) + i);
  } else {
    const auto* p = reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + i);
    if constexpr (D == DType::BF16)  // bf16 is the top half of an fp32: widen and shift into place
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(p)), 16));
    else
      return _mm256_cvtph_ps(_mm_loadu_si128(p));
  }
}

template <DType D>
inline float load1(const void* row, int64_t i) {
  if constexpr (D == DType::F32) return static_cast<const float*>(row)[i];
  if constexpr (D == DType::BF16) return bf16_to_float(static_cast<const uint16_t*>(row)[i]);
  return f16_to_float(static_cast<const uint16_t*>(row)[i]);
}

// out[t] = dot(W row, x[t]) for one dense row and T activation rows: each weight vector is loaded once
// and used for all T. With few rows there are too few independent FMA chains to hide FMA latency, so
// small T splits each activation row over A accumulators.
template <DType D, int T>
MTPLX_AVX2 void dense_row(const void* wrow, const float* x, int64_t cols, float* out) {
  constexpr int A = T == 1 ? 4 : T <= 3 ? 2 : 1;
  __m256 acc[T][A];
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 16
    for (int u = 0; u < A; ++u) acc[t][u] = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 8 * A <= cols; c += 8 * A)
#pragma GCC unroll 16
    for (int u = 0; u < A; ++u) {
      const __m256 wv = load8<D>(wrow, c + 8 * u);
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t)
        acc[t][u] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + t * cols + c + 8 * u), acc[t][u]);
    }
  for (; c + 8 <= cols; c += 8) {
    const __m256 wv = load8<D>(wrow, c);
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) acc[t][0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + t * cols + c), acc[t][0]);
  }
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) {
#pragma GCC unroll 16
    for (int u = 1; u < A; ++u) acc[t][0] = _mm256_add_ps(acc[t][0], acc[t][u]);
    float sum = hsum(acc[t][0]);
    for (int64_t cc = c; cc < cols; ++cc) sum += load1<D>(wrow, cc) * x[t * cols + cc];
    out[t] = sum;
  }
}

// 32 codes of B bits (4 * B bytes) as 4 vectors of 8 floats, in the order of x_order_avx2():
// widen 8 bytes to 8 int32 lanes, then shift each byte's codes down and mask them.
template <int B>
MTPLX_AVX2 inline void decode32(const uint8_t* p, __m256* q) {
  constexpr int n = 8 / B;
  const __m256i mask = _mm256_set1_epi32((1 << B) - 1);
#pragma GCC unroll 16
  for (int piece = 0; piece < 4 / n; ++piece) {
    const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * piece)));
#pragma GCC unroll 16
    for (int k = 0; k < n; ++k) {
      __m256i codes = k == 0 ? v : _mm256_srli_epi32(v, k * B);
      if (k != n - 1) codes = _mm256_and_si256(codes, mask);  // the top code of a byte needs no mask
      q[piece * n + k] = _mm256_cvtepi32_ps(codes);
    }
  }
}

// Rows of a 2/4/8-bit matrix with group size G against T activation rows (x in code order).
//  T <= 2: per group accumulate sum q*x and apply the scale once per group; the bias enters as
//          sum_g bias_g * sum(x over group g), with the group sums precomputed per call. One FMA per
//          8 weights.
//  T > 2:  dequantize each vector (w = s*q + b, one FMA) and reuse it for all T rows.
template <int B, int T, int G>
MTPLX_AVX2 void quant_rows(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1,
                           std::span<float> scratch) {
  const int64_t cols = w.cols, groups = cols / G;
  const int64_t row_bytes = w.words_per_row() * 4;
  const auto* base = static_cast<const uint8_t*>(w.data);
  float* scale = scratch.data();
  float* bias = scratch.data() + groups;
  __m256 q[4];
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* codes = base + r * row_bytes;
    row_params(w, r, groups, scale, bias);
    if constexpr (T <= 2) {
      constexpr int A = 4 / T;
      __m256 total[T];
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) total[t] = _mm256_setzero_ps();
      for (int64_t g = 0; g < groups; ++g) {
        __m256 acc[T][A];
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t)
#pragma GCC unroll 16
          for (int u = 0; u < A; ++u) acc[t][u] = _mm256_setzero_ps();
#pragma GCC unroll 16
        for (int ch = 0; ch < G / 32; ++ch) {
          const int64_t c = g * G + ch * 32;
          decode32<B>(codes + c * B / 8, q);
#pragma GCC unroll 16
          for (int v = 0; v < 4; ++v)
#pragma GCC unroll 16
            for (int t = 0; t < T; ++t)
              acc[t][v % A] =
                  _mm256_fmadd_ps(q[v], _mm256_loadu_ps(a.xq + t * cols + c + 8 * v), acc[t][v % A]);
        }
        const __m256 s = _mm256_set1_ps(scale[g]);
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) {
#pragma GCC unroll 16
          for (int u = 1; u < A; ++u) acc[t][0] = _mm256_add_ps(acc[t][0], acc[t][u]);
          total[t] = _mm256_fmadd_ps(acc[t][0], s, total[t]);
        }
      }
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        const float* xs = a.xsum + t * groups;
        float bias_sum = 0;
        for (int64_t g = 0; g < groups; ++g) bias_sum += bias[g] * xs[g];
        a.y[t * w.rows + r] = hsum(total[t]) + bias_sum;
      }
    } else {
      constexpr int A = T <= 4 ? 2 : 1;
      __m256 acc[T][A];
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t)
#pragma GCC unroll 16
        for (int u = 0; u < A; ++u) acc[t][u] = _mm256_setzero_ps();
      for (int64_t g = 0; g < groups; ++g) {
        const __m256 s = _mm256_set1_ps(scale[g]);
        const __m256 b = _mm256_set1_ps(bias[g]);
#pragma GCC unroll 16
        for (int ch = 0; ch < G / 32; ++ch) {
          const int64_t c = g * G + ch * 32;
          decode32<B>(codes + c * B / 8, q);
#pragma GCC unroll 16
          for (int v = 0; v < 4; ++v) {
            const __m256 wv = _mm256_fmadd_ps(q[v], s, b);
#pragma GCC unroll 16
            for (int t = 0; t < T; ++t)
              acc[t][v % A] =
                  _mm256_fmadd_ps(wv, _mm256_loadu_ps(a.xq + t * cols + c + 8 * v), acc[t][v % A]);
          }
        }
      }
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
#pragma GCC unroll 16
        for (int u = 1; u < A; ++u) acc[t][0] = _mm256_add_ps(acc[t][0], acc[t][u]);
        a.y[t * w.rows + r] = hsum(acc[t][0]);
      }
    }
  }
}

template <int B, int T>
MTPLX_AVX2 void quant_rows(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1,
                           std::span<float> scratch) {
  if (w.group_size == 64) return quant_rows<B, T, 64>(w, a, r0, r1, scratch);
  if (w.group_size == 128) return quant_rows<B, T, 128>(w, a, r0, r1, scratch);
  return quant_rows<B, T, 32>(w, a, r0, r1, scratch);
}

template <DType D, int T>
MTPLX_AVX2 void dense_rows(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1) {
  const auto* base = static_cast<const uint8_t*>(w.data);
  const int64_t row_bytes = w.cols * static_cast<int64_t>(D == DType::F32 ? 4 : 2);
  float out[T];
  for (int64_t r = r0; r < r1; ++r) {
    dense_row<D, T>(base + r * row_bytes, a.x, w.cols, out);
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) a.y[t * w.rows + r] = out[t];
  }
}

template <int T>
MTPLX_AVX2 void rows_t(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1,
                       std::span<float> scratch) {
  if (!w.quantized()) {
    if (w.dtype == DType::BF16) return dense_rows<DType::BF16, T>(w, a, r0, r1);
    if (w.dtype == DType::F16) return dense_rows<DType::F16, T>(w, a, r0, r1);
    return dense_rows<DType::F32, T>(w, a, r0, r1);
  }
  if (w.bits == 4) return quant_rows<4, T>(w, a, r0, r1, scratch);
  if (w.bits == 8) return quant_rows<8, T>(w, a, r0, r1, scratch);
  if (w.bits == 2) return quant_rows<2, T>(w, a, r0, r1, scratch);
  // 3/5/6/7 bits: codes straddle words, so dequantize the row with the scalar bit reader into L1 scratch and
  // run the fp32 row kernel on it; the packed bytes are still read once for all T.
  float out[T];
  for (int64_t r = r0; r < r1; ++r) {
    dequantize_span(w, r, 0, scratch.first(static_cast<size_t>(w.cols)));
    dense_row<DType::F32, T>(scratch.data(), a.x, w.cols, out);
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) a.y[t * w.rows + r] = out[t];
  }
}

MTPLX_AVX2 void tile_kernel(const float* const* xrows, const float* panel, int64_t kc, float* c) {
  static_assert(kTileM == 6 && kTileN == 16,
                "the register tile is 6 x 16: 12 accumulators + 2 panel vectors");
  __m256 acc[kTileM][2];
  const float* xr[kTileM];
#pragma GCC unroll 16
  for (int i = 0; i < kTileM; ++i) {
    xr[i] = xrows[i];
    acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(panel + k * kTileN);
    const __m256 b1 = _mm256_loadu_ps(panel + k * kTileN + 8);
#pragma GCC unroll 16
    for (int i = 0; i < kTileM; ++i) {
      const __m256 xv = _mm256_broadcast_ss(xr[i] + k);
      acc[i][0] = _mm256_fmadd_ps(xv, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(xv, b1, acc[i][1]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < kTileM; ++i) {
    _mm256_storeu_ps(c + i * kTileN, acc[i][0]);
    _mm256_storeu_ps(c + i * kTileN + 8, acc[i][1]);
  }
}

}  // namespace

void rows_avx2(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1, std::span<float> scratch) {
  with_row_count(a.T, [&]<int T>() { rows_t<T>(w, a, r0, r1, scratch); });
}

void tile_avx2(const float* const* xrows, const float* panel, int64_t kc, float* c) {
  tile_kernel(xrows, panel, kc, c);
}

XOrder x_order_avx2(const WeightMatrix& w) {
  if (w.bits == 2 || w.bits == 4 || w.bits == 8) return {8, 8 / w.bits};
  return {};
}

}  // namespace mtplx::cpu::detail

#else  // not x86: never selected (isa_supported(Isa::Avx2) is false); defined so the library links.

namespace mtplx::cpu::detail {
void rows_avx2(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1, std::span<float> scratch) {
  rows_portable(w, a, r0, r1, scratch);
}
void tile_avx2(const float* const* xrows, const float* panel, int64_t kc, float* c) {
  tile_portable(xrows, panel, kc, c);
}
XOrder x_order_avx2(const WeightMatrix&) {
  return {};
}
}  // namespace mtplx::cpu::detail

#endif

// QuantDot::Int8: 4- and 8-bit affine weights (group size 64 or 128) times activations rounded to int8,
// with AVX-512 VNNI integer dot products.
//
// Why: this core retires about one 512-bit instruction per cycle, and the exact kernels spend two to four
// of them per 16 weights (widen or permute, convert, FMA), so one core tops out near 17 G multiply-adds/s,
// about half of what memory delivers for 4-bit weights. VPDPBUSD multiplies 64 unsigned bytes (the codes:
// 8-bit as stored, 4-bit after a mask or a shift) with 64 signed bytes and adds each four into one of 16
// int32 lanes: 64 multiply-adds in one instruction.
//
// Numerics: each activation row is rounded to the int8 grid of its 64-column blocks, x^_c = d_j * xi_c
// with xi_c = round(x_c * 127 / max|x|) in [-127, 127] and d_j = max|x| / 127 over block j, and the kernels
// compute W x^ with W as stored: sum_c (s q_c + b) x^_c = s d_j sum_c q_c xi_c + b d_j sum_c xi_c. Each x
// moves by at most d_j / 2, so |y - W x| <= sum_c |w_c| d_j / 2. (The bias term uses the rounded sums
// too: with the exact sums the offset b, about -8 s for 4-bit codes, would multiply the rounding errors.)
// The integer sums are exact and every (weight row, activation row) pair runs the same operations in the
// same order whatever T is, so decode and the verify widths give identical rows.
//
// Layout of xi (per activation row, whole 128-column pairs of blocks, zero-padded): 8-bit codes read
// it in natural order; 4-bit codes load the 64 bytes of a pair of blocks at once and split them into low
// nibbles (even columns) and high nibbles (odd columns), so a pair is stored as [even columns of block
// 2k, even of block 2k + 1, odd of 2k, odd of 2k + 1], 32 bytes each.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/matmul_internal.h"

namespace mtplx::cpu::detail {

bool int8_format(const WeightMatrix& w) {
  return w.quantized() && (w.bits == 4 || w.bits == 8) && (w.group_size == 64 || w.group_size == 128);
}

void int8_x_layout(const WeightMatrix& w, int64_t& stride, int64_t& blocks) {
  blocks = (w.cols + 127) / 128 * 2;
  stride = blocks * 64;
}

}  // namespace mtplx::cpu::detail

#if defined(__x86_64__) || defined(__i386__)

// GCC 12's AVX-512 intrinsics warn about their own undefined merge operands (see matmul_avx512.cpp).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#define MTPLX_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,gfni,avx2,fma,f16c")))
// Helpers that take accumulator arrays by reference must be inlined, or the arrays live on the stack.
#define MTPLX_VNNI_INLINE MTPLX_VNNI inline __attribute__((always_inline))

namespace mtplx::cpu::detail {
namespace {

MTPLX_VNNI_INLINE float hsum(__m512 v) {
  const __m512 folded = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4e));
  __m128 s =
      _mm_add_ps(_mm512_castps512_ps128(folded), _mm256_extractf128_ps(_mm512_castps512_ps256(folded), 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 16 floats times `inverse`, rounded to nearest (even) and saturated to int8, stored at out.
MTPLX_VNNI_INLINE void store_int8(int8_t* out, __m512 v, __m512 inverse) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out),
                   _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v, inverse))));
}

// One 64-column block of x (v[0..3] = columns 0..15, .., 48..63) into its place in xi; returns its scale d
// and sets `sum` to the block's sum of rounded values, d * sum(xi).
template <int B>
MTPLX_VNNI_INLINE float quantize_block(const __m512 (&v)[4], int8_t* pair, int half, float& sum) {
  const __m512 magnitude = _mm512_max_ps(_mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1])),
                                         _mm512_max_ps(_mm512_abs_ps(v[2]), _mm512_abs_ps(v[3])));
  // A NaN or an infinity anywhere makes the block's scale NaN, so the products are NaN as in fp32 (max
  // would drop a NaN operand).
  const __m512 finite_limit = _mm512_set1_ps(3.4028235e38f);
  const __mmask16 finite = _mm512_cmp_ps_mask(_mm512_abs_ps(v[0]), finite_limit, _CMP_LE_OQ) &
                           _mm512_cmp_ps_mask(_mm512_abs_ps(v[1]), finite_limit, _CMP_LE_OQ) &
                           _mm512_cmp_ps_mask(_mm512_abs_ps(v[2]), finite_limit, _CMP_LE_OQ) &
                           _mm512_cmp_ps_mask(_mm512_abs_ps(v[3]), finite_limit, _CMP_LE_OQ);
  const float largest = _mm512_reduce_max_ps(magnitude);
  if (finite != 0xffff) return sum = std::nanf("");
  const __m512 inverse = _mm512_set1_ps(largest > 0 ? 127.0f / largest : 0.0f);
  __m512i total = _mm512_setzero_si512();
  for (int i = 0; i < 4; ++i)
    total = _mm512_add_epi32(total, _mm512_cvtps_epi32(_mm512_mul_ps(v[i], inverse)));
  const float scale = largest / 127.0f;
  sum = scale * static_cast<float>(_mm512_reduce_add_epi32(total));
  if constexpr (B == 8) {
    for (int i = 0; i < 4; ++i) store_int8(pair + half * 64 + 16 * i, v[i], inverse);
  } else {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    int8_t* evens = pair + half * 32;
    int8_t* odds = pair + 64 + half * 32;
    store_int8(evens, _mm512_permutex2var_ps(v[0], even, v[1]), inverse);
    store_int8(evens + 16, _mm512_permutex2var_ps(v[2], even, v[3]), inverse);
    store_int8(odds, _mm512_permutex2var_ps(v[0], odd, v[1]), inverse);
    store_int8(odds + 16, _mm512_permutex2var_ps(v[2], odd, v[3]), inverse);
  }
  return scale;
}

template <int B>
MTPLX_VNNI void quantize_rows(const WeightMatrix& w, const float* x, int64_t T, int8_t* xi, float* xi_scale,
                              float* group_sum) {
  int64_t stride = 0, blocks = 0;
  int8_x_layout(w, stride, blocks);
  const int64_t cols = w.cols, per_group = w.group_size / 64, groups = cols / w.group_size;
  for (int64_t t = 0; t < T; ++t) {
    int8_t* row = xi + t * stride;
    float* scale = xi_scale + t * blocks;
    for (int64_t g = 0; g < groups; ++g) group_sum[t * groups + g] = 0.0f;
    for (int64_t j = 0; j < blocks; ++j) {
      const float* xb = x + t * cols + j * 64;
      const __m512 zero = _mm512_setzero_ps();
      const bool padding = j * 64 >= cols;  // zero codes and scale
      const __m512 v[4] = {padding ? zero : _mm512_loadu_ps(xb), padding ? zero : _mm512_loadu_ps(xb + 16),
                           padding ? zero : _mm512_loadu_ps(xb + 32),
                           padding ? zero : _mm512_loadu_ps(xb + 48)};
      float sum = 0;
      scale[j] = quantize_block<B>(v, row + (j / 2) * 128, static_cast<int>(j % 2), sum);
      if (!padding) group_sum[t * groups + j / per_group] += sum;
    }
  }
}

// Up to 16 scales or biases (elements [i, i + count) of `base`) as fp32 lanes, zero past count.
MTPLX_VNNI_INLINE __m512 load_params(const void* base, DType type, int64_t i, int count) {
  const __mmask16 mask = count >= 16 ? __mmask16(0xffff) : __mmask16((1u << count) - 1);
  if (type == DType::F32) return _mm512_maskz_loadu_ps(mask, static_cast<const float*>(base) + i);
  const __m256i halves = _mm256_maskz_loadu_epi16(mask, static_cast<const uint16_t*>(base) + i);
  if (type == DType::F16) return _mm512_cvtph_ps(halves);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(halves), 16));  // BF16
}

// Per weight row, before the block loop: sd[t * blocks + j] = weight scale of block j * x scale of (t, j),
// and the bias term sum_g bias_g * xsum[t, g] of each activation row (xsum: sums of the rounded x), 16 groups
// per step, as 16 lanes that the caller adds to its accumulators before their one horizontal sum.
template <int T, int G>
MTPLX_VNNI_INLINE void row_terms(const WeightMatrix& w, const RowArgs& a, int64_t r, float* sd,
                                 __m512 (&bias_acc)[T]) {
  const int64_t groups = w.cols / G, blocks = a.xi_blocks;
  if (a.prefetch) prefetch_row_params(w, r);
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) bias_acc[t] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; g += 16) {
    const int count = static_cast<int>(std::min<int64_t>(16, groups - g));
    const __mmask16 mask = count >= 16 ? __mmask16(0xffff) : __mmask16((1u << count) - 1);
    const __m512 scale = load_params(w.scales, w.scale_dtype, r * groups + g, count);
    const __m512 bias = load_params(w.biases, w.scale_dtype, r * groups + g, count);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      bias_acc[t] = _mm512_fmadd_ps(bias, _mm512_maskz_loadu_ps(mask, a.xsum + t * groups + g), bias_acc[t]);
      if constexpr (G == 64) {
        const __m512 xs = _mm512_maskz_loadu_ps(mask, a.xi_scale + t * blocks + g);
        _mm512_mask_storeu_ps(sd + t * blocks + g, mask, _mm512_mul_ps(scale, xs));
      } else {  // a group spans two blocks
        alignas(64) float scales[16];
        _mm512_store_ps(scales, scale);
        for (int i = 0; i < count; ++i)
          for (int k = 0; k < 2; ++k) {
            const int64_t j = (g + i) * 2 + k;
            sd[t * blocks + j] = scales[i] * a.xi_scale[t * blocks + j];
          }
      }
    }
  }
  // Padding blocks (a matrix with an odd number of blocks) multiply zero codes; keep their factor finite.
  if (w.cols / 64 < blocks)
    for (int t = 0; t < T; ++t) sd[t * blocks + blocks - 1] = 0.0f;
}

// Horizontal sums of four vectors, as [sum a, sum b, sum c, sum d]. The additions pair up exactly as in
// hsum (halves, then quarters, then within the quarter), so a row's result does not depend on whether it
// was reduced alone or with three others.
MTPLX_VNNI_INLINE __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
  const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
  const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xee));
  // Quarters [a02, b02, c02, d02] + [a13, b13, c13, d13] (a02: quarters 0 + 2 of a).
  const __m512 q = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xdd));
  const __m512 pairs = _mm512_add_ps(q, _mm512_permute_ps(q, 0x4e));  // lane 0: q0 + q2, lane 1: q1 + q3
  const __m512 sums = _mm512_add_ps(pairs, _mm512_permute_ps(pairs, 0xb1));  // lane 0: (q0 + q2) + (q1 + q3)
  return _mm512_castps512_ps128(
      _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), sums));
}

// Accumulators of one weight row x T activation rows, two each (even and odd steps) so that consecutive
// FMAs overlap. Every (weight row, activation row) pair sees the same operations in the same order for
// any T.
template <int T>
using Acc = __m512[T][2];

// 8-bit codes: block j (64 codes, one vector) against the T activation rows, into accumulator slot S.
template <int T, int S>
MTPLX_VNNI_INLINE void q8_step(const uint8_t* codes, const RowArgs& a, const float* sd, int64_t j,
                               Acc<T>& acc) {
  if (a.prefetch) prefetch_ahead(codes + j * 64);
  const __m512i q = _mm512_loadu_si512(codes + j * 64);
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    const __m512i xv = _mm512_loadu_si512(a.xi + t * a.xi_stride + j * 64);
    const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, xv);
    acc[t][S] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(sd[t * a.xi_blocks + j]), acc[t][S]);
  }
}

// The high nibble of every byte, in one instruction: GF2P8AFFINEQB with the bit matrix of a right shift
// by 4 (result bit i = source bit i + 4 for i < 4). Replaces a shift and a mask.
MTPLX_VNNI_INLINE __m512i high_nibbles(__m512i bytes) {
  return _mm512_gf2p8affine_epi64_epi8(bytes, _mm512_set1_epi64(0x1020408000000000ll), 0);
}

// 4-bit codes: the pair of blocks 2k, 2k + 1 (64 bytes) against the T activation rows. Lanes 0..7 of the
// integer dot belong to block 2k, lanes 8..15 to block 2k + 1. `half` loads only block 2k (the last pair
// of a matrix with an odd number of blocks: the next 32 bytes are another row or past the mapping).
template <int T, int S>
MTPLX_VNNI_INLINE void q4_step(const uint8_t* codes, const RowArgs& a, const float* sd, int64_t k, bool half,
                               Acc<T>& acc) {
  const uint8_t* p = codes + k * 64;
  if (a.prefetch) prefetch_ahead(p);
  const __m512i bytes = half ? _mm512_maskz_loadu_epi8(0xffffffffull, p) : _mm512_loadu_si512(p);
  const __m512i low = _mm512_and_si512(bytes, _mm512_set1_epi8(0x0f));
  const __m512i high = high_nibbles(bytes);
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    const int8_t* xv = a.xi + t * a.xi_stride + k * 128;
    __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), low, _mm512_loadu_si512(xv));
    dot = _mm512_dpbusd_epi32(dot, high, _mm512_loadu_si512(xv + 64));
    const float* f = sd + t * a.xi_blocks + 2 * k;
    const __m512 factor = _mm512_mask_broadcastss_ps(_mm512_set1_ps(f[0]), 0xff00, _mm_load_ss(f + 1));
    acc[t][S] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), factor, acc[t][S]);
  }
}

// Row r of a B-bit matrix with group size G against T activation rows: sum[t] holds 16 lanes whose total
// is y[t, r]. The step loop is unrolled by two so that every accumulator index is a compile-time constant
// (a runtime index would keep the array in memory).
template <int B, int T, int G>
MTPLX_VNNI_INLINE void int8_row(const WeightMatrix& w, const RowArgs& a, int64_t r, float* sd,
                                __m512 (&sum)[T]) {
  const int64_t row_bytes = w.words_per_row() * 4;
  const int64_t blocks = w.cols / 64;  // real blocks, without padding
  const auto* codes = static_cast<const uint8_t*>(w.data) + r * row_bytes;
  Acc<T> acc;
  row_terms<T, G>(w, a, r, sd, sum);
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    acc[t][0] = sum[t];  // the bias term starts the first accumulator
    acc[t][1] = _mm512_setzero_ps();
  }
  if constexpr (B == 8) {
    int64_t j = 0;
    for (; j + 2 <= blocks; j += 2) {
      q8_step<T, 0>(codes, a, sd, j, acc);
      q8_step<T, 1>(codes, a, sd, j + 1, acc);
    }
    if (j < blocks) q8_step<T, 0>(codes, a, sd, j, acc);
  } else {
    const int64_t pairs = blocks / 2;
    int64_t k = 0;
    for (; k + 2 <= pairs; k += 2) {
      q4_step<T, 0>(codes, a, sd, k, false, acc);
      q4_step<T, 1>(codes, a, sd, k + 1, false, acc);
    }
    if (k < pairs) q4_step<T, 0>(codes, a, sd, k++, false, acc);
    if (blocks % 2) q4_step<T, 0>(codes, a, sd, k, true, acc);
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) sum[t] = _mm512_add_ps(acc[t][0], acc[t][1]);
}

// Rows [r0, r1), one at a time: streaming one row after another keeps DRAM reads sequential (four rows
// interleaved measured 1.3-1.5x slower from memory). For T <= 2 the horizontal sums of four consecutive
// rows are done together, which takes fewer instructions than four single sums and gives the same bits.
template <int B, int T, int G>
MTPLX_VNNI void int8_rows(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1,
                          std::span<float> scratch) {
  float* sd = scratch.data();  // T * xi_blocks <= 8 * ((cols + 127) / 64) floats
  int64_t r = r0;
  if constexpr (T <= 2)
    for (; r + 4 <= r1; r += 4) {
      __m512 sums[4][T];
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) int8_row<B, T, G>(w, a, r + i, sd, sums[i]);
#pragma GCC unroll 2
      for (int t = 0; t < T; ++t)
        _mm_storeu_ps(a.y + t * w.rows + r, hsum4(sums[0][t], sums[1][t], sums[2][t], sums[3][t]));
    }
  for (; r < r1; ++r) {
    __m512 sums[T];
    int8_row<B, T, G>(w, a, r, sd, sums);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) a.y[t * w.rows + r] = hsum(sums[t]);
  }
}

template <int B, int G>
MTPLX_VNNI void int8_rows_t(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1,
                            std::span<float> scratch) {
  with_row_count(a.T, [&]<int T>() { int8_rows<B, T, G>(w, a, r0, r1, scratch); });
}

}  // namespace

void quantize_x_int8(const WeightMatrix& w, const float* x, int64_t T, int8_t* xi, float* xi_scale,
                     float* group_sum) {
  if (w.bits == 8) return quantize_rows<8>(w, x, T, xi, xi_scale, group_sum);
  quantize_rows<4>(w, x, T, xi, xi_scale, group_sum);
}

void rows_int8(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1, std::span<float> scratch) {
  if (w.bits == 8) {
    if (w.group_size == 64) return int8_rows_t<8, 64>(w, a, r0, r1, scratch);
    return int8_rows_t<8, 128>(w, a, r0, r1, scratch);
  }
  if (w.group_size == 64) return int8_rows_t<4, 64>(w, a, r0, r1, scratch);
  return int8_rows_t<4, 128>(w, a, r0, r1, scratch);
}

}  // namespace mtplx::cpu::detail

#else  // not x86: never selected (int8_dot_supported() is false); defined so the library links.

namespace mtplx::cpu::detail {
void quantize_x_int8(const WeightMatrix&, const float*, int64_t, int8_t*, float*, float*) {}
void rows_int8(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1, std::span<float> scratch) {
  rows_portable(w, a, r0, r1, scratch);
}
}  // namespace mtplx::cpu::detail

#endif

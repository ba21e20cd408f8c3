// QuantDot::Int8 on AVX2 CPUs without AVX-512 VNNI: the same tiles (cpu::with_int8_tiles), the same
// rounded activations and the same numbers as the VNNI kernel of matmul_int8.cpp, with 256-bit VPDPBUSD
// where the CPU has AVX-VNNI (block_dots_vnni), else VPMADDUBSW and VPMADDWD (block_dots).
//
// VPMADDUBSW multiplies 32 unsigned bytes with 32 signed bytes and adds each two neighbours into a
// saturating int16. Products of a nibble (0..15) and a rounded activation (-127..127) stay within 1,905, so
// a pair within 3,810 and eight pairs within 30,480: a chain of eight words adds in int16 without
// saturating, and VPMADDWD with ones (or sixteens) then widens it to the four-byte sums of a word. So
// 4-bit codes run as their low and high nibbles (as in the VNNI kernel), and 8-bit codes, whose bytes
// would saturate (255 x 127 x 2 > 32,767), as q = l + 16 h with l, h their nibbles. The integer sums are
// exact, and every output then takes the VNNI kernel's float operations in its order: the two kernels give
// bit-identical results.
//
// A tile's 16 rows are two vectors of 8 here (see int8_tiles for when both go in one pass). No software
// prefetch (MatmulOptions::prefetch is ignored): asking for the next tile's lines measured 10-25% slower
// in a decode step.
#include "backend/cpu/matmul_internal.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#define MTPLX_INT8_AVX2 __attribute__((target("avx2,fma,f16c")))
// Helpers that take accumulator arrays by reference must be inlined, or the arrays live on the stack.
#define MTPLX_INT8_AVX2_INLINE MTPLX_INT8_AVX2 inline __attribute__((always_inline))
// The tile loop and the dot helpers of both forms: VEX VPDPBUSD enters only through DpbusdAdd.
#define MTPLX_INT8_AVXVNNI __attribute__((target("avx2,fma,f16c,avxvnni")))
#define MTPLX_INT8_AVXVNNI_INLINE MTPLX_INT8_AVXVNNI inline __attribute__((always_inline))

namespace mtplx::cpu::detail {
namespace {

constexpr int kHalf = 8;  // rows of a tile per vector

// One 64-column block of x rounded into `out` (64 bytes, in the order of the B-bit words) exactly as the
// VNNI kernel's quantize_block does; returns its scale d and sets `sum` to d * sum(xi) (NaN for a NaN or
// an infinity anywhere in the block).
template <int B>
MTPLX_INT8_AVX2 float quantize_block(const float* x, int8_t* out, float& sum) {
  const __m256 sign = _mm256_set1_ps(-0.0f), finite_limit = _mm256_set1_ps(3.4028235e38f);
  __m256 v[8], magnitude = _mm256_setzero_ps();
  int finite = 0xff;
  for (int i = 0; i < 8; ++i) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    const __m256 a = _mm256_andnot_ps(sign, v[i]);
    finite &= _mm256_movemask_ps(_mm256_cmp_ps(a, finite_limit, _CMP_LE_OQ));
    magnitude = _mm256_max_ps(magnitude, a);
  }
  if (finite != 0xff) return sum = std::nanf("");
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(magnitude), _mm256_extractf128_ps(magnitude, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  const float largest = _mm_cvtss_f32(m);
  const __m256 inverse = _mm256_set1_ps(largest > 0 ? 127.0f / largest : 0.0f);
  // 4-bit words: per 8 columns the even ones (low nibbles), then the odd ones (high nibbles).
  const __m256i word_order =
      B == 8 ? _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7) : _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  __m256i total = _mm256_setzero_si256();
  alignas(32) int32_t rounded[64];
  for (int i = 0; i < 8; ++i) {
    const __m256i r = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], inverse));  // |r| <= 127: no saturation
    total = _mm256_add_epi32(total, r);
    _mm256_store_si256(reinterpret_cast<__m256i*>(rounded + 8 * i),
                       _mm256_permutevar8x32_epi32(r, word_order));
  }
  for (int i = 0; i < 64; ++i) out[i] = static_cast<int8_t>(rounded[i]);
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), total);
  int32_t integer_sum = 0;
  for (int32_t lane : lanes) integer_sum += lane;
  const float scale = largest / 127.0f;
  sum = scale * static_cast<float>(integer_sum);
  return scale;
}

template <int B>
MTPLX_INT8_AVX2 void quantize_rows(const WeightMatrix& w, const float* x, int64_t T, int8_t* xi,
                                   float* xi_scale, float* group_sum) {
  const int64_t cols = w.cols, blocks = cols / 64, per_group = w.group_size / 64,
                groups = cols / w.group_size;
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t g = 0; g < groups; ++g) group_sum[t * groups + g] = 0.0f;
    for (int64_t j = 0; j < blocks; ++j) {
      float sum = 0;
      xi_scale[t * blocks + j] = quantize_block<B>(x + t * cols + j * 64, xi + t * cols + j * 64, sum);
      group_sum[t * groups + j / per_group] += sum;
    }
  }
}

// The 8 scales or biases of half h of a tile's group parameters as fp32.
template <bool kBf16>
MTPLX_INT8_AVX2_INLINE __m256 half_params(const std::byte* params, int h) {
  if constexpr (kBf16) {
    const auto* p = reinterpret_cast<const __m128i*>(params + h * kHalf * 2);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(p)), 16));
  } else {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(params) + h * kHalf);
  }
}

// Four bytes of x (one word's columns) in every lane.
MTPLX_INT8_AVX2_INLINE __m256i broadcast_word(const int8_t* x) {
  int32_t word = 0;
  std::memcpy(&word, x, sizeof word);
  return _mm256_set1_epi32(word);
}

// Low and high nibbles of 32 code bytes.
MTPLX_INT8_AVX2_INLINE void nibbles(const uint8_t* p, __m256i& low, __m256i& high) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i mask = _mm256_set1_epi8(0x0f);
  low = _mm256_and_si256(v, mask);
  high = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
}

// The two ways to add the four-byte products of codes q (u8) and activations x (s8) into a lane: VPMADDUBSW
// into int16 pairs (saturating: the callers keep their chains short enough), or VPDPBUSD into int32.
struct MaddubsAdd {
  MTPLX_INT8_AVX2_INLINE __m256i operator()(__m256i acc, __m256i q, __m256i x) const {
    return _mm256_add_epi16(acc, _mm256_maddubs_epi16(q, x));
  }
};
struct DpbusdAdd {
  MTPLX_INT8_AVXVNNI_INLINE __m256i operator()(__m256i acc, __m256i q, __m256i x) const {
    return _mm256_dpbusd_avx_epi32(acc, q, x);
  }
};

// A 64-column block of 4-bit codes (`codes`: its words of the tile) times the T activation rows for H
// halves of the tile from the one `codes` points into: low nibbles (even columns) into even, high ones into
// odd, eight words each. `x` points at the block's bytes of activation row 0.
template <int T, int H, typename Add>
MTPLX_INT8_AVXVNNI_INLINE void nibble_dots(const uint8_t* codes, const int8_t* x, int64_t x_stride, Add add,
                                           __m256i (&even)[T][H], __m256i (&odd)[T][H]) {
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 2
    for (int i = 0; i < H; ++i) even[t][i] = odd[t][i] = _mm256_setzero_si256();
#pragma GCC unroll 8
  for (int k = 0; k < 8; ++k) {
    __m256i low[H], high[H];
#pragma GCC unroll 2
    for (int i = 0; i < H; ++i) nibbles(codes + k * 64 + i * 32, low[i], high[i]);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const int8_t* xw = x + t * x_stride + k * 8;
      const __m256i xe = broadcast_word(xw), xo = broadcast_word(xw + 4);
#pragma GCC unroll 2
      for (int i = 0; i < H; ++i) {
        even[t][i] = add(even[t][i], low[i], xe);
        odd[t][i] = add(odd[t][i], high[i], xo);
      }
    }
  }
}

// The integer dot products of one 64-column block with the T activation rows for H halves of the tile from
// the one `codes` points into: dot[t][i] lane r = sum over the block of q (row r of that half) xi (row t),
// with VPMADDUBSW. Each int16 chain adds at most eight words (see the header).
template <int B, int T, int H>
MTPLX_INT8_AVXVNNI_INLINE void block_dots(const uint8_t* codes, const int8_t* x, int64_t x_stride,
                                          __m256i (&dot)[T][H]) {
  const __m256i ones = _mm256_set1_epi16(1);
  if constexpr (B == 4) {
    __m256i even[T][H], odd[T][H];
    nibble_dots<T, H>(codes, x, x_stride, MaddubsAdd{}, even, odd);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t)
#pragma GCC unroll 2
      for (int i = 0; i < H; ++i)
        dot[t][i] = _mm256_add_epi32(_mm256_madd_epi16(even[t][i], ones), _mm256_madd_epi16(odd[t][i], ones));
  } else {
    // q = l + 16 h: the low and the high nibbles of each byte against the same four activations.
    const __m256i sixteens = _mm256_set1_epi16(16);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t)
#pragma GCC unroll 2
      for (int i = 0; i < H; ++i) dot[t][i] = _mm256_setzero_si256();
    for (int k0 = 0; k0 < 16; k0 += 8) {  // two chains of eight words
      __m256i low_sum[T][H], high_sum[T][H];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t)
#pragma GCC unroll 2
        for (int i = 0; i < H; ++i) low_sum[t][i] = high_sum[t][i] = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (int k = k0; k < k0 + 8; ++k) {
        __m256i low[H], high[H];
#pragma GCC unroll 2
        for (int i = 0; i < H; ++i) nibbles(codes + k * 64 + i * 32, low[i], high[i]);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const __m256i xb = broadcast_word(x + t * x_stride + k * 4);
#pragma GCC unroll 2
          for (int i = 0; i < H; ++i) {
            low_sum[t][i] = MaddubsAdd{}(low_sum[t][i], low[i], xb);
            high_sum[t][i] = MaddubsAdd{}(high_sum[t][i], high[i], xb);
          }
        }
      }
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t)
#pragma GCC unroll 2
        for (int i = 0; i < H; ++i)
          dot[t][i] =
              _mm256_add_epi32(dot[t][i], _mm256_add_epi32(_mm256_madd_epi16(low_sum[t][i], ones),
                                                           _mm256_madd_epi16(high_sum[t][i], sixteens)));
    }
  }
}

// block_dots with AVX-VNNI (VEX VPDPBUSD: four u8 x s8 products into an int32 lane, no saturation), on
// CPUs that have it without AVX-512 VNNI: 8-bit codes go as they are, 4-bit ones as nibbles. The same
// exact sums as block_dots.
template <int B, int T, int H>
MTPLX_INT8_AVXVNNI_INLINE void block_dots_vnni(const uint8_t* codes, const int8_t* x, int64_t x_stride,
                                               __m256i (&dot)[T][H]) {
  __m256i even[T][H], odd[T][H];
  if constexpr (B == 4) {
    nibble_dots<T, H>(codes, x, x_stride, DpbusdAdd{}, even, odd);
  } else {
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t)
#pragma GCC unroll 2
      for (int i = 0; i < H; ++i) even[t][i] = odd[t][i] = _mm256_setzero_si256();
#pragma GCC unroll 16
    for (int k = 0; k < 16; k += 2) {  // even and odd words in two chains
      __m256i v0[H], v1[H];
#pragma GCC unroll 2
      for (int i = 0; i < H; ++i) {
        v0[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + k * 64 + i * 32));
        v1[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + k * 64 + 64 + i * 32));
      }
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const int8_t* xw = x + t * x_stride + k * 4;
        const __m256i x0 = broadcast_word(xw), x1 = broadcast_word(xw + 4);
#pragma GCC unroll 2
        for (int i = 0; i < H; ++i) {
          even[t][i] = DpbusdAdd{}(even[t][i], v0[i], x0);
          odd[t][i] = DpbusdAdd{}(odd[t][i], v1[i], x1);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 2
    for (int i = 0; i < H; ++i) dot[t][i] = _mm256_add_epi32(even[t][i], odd[t][i]);
}

// Lanes of half h that hold real rows of a tile with `valid` of them, as a maskload/maskstore mask.
MTPLX_INT8_AVX2_INLINE __m256i lane_mask(int64_t valid, int h) {
  const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(valid) - h * kHalf), index);
}

// Tiles [tile0, tile1) of a B-bit matrix against T activation rows, panel after panel; between panels a
// tile's sums wait in y (stored and reloaded exactly), as in the VNNI kernel. H halves of a tile per pass:
// both up to 4 activation rows (each x broadcast serves both, and each line is read in one go), one at a
// time from 5 rows on, where the accumulators of both no longer fit the 16 registers (the second half then
// finds the panel's lines in L1). Measured (bench_matmul, q4/q8 3584 x 1024, 2 threads): both halves
// 6-17% faster at 2-4 rows, 5-17% slower at 5-8.
template <int B, int T, bool kBf16, bool kVnni>
MTPLX_INT8_AVXVNNI void int8_tiles(const WeightMatrix& w, const RowArgs& a, int64_t tile0, int64_t tile1) {
  constexpr int H = T <= 4 ? 2 : 1;
  const Int8TileLayout l = int8_tile_layout(w);
  const int64_t block_bytes = 64 * B * kInt8TileRows / 8, per_group = w.group_size / 64;
  for (int64_t g0 = 0; g0 < l.groups; g0 += l.panel_groups) {
    const int64_t g1 = std::min(l.groups, g0 + l.panel_groups);
    for (int64_t tile = tile0; tile < tile1; ++tile) {
      const std::byte* panel = w.tiles.get() + l.group_offset(tile, g0);
      const int64_t r0 = tile * kInt8TileRows;
      const int64_t valid = std::min(kInt8TileRows, w.rows - r0);
      for (int h0 = 0; h0 * kHalf < valid; h0 += H) {
        __m256i mask[H];
        __m256 acc[T][H];
        float* y = a.y + r0 + h0 * kHalf;
#pragma GCC unroll 2
        for (int i = 0; i < H; ++i) {
          mask[i] = lane_mask(valid, h0 + i);
#pragma GCC unroll 8
          for (int t = 0; t < T; ++t)
            acc[t][i] =
                g0 == 0 ? _mm256_setzero_ps() : _mm256_maskload_ps(y + t * w.rows + i * kHalf, mask[i]);
        }
        for (int64_t j = g0 * per_group; j < g1 * per_group; ++j) {  // blocks of 64 columns
          const int64_t g = j / per_group;
          const std::byte* group = panel + (g - g0) * l.group_bytes;
          const std::byte* scales = group + l.group_code_bytes;
          __m256i dot[T][H];
          const uint8_t* codes =
              reinterpret_cast<const uint8_t*>(group) + (j % per_group) * block_bytes + h0 * 32;
          if constexpr (kVnni)
            block_dots_vnni<B, T, H>(codes, a.xi + j * 64, a.xi_stride, dot);
          else
            block_dots<B, T, H>(codes, a.xi + j * 64, a.xi_stride, dot);
#pragma GCC unroll 2
          for (int i = 0; i < H; ++i) {
            const __m256 scale = half_params<kBf16>(scales, h0 + i);
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) {
              const __m256 sd = _mm256_mul_ps(scale, _mm256_set1_ps(a.xi_scale[t * a.xi_blocks + j]));
              acc[t][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[t][i]), sd, acc[t][i]);
            }
          }
          if ((j + 1) % per_group == 0) {  // the group's last block: its bias term
#pragma GCC unroll 2
            for (int i = 0; i < H; ++i) {
              const __m256 bias = half_params<kBf16>(scales + kInt8TileRows * l.param_bytes, h0 + i);
#pragma GCC unroll 8
              for (int t = 0; t < T; ++t)
                acc[t][i] = _mm256_fmadd_ps(bias, _mm256_set1_ps(a.xsum[t * l.groups + g]), acc[t][i]);
            }
          }
        }
#pragma GCC unroll 2
        for (int i = 0; i < H; ++i)
#pragma GCC unroll 8
          for (int t = 0; t < T; ++t) _mm256_maskstore_ps(y + t * w.rows + i * kHalf, mask[i], acc[t][i]);
      }
    }
  }
}

template <int B, bool kBf16, bool kVnni>
MTPLX_INT8_AVXVNNI void int8_tiles_t(const WeightMatrix& w, const RowArgs& a, int64_t tile0, int64_t tile1) {
  with_row_count(a.T, [&]<int T>() { int8_tiles<B, T, kBf16, kVnni>(w, a, tile0, tile1); });
}

}  // namespace

void quantize_x_int8_avx2(const WeightMatrix& w, const float* x, int64_t T, int8_t* xi, float* xi_scale,
                          float* group_sum) {
  if (w.bits == 8) return quantize_rows<8>(w, x, T, xi, xi_scale, group_sum);
  quantize_rows<4>(w, x, T, xi, xi_scale, group_sum);
}

void tiles_int8_avx2(const WeightMatrix& w, const RowArgs& a, int64_t tile0, int64_t tile1) {
  // Function-local static: the CPUID query runs once.
  static const bool avx_vnni = __builtin_cpu_supports("avxvnni");
  with_int8_format(w, [&]<int B, bool kBf16>() {
    if (avx_vnni)
      int8_tiles_t<B, kBf16, true>(w, a, tile0, tile1);
    else
      int8_tiles_t<B, kBf16, false>(w, a, tile0, tile1);
  });
}

}  // namespace mtplx::cpu::detail

#else  // not x86: never selected (int8_dot_supported() is false); defined so the library links.

namespace mtplx::cpu::detail {
void quantize_x_int8_avx2(const WeightMatrix&, const float*, int64_t, int8_t*, float*, float*) {}
void tiles_int8_avx2(const WeightMatrix&, const RowArgs&, int64_t, int64_t) {}
}  // namespace mtplx::cpu::detail

#endif

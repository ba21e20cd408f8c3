// AVX-512 kernels (F, BW, VL, DQ), chosen at run time. As in matmul_avx2.cpp every function that uses
// AVX-512 carries the target attribute rather than the file being built with -mavx512f, so the rest of the
// binary stays baseline x86-64, and all of them have internal linkage. Formats without an AVX-512 kernel
// here (3/5/6-bit codes, and 2-bit with group size 32) go to the AVX2 kernels.
#include "backend/cpu/matmul_internal.h"

#if defined(__x86_64__) || defined(__i386__)

// GCC 12's AVX-512 intrinsics pass _mm*_undefined_*() as the unused merge operand and then warn about it
// once inlined (GCC bug 105593, fixed in 13); the warning points into the header, so silence it there.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

// "#pragma GCC unroll" unrolls the small constant loops over accumulator arrays fully and early, so GCC
// keeps the accumulators in registers (see matmul_avx2.cpp).

#define MTPLX_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
// Helpers that take the accumulator array by reference must be inlined, or the array lives on the stack.
#define MTPLX_AVX512_INLINE MTPLX_AVX512 inline __attribute__((always_inline))

namespace mtplx::cpu::detail {
namespace {

// 2/4-bit codes go through the permute kernel when a group holds whole 16-byte pieces (16 * 8 / bits codes).
bool table_kernel(const WeightMatrix& w) {
  return (w.bits == 4 || w.bits == 2) && w.group_size % (16 * 8 / w.bits) == 0;
}

// Horizontal sum. (GCC 12's _mm512_reduce_add_ps trips -Wuninitialized inside its own header.)
MTPLX_AVX512 inline float hsum(__m512 v) {
  const __m512 folded = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4e));  // + the other 256-bit half
  __m128 s =
      _mm_add_ps(_mm512_castps512_ps128(folded), _mm256_extractf128_ps(_mm512_castps512_ps256(folded), 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <DType D>
inline float load1(const void* row, int64_t i) {
  if constexpr (D == DType::F32) return static_cast<const float*>(row)[i];
  if constexpr (D == DType::BF16) return bf16_to_float(static_cast<const uint16_t*>(row)[i]);
  return f16_to_float(static_cast<const uint16_t*>(row)[i]);
}

// 32 dense weights from column c as two vectors: columns c..c+15 and c+16..c+31. The loads are 32 bytes
// for the 16-bit types: a 64-byte load straddles two cache lines whenever the row is not 64-byte aligned
// (mmapped tensors and malloc'd buffers usually are not), and measured ~1.8x slower than AVX2 for BF16.
template <DType D>
MTPLX_AVX512_INLINE void load32(const void* row, int64_t c, __m512& lo, __m512& hi) {
  if constexpr (D == DType::F32) {
    const float* p = static_cast<const float*>(row) + c;
    lo = _mm512_loadu_ps(p);
    hi = _mm512_loadu_ps(p + 16);
  } else if constexpr (D == DType::BF16) {  // bf16 is the top half of an fp32: widen and shift into place
    const auto* p = static_cast<const uint16_t*>(row) + c;
    lo = _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
    hi = _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16))), 16));
  } else {
    const auto* p = static_cast<const uint16_t*>(row) + c;
    lo = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    hi = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16)));
  }
}

// Quantized rows are done two at a time when the T activation rows outgrow L1 (e.g. T = 4 x 3584 columns
// = 56 KiB): the x vectors then come from L2 and are the busiest load stream, and loading each once for
// two weight rows halves it (measured 0.81 vs 0.95 of the AVX2 time for q4 down 1024x3584 at T = 4).
// While x fits L1 one row at a time was as fast or faster (dense BF16 gate/up at T = 4: 1.4x slower with
// two rows), so dense rows always go one at a time.
inline bool two_rows(int64_t T, int64_t cols) {
  return T > 1 && T * cols * static_cast<int64_t>(sizeof(float)) > 32 * 1024;
}

// Accumulators per (row, activation row): enough independent FMA chains to hide the FMA latency.
template <int T, int R>
inline constexpr int kChains = T* R == 1   ? 4
                               : T* R == 2 ? 2
                                           : 1;

// Stores the R x T accumulators (each summed over its C chains) to y[t, r + i].
template <int R, int T, int C>
MTPLX_AVX512_INLINE void store_block(__m512 (&acc)[R][T][C], const RowArgs& a, int64_t rows, int64_t r) {
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
#pragma GCC unroll 16
      for (int u = 1; u < C; ++u) acc[i][t][0] = _mm512_add_ps(acc[i][t][0], acc[i][t][u]);
      a.y[t * rows + r + i] = hsum(acc[i][t][0]);
    }
}

template <int R, int T, int C>
MTPLX_AVX512_INLINE void zero_block(__m512 (&acc)[R][T][C]) {
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t)
#pragma GCC unroll 16
      for (int u = 0; u < C; ++u) acc[i][t][u] = _mm512_setzero_ps();
}

// Rows r .. r + R - 1 of a dense matrix against T activation rows: each pair of weight vectors is loaded
// once for all T, each x vector once for all R. x comes in the kernel's order (a.xq: whole 32-column
// chunks) and in natural order (a.x) for the tail.
template <DType D, int T, int R>
MTPLX_AVX512 void dense_block(const WeightMatrix& w, const RowArgs& a, int64_t r) {
  constexpr int C = kChains < T, R >> 2 ? 2 : 1;  // chains beyond the lo/hi pair: chunks per step
  const int64_t cols = w.cols;
  const int64_t row_bytes = cols * static_cast<int64_t>(D == DType::F32 ? 4 : 2);
  const auto* base = static_cast<const uint8_t*>(w.data) + r * row_bytes;
  __m512 acc[R][T][2 * C];
  zero_block(acc);
  int64_t c = 0;
  for (; c + 32 * C <= cols; c += 32 * C)
#pragma GCC unroll 16
    for (int u = 0; u < C; ++u) {
      __m512 lo[R], hi[R];
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i) load32<D>(base + i * row_bytes, c + 32 * u, lo[i], hi[i]);
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        const float* xt = a.xq + t * cols + c + 32 * u;
        const __m512 xl = _mm512_loadu_ps(xt), xh = _mm512_loadu_ps(xt + 16);
#pragma GCC unroll 16
        for (int i = 0; i < R; ++i) {
          acc[i][t][2 * u] = _mm512_fmadd_ps(lo[i], xl, acc[i][t][2 * u]);
          acc[i][t][2 * u + 1] = _mm512_fmadd_ps(hi[i], xh, acc[i][t][2 * u + 1]);
        }
      }
    }
  if (C > 1 && c + 32 <= cols) {
    __m512 lo[R], hi[R];
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) load32<D>(base + i * row_bytes, c, lo[i], hi[i]);
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t)
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i) {
        acc[i][t][0] = _mm512_fmadd_ps(lo[i], _mm512_loadu_ps(a.xq + t * cols + c), acc[i][t][0]);
        acc[i][t][1] = _mm512_fmadd_ps(hi[i], _mm512_loadu_ps(a.xq + t * cols + c + 16), acc[i][t][1]);
      }
    c += 32;
  }
  store_block(acc, a, w.rows, r);
  for (; c < cols; ++c)  // tail shorter than a chunk, natural order
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < T; ++t)
        a.y[t * w.rows + r + i] += load1<D>(base + i * row_bytes, c) * a.x[t * cols + c];
}

// Rows r .. r + R - 1 of a 2- or 4-bit matrix. Each 16-byte piece of codes is widened to 16 int32 lanes
// (one byte each); vector k of the piece is that shifted right by k * B bits. VPERMPS indexes a 16-entry
// table with the low 4 bits of each lane, so with the group's dequantized values in the table (entry
// i = s * q + b for code q = i mod 2^B) one permute unpacks, masks, converts and scales 16 codes, and the
// row is a plain dot product of dequantized weights with x (in XOrder{16, 8 / B}).
template <int B, int T, int G, int R>
MTPLX_AVX512 void table_block(const WeightMatrix& w, const RowArgs& a, int64_t r, float* params) {
  constexpr int n = 8 / B;        // codes per byte = vectors per piece
  constexpr int kPiece = 16 * n;  // codes per 16-byte piece
  static_assert(G % kPiece == 0, "a group must hold whole pieces");
  constexpr int A = kChains<T, R>;
  const int64_t cols = w.cols, groups = cols / G;
  const int64_t row_bytes = w.words_per_row() * 4;
  const auto* base = static_cast<const uint8_t*>(w.data) + r * row_bytes;
  for (int i = 0; i < R; ++i) {
    if (a.prefetch) prefetch_row_params(w, r + i);
    row_params(w, r + i, groups, params + 2 * i * groups, params + (2 * i + 1) * groups);
  }
  const __m512 codes_of_index = B == 4 ? _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
                                       : _mm512_setr_ps(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
  __m512 acc[R][T][A];
  zero_block(acc);
  for (int64_t g = 0; g < groups; ++g) {
    __m512 table[R];
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i)
      table[i] = _mm512_fmadd_ps(codes_of_index, _mm512_set1_ps(params[2 * i * groups + g]),
                                 _mm512_set1_ps(params[(2 * i + 1) * groups + g]));
#pragma GCC unroll 16
    for (int p = 0; p < G / kPiece; ++p) {
      const int64_t c = g * G + p * kPiece;
      if (a.prefetch && (c * B / 8) % 64 == 0)  // one prefetch per cache line of codes
        for (int i = 0; i < R; ++i) prefetch_ahead(base + i * row_bytes + c * B / 8);
      __m512i v[R];
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i)
        v[i] = _mm512_cvtepu8_epi32(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(base + i * row_bytes + c * B / 8)));
#pragma GCC unroll 16
      for (int k = 0; k < n; ++k) {
        __m512 wv[R];
#pragma GCC unroll 16
        for (int i = 0; i < R; ++i)
          wv[i] = _mm512_permutexvar_ps(k == 0 ? v[i] : _mm512_srli_epi32(v[i], k * B), table[i]);
        const int slot = (p * n + k) % A;
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) {
          const __m512 xv = _mm512_loadu_ps(a.xq + t * cols + c + 16 * k);
#pragma GCC unroll 16
          for (int i = 0; i < R; ++i) acc[i][t][slot] = _mm512_fmadd_ps(wv[i], xv, acc[i][t][slot]);
        }
      }
    }
  }
  store_block(acc, a, w.rows, r);
}

// Rows r .. r + R - 1 of an 8-bit matrix: 16 codes widen to int32 lanes in natural order, convert, and
// dequantize with one FMA (w = s * q + b) that all T activation rows share.
template <int T, int G, int R>
MTPLX_AVX512 void q8_block(const WeightMatrix& w, const RowArgs& a, int64_t r, float* params) {
  constexpr int A = kChains<T, R>;
  const int64_t cols = w.cols, groups = cols / G;
  const int64_t row_bytes = w.words_per_row() * 4;
  const auto* base = static_cast<const uint8_t*>(w.data) + r * row_bytes;
  for (int i = 0; i < R; ++i) {
    if (a.prefetch) prefetch_row_params(w, r + i);
    row_params(w, r + i, groups, params + 2 * i * groups, params + (2 * i + 1) * groups);
  }
  __m512 acc[R][T][A];
  zero_block(acc);
  for (int64_t g = 0; g < groups; ++g) {
    __m512 s[R], b[R];
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i)
      s[i] = _mm512_set1_ps(params[2 * i * groups + g]),
      b[i] = _mm512_set1_ps(params[(2 * i + 1) * groups + g]);
#pragma GCC unroll 16
    for (int v = 0; v < G / 16; ++v) {
      const int64_t c = g * G + v * 16;
      if (a.prefetch && c % 64 == 0)  // one prefetch per cache line of codes
        for (int i = 0; i < R; ++i) prefetch_ahead(base + i * row_bytes + c);
      __m512 wv[R];
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i) {
        const __m512i q =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(base + i * row_bytes + c)));
        wv[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q), s[i], b[i]);
      }
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        const __m512 xv = _mm512_loadu_ps(a.x + t * cols + c);
#pragma GCC unroll 16
        for (int i = 0; i < R; ++i) acc[i][t][v % A] = _mm512_fmadd_ps(wv[i], xv, acc[i][t][v % A]);
      }
    }
  }
  store_block(acc, a, w.rows, r);
}

// Runs step(r) over rows [r0, r1) in steps of R rows, the last odd row with single(r).
template <int R, typename Step, typename Single>
MTPLX_AVX512 inline void by_blocks(int64_t r0, int64_t r1, Step step, Single single) {
  int64_t r = r0;
  for (; r + R <= r1; r += R) step(r);
  for (; r < r1; ++r) single(r);
}

template <DType D, int T>
MTPLX_AVX512 void dense_rows(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) dense_block<D, T, 1>(w, a, r);
}

template <int B, int T, int G>
MTPLX_AVX512 void table_rows(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1, float* params) {
  if (T > 1 && two_rows(T, w.cols))
    by_blocks<2>(
        r0, r1, [&](int64_t r) { table_block<B, T, G, 2>(w, a, r, params); },
        [&](int64_t r) { table_block<B, T, G, 1>(w, a, r, params); });
  else
    for (int64_t r = r0; r < r1; ++r) table_block<B, T, G, 1>(w, a, r, params);
}

template <int T, int G>
MTPLX_AVX512 void q8_rows(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1, float* params) {
  if (T > 1 && two_rows(T, w.cols))
    by_blocks<2>(
        r0, r1, [&](int64_t r) { q8_block<T, G, 2>(w, a, r, params); },
        [&](int64_t r) { q8_block<T, G, 1>(w, a, r, params); });
  else
    for (int64_t r = r0; r < r1; ++r) q8_block<T, G, 1>(w, a, r, params);
}

template <int T>
MTPLX_AVX512 void rows_t(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1,
                         std::span<float> scratch) {
  // `scratch` (w.cols floats) holds the scales and biases of up to 2 rows: 2 * 2 * cols / G <= cols.
  if (!w.quantized()) {
    if (w.dtype == DType::BF16) return dense_rows<DType::BF16, T>(w, a, r0, r1);
    if (w.dtype == DType::F16) return dense_rows<DType::F16, T>(w, a, r0, r1);
    return dense_rows<DType::F32, T>(w, a, r0, r1);
  }
  float* params = scratch.data();
  const int g = w.group_size;
  if (w.bits == 8) {
    if (g == 64) return q8_rows<T, 64>(w, a, r0, r1, params);
    if (g == 128) return q8_rows<T, 128>(w, a, r0, r1, params);
    return q8_rows<T, 32>(w, a, r0, r1, params);
  }
  if (w.bits == 4) {
    if (g == 64) return table_rows<4, T, 64>(w, a, r0, r1, params);
    if (g == 128) return table_rows<4, T, 128>(w, a, r0, r1, params);
    return table_rows<4, T, 32>(w, a, r0, r1, params);
  }
  if (g == 64) return table_rows<2, T, 64>(w, a, r0, r1, params);
  return table_rows<2, T, 128>(w, a, r0, r1, params);
}

}  // namespace

void rows_avx512(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1, std::span<float> scratch) {
  if (w.quantized() && w.bits != 8 && !table_kernel(w)) return rows_avx2(w, a, r0, r1, scratch);
  with_row_count(a.T, [&]<int T>() { rows_t<T>(w, a, r0, r1, scratch); });
}

XOrder x_order_avx512(const WeightMatrix& w) {
  if (!w.quantized()) return {};
  if (w.bits == 8) return {};
  if (table_kernel(w)) return {16, 8 / w.bits};
  return x_order_avx2(w);  // the AVX2 kernel runs it
}

}  // namespace mtplx::cpu::detail

#else  // not x86: never selected (isa_supported(Isa::Avx512) is false); defined so the library links.

namespace mtplx::cpu::detail {
void rows_avx512(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1, std::span<float> scratch) {
  rows_portable(w, a, r0, r1, scratch);
}
XOrder x_order_avx512(const WeightMatrix&) {
  return {};
}
}  // namespace mtplx::cpu::detail

#endif

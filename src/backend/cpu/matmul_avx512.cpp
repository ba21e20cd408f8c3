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

// 32 dense weights from column c as two vectors. BF16 is the top half of an fp32, so one 64-byte load gives
// the even columns by a left shift and the odd ones by masking off the low half; x is permuted to match
// (XOrder{16, 2}). F16 and F32 come in natural order: columns c..c+15 and c+16..c+31.
template <DType D>
MTPLX_AVX512 inline void load32(const void* row, int64_t c, __m512& lo, __m512& hi) {
  if constexpr (D == DType::F32) {
    const float* p = static_cast<const float*>(row) + c;
    lo = _mm512_loadu_ps(p);
    hi = _mm512_loadu_ps(p + 16);
  } else if constexpr (D == DType::BF16) {
    const __m512i v = _mm512_loadu_si512(static_cast<const uint16_t*>(row) + c);
    lo = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    hi = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(-65536)));  // 0xffff0000
  } else {
    const auto* p = static_cast<const uint16_t*>(row) + c;
    lo = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    hi = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16)));
  }
}

// out[t] = dot(W row, x[t]) for one dense row: each pair of weight vectors is loaded once and used for all
// T rows. xk is x in the kernel's order (whole 32-column chunks), x the natural order for the tail.
// T = 1 takes two chunks per step so four FMA chains hide the FMA latency.
template <DType D, int T>
MTPLX_AVX512 void dense_row(const void* wrow, const float* xk, const float* x, int64_t cols, float* out) {
  constexpr int U = T == 1 ? 2 : 1;
  __m512 acc[T][2 * U];
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 16
    for (int u = 0; u < 2 * U; ++u) acc[t][u] = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 32 * U <= cols; c += 32 * U)
#pragma GCC unroll 16
    for (int u = 0; u < U; ++u) {
      __m512 lo, hi;
      load32<D>(wrow, c + 32 * u, lo, hi);
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        const float* xt = xk + t * cols + c + 32 * u;
        acc[t][2 * u] = _mm512_fmadd_ps(lo, _mm512_loadu_ps(xt), acc[t][2 * u]);
        acc[t][2 * u + 1] = _mm512_fmadd_ps(hi, _mm512_loadu_ps(xt + 16), acc[t][2 * u + 1]);
      }
    }
  if (U > 1 && c + 32 <= cols) {
    __m512 lo, hi;
    load32<D>(wrow, c, lo, hi);
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
      acc[t][0] = _mm512_fmadd_ps(lo, _mm512_loadu_ps(xk + t * cols + c), acc[t][0]);
      acc[t][1] = _mm512_fmadd_ps(hi, _mm512_loadu_ps(xk + t * cols + c + 16), acc[t][1]);
    }
    c += 32;
  }
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) {
#pragma GCC unroll 16
    for (int u = 1; u < 2 * U; ++u) acc[t][0] = _mm512_add_ps(acc[t][0], acc[t][u]);
    float sum = hsum(acc[t][0]);
    for (int64_t cc = c; cc < cols; ++cc) sum += load1<D>(wrow, cc) * x[t * cols + cc];
    out[t] = sum;
  }
}

template <DType D, int T>
MTPLX_AVX512 void dense_rows(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1) {
  const auto* base = static_cast<const uint8_t*>(w.data);
  const int64_t row_bytes = w.cols * static_cast<int64_t>(D == DType::F32 ? 4 : 2);
  float out[T];
  for (int64_t r = r0; r < r1; ++r) {
    dense_row<D, T>(base + r * row_bytes, a.xq, a.x, w.cols, out);
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) a.y[t * w.rows + r] = out[t];
  }
}

// Rows of a 2- or 4-bit matrix. Each 16-byte piece of codes is widened to 16 int32 lanes (one byte each);
// vector k of the piece is that shifted right by k * B bits. VPERMPS indexes a 16-entry table with the low
// 4 bits of each lane, so with the group's dequantized values in the table (entry i = s * q + b for code
// q = i mod 2^B) one permute unpacks, masks, converts and scales 16 codes, and the row is a plain dot
// product of dequantized weights with x (in XOrder{16, 8 / B}).
template <int B, int T, int G>
MTPLX_AVX512 void table_rows(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1,
                             std::span<float> scratch) {
  constexpr int n = 8 / B;        // codes per byte = vectors per piece
  constexpr int kPiece = 16 * n;  // codes per 16-byte piece
  static_assert(G % kPiece == 0, "a group must hold whole pieces");
  constexpr int A = T == 1 ? 4 : T == 2 ? 2 : 1;  // accumulators per activation row
  const int64_t cols = w.cols, groups = cols / G;
  const int64_t row_bytes = w.words_per_row() * 4;
  const auto* base = static_cast<const uint8_t*>(w.data);
  float* scale = scratch.data();
  float* bias = scratch.data() + groups;
  const __m512 codes_of_index = B == 4 ? _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
                                       : _mm512_setr_ps(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* codes = base + r * row_bytes;
    row_params(w, r, groups, scale, bias);
    __m512 acc[T][A];
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t)
#pragma GCC unroll 16
      for (int u = 0; u < A; ++u) acc[t][u] = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; ++g) {
      const __m512 table = _mm512_fmadd_ps(codes_of_index, _mm512_set1_ps(scale[g]), _mm512_set1_ps(bias[g]));
#pragma GCC unroll 16
      for (int p = 0; p < G / kPiece; ++p) {
        const int64_t c = g * G + p * kPiece;
        const __m512i v =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + c * B / 8)));
#pragma GCC unroll 16
        for (int k = 0; k < n; ++k) {
          const __m512 wv = _mm512_permutexvar_ps(k == 0 ? v : _mm512_srli_epi32(v, k * B), table);
          const int slot = (p * n + k) % A;
#pragma GCC unroll 16
          for (int t = 0; t < T; ++t)
            acc[t][slot] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(a.xq + t * cols + c + 16 * k), acc[t][slot]);
        }
      }
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
#pragma GCC unroll 16
      for (int u = 1; u < A; ++u) acc[t][0] = _mm512_add_ps(acc[t][0], acc[t][u]);
      a.y[t * w.rows + r] = hsum(acc[t][0]);
    }
  }
}

// Rows of an 8-bit matrix: 16 codes widen to int32 lanes in natural order, convert, and dequantize with
// one FMA (w = s * q + b) that all T rows share.
template <int T, int G>
MTPLX_AVX512 void q8_rows(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1,
                          std::span<float> scratch) {
  constexpr int A = T == 1 ? 4 : T == 2 ? 2 : 1;
  const int64_t cols = w.cols, groups = cols / G;
  const int64_t row_bytes = w.words_per_row() * 4;
  const auto* base = static_cast<const uint8_t*>(w.data);
  float* scale = scratch.data();
  float* bias = scratch.data() + groups;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* codes = base + r * row_bytes;
    row_params(w, r, groups, scale, bias);
    __m512 acc[T][A];
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t)
#pragma GCC unroll 16
      for (int u = 0; u < A; ++u) acc[t][u] = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; ++g) {
      const __m512 s = _mm512_set1_ps(scale[g]), b = _mm512_set1_ps(bias[g]);
#pragma GCC unroll 16
      for (int v = 0; v < G / 16; ++v) {
        const int64_t c = g * G + v * 16;
        const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + c)));
        const __m512 wv = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q), s, b);
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t)
          acc[t][v % A] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(a.x + t * cols + c), acc[t][v % A]);
      }
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
#pragma GCC unroll 16
      for (int u = 1; u < A; ++u) acc[t][0] = _mm512_add_ps(acc[t][0], acc[t][u]);
      a.y[t * w.rows + r] = hsum(acc[t][0]);
    }
  }
}

template <int T>
MTPLX_AVX512 void rows_t(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1,
                         std::span<float> scratch) {
  if (!w.quantized()) {
    if (w.dtype == DType::BF16) return dense_rows<DType::BF16, T>(w, a, r0, r1);
    if (w.dtype == DType::F16) return dense_rows<DType::F16, T>(w, a, r0, r1);
    return dense_rows<DType::F32, T>(w, a, r0, r1);
  }
  const int g = w.group_size;
  if (w.bits == 8) {
    if (g == 64) return q8_rows<T, 64>(w, a, r0, r1, scratch);
    if (g == 128) return q8_rows<T, 128>(w, a, r0, r1, scratch);
    return q8_rows<T, 32>(w, a, r0, r1, scratch);
  }
  if (w.bits == 4) {
    if (g == 64) return table_rows<4, T, 64>(w, a, r0, r1, scratch);
    if (g == 128) return table_rows<4, T, 128>(w, a, r0, r1, scratch);
    return table_rows<4, T, 32>(w, a, r0, r1, scratch);
  }
  if (g == 64) return table_rows<2, T, 64>(w, a, r0, r1, scratch);
  return table_rows<2, T, 128>(w, a, r0, r1, scratch);
}

}  // namespace

void rows_avx512(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1, std::span<float> scratch) {
  if (w.quantized() && w.bits != 8 && !table_kernel(w)) return rows_avx2(w, a, r0, r1, scratch);
  switch (a.T) {
    case 1:
      return rows_t<1>(w, a, r0, r1, scratch);
    case 2:
      return rows_t<2>(w, a, r0, r1, scratch);
    case 3:
      return rows_t<3>(w, a, r0, r1, scratch);
    case 4:
      return rows_t<4>(w, a, r0, r1, scratch);
    case 5:
      return rows_t<5>(w, a, r0, r1, scratch);
    case 6:
      return rows_t<6>(w, a, r0, r1, scratch);
    case 7:
      return rows_t<7>(w, a, r0, r1, scratch);
    default:
      return rows_t<8>(w, a, r0, r1, scratch);
  }
}

XOrder x_order_avx512(const WeightMatrix& w) {
  if (!w.quantized()) return w.dtype == DType::BF16 ? XOrder{16, 2} : XOrder{};
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

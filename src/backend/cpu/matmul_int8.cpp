// QuantDot::Int8: 4- and 8-bit affine weights (group size 64 or 128) times activations rounded to int8,
// with AVX-512 VNNI integer dot products over a copy of the weights regrouped 16 rows to a tile.
//
// Numerics: each activation row is rounded to the int8 grid of its 64-column blocks, x^_c = d_j * xi_c
// with xi_c = round(x_c * 127 / max|x|) in [-127, 127] and d_j = max|x| / 127 over block j, and the kernels
// compute W x^ with W as stored: sum_c (s q_c + b) x^_c = s d_j sum_c q_c xi_c + b d_j sum_c xi_c. Each x
// moves by at most d_j / 2, so |y - W x| <= sum_c |w_c| d_j / 2. (The bias term uses the rounded sums
// too: with the exact sums the offset b, about -8 s for 4-bit codes, would multiply the rounding errors.)
// The integer sums are exact and every (weight row, activation row) pair runs the same operations in the
// same order whatever T is, so decode and the verify widths give identical rows.
//
// Why tiles: VPDPBUSD multiplies 64 unsigned bytes with 64 signed bytes and adds each four into one of 16
// int32 lanes. With the rows as stored, a vector holds 64 codes of one row, so every block of 64 columns
// ends in a float conversion, a scale broadcast and an FMA per row, and 4-bit codes took about as many
// instructions as the core retires while memory streams them (one core read 4-bit weights at ~14 GB/s).
// In a tile, lane i of every vector is row i: word k of the 16 rows sits in 64 consecutive bytes, and the
// four (8-bit) or eight (4-bit) columns of word k come as one broadcast dword of x. A block of 64 columns
// then costs, per 16 rows, 16 (8-bit) or 8 x (mask, nibble shift, 2 dot products) (4-bit) instructions and
// one conversion and scaling for all 16 rows.
//
// Tile layout (16 rows; a last partial tile is padded with zero codes, scales and biases), group after
// group: the group's codes as [words per group][16] uint32, then its 16 scales and its 16 biases, in BF16
// when the checkpoint stores BF16 (copied bit for bit) and in F32 otherwise (F16 and F32 convert exactly).
// So a tile is read front to back as one stream. With all codes first and the parameters at the tile's
// end, one core ran the same kernel 1.1-1.5x slower, and a bare read in that order (no arithmetic) was as
// slow as the kernel: the order, not the instructions, held the stream back.
// Panels: a matrix wider than 1024 columns is stored as panels of 1024 columns, one after another, each
// holding every tile's groups over its columns (a tile's groups of one panel contiguous), and a thread runs
// its tiles panel by panel. A whole row of tiles of a 3584-column matrix spans 32-61 KiB: between two uses
// of a line of x the weight stream had replaced most of L1 and the broadcasts of x waited on L2, and one
// core ran such matrices 1.15-1.22x slower than panel by panel, with 1 KiB of x held in L1.
// Groups are 64-byte aligned. x per activation row, int8 in the order of the words: 8-bit codes read the
// columns as they are; the 4-bit word k splits into low nibbles (columns 8k, 8k+2, 8k+4, 8k+6) and high
// nibbles (8k+1, .., 8k+7), so its 8 bytes of x are stored as those two dwords.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/matmul.h"
#include "backend/cpu/matmul_internal.h"
#include "base/error.h"

namespace mtplx::cpu::detail {

bool int8_format(const WeightMatrix& w) {
  return w.quantized() && (w.bits == 4 || w.bits == 8) && (w.group_size == 64 || w.group_size == 128);
}

Int8TileLayout int8_tile_layout(const WeightMatrix& w) {
  Int8TileLayout l;
  l.words = w.words_per_row();
  l.groups = w.cols / w.group_size;
  l.param_bytes = w.scale_dtype == DType::BF16 ? 2 : 4;
  l.group_code_bytes = l.words / l.groups * 4 * kInt8TileRows;
  l.group_bytes = l.group_code_bytes + 2 * kInt8TileRows * l.param_bytes;  // a multiple of 64
  l.panel_groups = std::min(l.groups, std::max<int64_t>(1, kInt8PanelColumns / w.group_size));
  l.tiles = (w.rows + kInt8TileRows - 1) / kInt8TileRows;
  return l;
}

}  // namespace mtplx::cpu::detail

namespace mtplx::cpu {

WeightMatrix with_int8_tiles(const WeightMatrix& w, ThreadPool& pool, HugePageArena& arena) {
  require(int8_dot_format(w),
          str("the int8 kernels take 4- or 8-bit codes in groups of 64 or 128, not this [", w.rows, ", ",
              w.cols, "] matrix"),
          "cpu backend");
  const detail::Int8TileLayout l = detail::int8_tile_layout(w);
  const size_t total = static_cast<size_t>(l.total_bytes());
  std::shared_ptr<std::byte> buffer = arena.allocate(total);
  require(buffer != nullptr, str("out of memory for the int8 copy of a [", w.rows, ", ", w.cols, "] matrix"),
          "cpu backend", "use --cpu-matmul exact");
  std::byte* raw = buffer.get();
  const auto* codes = static_cast<const uint32_t*>(w.data);
  constexpr int64_t kRows = detail::kInt8TileRows;
  pool.parallel_for(l.tiles, [&](int64_t begin, int64_t end) {
    for (int64_t tile = begin; tile < end; ++tile) {
      const int64_t words_per_group = l.words / l.groups;
      for (int64_t lane = 0; lane < kRows; ++lane) {
        const int64_t row = tile * kRows + lane;
        const bool real = row < w.rows;
        for (int64_t g = 0; g < l.groups; ++g) {
          std::byte* group = raw + l.group_offset(tile, g);
          auto* out = reinterpret_cast<uint32_t*>(group);
          for (int64_t k = 0; k < words_per_group; ++k)
            out[k * kRows + lane] = real ? codes[row * l.words + g * words_per_group + k] : 0;
          std::byte* params = group + l.group_code_bytes;
          for (int which = 0; which < 2; ++which) {
            const void* src = which == 0 ? w.scales : w.biases;
            const int64_t at = which * kRows + lane;  // element index in the group's params
            if (l.param_bytes == 2) {
              const uint16_t bits = real ? static_cast<const uint16_t*>(src)[row * l.groups + g] : 0;
              std::memcpy(params + at * 2, &bits, 2);
            } else {
              const float value = real ? detail::load_param(src, w.scale_dtype, row * l.groups + g) : 0.0f;
              std::memcpy(params + at * 4, &value, 4);
            }
          }
        }
      }
    }
  });
  WeightMatrix out = w;
  out.tiles = std::move(buffer);
  return out;
}

}  // namespace mtplx::cpu

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

// 16 floats times `inverse`, rounded to nearest (even) and saturated to int8, stored at out.
MTPLX_VNNI_INLINE void store_int8(int8_t* out, __m512 v, __m512 inverse) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out),
                   _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v, inverse))));
}

// One 64-column block of x (v[0..3] = columns 0..15, .., 48..63) rounded into `out` (64 bytes, in the
// order of the B-bit words); returns its scale d and sets `sum` to d * sum(xi). A NaN or an infinity
// anywhere makes both NaN, so the products are NaN as in fp32 (max would drop a NaN operand).
template <int B>
MTPLX_VNNI_INLINE float quantize_block(const __m512 (&v)[4], int8_t* out, float& sum) {
  const __m512 magnitude = _mm512_max_ps(_mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1])),
                                         _mm512_max_ps(_mm512_abs_ps(v[2]), _mm512_abs_ps(v[3])));
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
  // 4-bit words: per 8 columns the even ones (low nibbles), then the odd ones (high nibbles).
  const __m512i word_order = _mm512_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15);
  for (int i = 0; i < 4; ++i)
    store_int8(out + 16 * i, B == 8 ? v[i] : _mm512_permutexvar_ps(word_order, v[i]), inverse);
  return scale;
}

template <int B>
MTPLX_VNNI void quantize_rows(const WeightMatrix& w, const float* x, int64_t T, int8_t* xi, float* xi_scale,
                              float* group_sum) {
  const int64_t cols = w.cols, blocks = cols / 64, per_group = w.group_size / 64,
                groups = cols / w.group_size;
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t g = 0; g < groups; ++g) group_sum[t * groups + g] = 0.0f;
    for (int64_t j = 0; j < blocks; ++j) {
      const float* xb = x + t * cols + j * 64;
      const __m512 v[4] = {_mm512_loadu_ps(xb), _mm512_loadu_ps(xb + 16), _mm512_loadu_ps(xb + 32),
                           _mm512_loadu_ps(xb + 48)};
      float sum = 0;
      xi_scale[t * blocks + j] = quantize_block<B>(v, xi + t * cols + j * 64, sum);
      group_sum[t * groups + j / per_group] += sum;
    }
  }
}

// The 16 scales or biases at `params` (one per row of a tile) as fp32.
template <bool kBf16>
MTPLX_VNNI_INLINE __m512 tile_params(const std::byte* params) {
  if constexpr (kBf16) {
    const __m256i halves = _mm256_load_si256(reinterpret_cast<const __m256i*>(params));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(halves), 16));
  } else {
    return _mm512_load_ps(reinterpret_cast<const float*>(params));
  }
}

// Four bytes of x (one word's columns) in every lane.
MTPLX_VNNI_INLINE __m512i broadcast_word(const int8_t* x) {
  int32_t word = 0;
  std::memcpy(&word, x, sizeof word);
  return _mm512_set1_epi32(word);
}

// The high nibble of every byte, in one instruction: GF2P8AFFINEQB with the bit matrix of a right shift
// by 4 (result bit i = source bit i + 4 for i < 4). Replaces a shift and a mask.
MTPLX_VNNI_INLINE __m512i high_nibbles(__m512i bytes) {
  return _mm512_gf2p8affine_epi64_epi8(bytes, _mm512_set1_epi64(0x1020408000000000ll), 0);
}

// The integer dot products of one 64-column block (`codes`: its words of the tile) with the T activation
// rows, into two accumulators per row (low / high nibbles, or even / odd words) so that consecutive dot
// products overlap. `x` points at the block's bytes of activation row 0.
template <int B, int T>
MTPLX_VNNI_INLINE void block_dots(const uint8_t* codes, const int8_t* x, int64_t x_stride, bool prefetch,
                                  __m512i (&even)[T], __m512i (&odd)[T]) {
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) even[t] = odd[t] = _mm512_setzero_si512();
  if constexpr (B == 4) {
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      if (prefetch) prefetch_ahead(codes + k * 64);
      const __m512i v = _mm512_load_si512(codes + k * 64);
      const __m512i low = _mm512_and_si512(v, _mm512_set1_epi8(0x0f));
      const __m512i high = high_nibbles(v);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const int8_t* xw = x + t * x_stride + k * 8;
        even[t] = _mm512_dpbusd_epi32(even[t], low, broadcast_word(xw));
        odd[t] = _mm512_dpbusd_epi32(odd[t], high, broadcast_word(xw + 4));
      }
    }
  } else {
#pragma GCC unroll 8
    for (int k = 0; k < 16; k += 2) {
      if (prefetch) prefetch_ahead(codes + k * 64);
      if (prefetch) prefetch_ahead(codes + k * 64 + 64);
      const __m512i v0 = _mm512_load_si512(codes + k * 64);
      const __m512i v1 = _mm512_load_si512(codes + k * 64 + 64);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const int8_t* xw = x + t * x_stride + k * 4;
        even[t] = _mm512_dpbusd_epi32(even[t], v0, broadcast_word(xw));
        odd[t] = _mm512_dpbusd_epi32(odd[t], v1, broadcast_word(xw + 4));
      }
    }
  }
}

// Tiles [tile0, tile1) of a B-bit matrix against T activation rows: 16 outputs per tile and row, panel
// after panel; between panels a tile's sums wait in y (stored and reloaded exactly, so the operations on
// each output are those of one pass over all columns, in the same order).
template <int B, int T, bool kBf16>
MTPLX_VNNI void int8_tiles(const WeightMatrix& w, const RowArgs& a, int64_t tile0, int64_t tile1) {
  const Int8TileLayout l = int8_tile_layout(w);
  const int64_t block_bytes = 64 * B * kInt8TileRows / 8, per_group = w.group_size / 64;
  for (int64_t g0 = 0; g0 < l.groups; g0 += l.panel_groups) {
    const int64_t g1 = std::min(l.groups, g0 + l.panel_groups);
    for (int64_t tile = tile0; tile < tile1; ++tile) {
      const std::byte* panel = w.tiles.get() + l.group_offset(tile, g0);
      const int64_t r0 = tile * kInt8TileRows;
      const int64_t valid = std::min(kInt8TileRows, w.rows - r0);
      const __mmask16 mask = static_cast<__mmask16>((1u << valid) - 1);
      __m512 acc[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t)
        acc[t] = g0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask, a.y + t * w.rows + r0);
      for (int64_t j = g0 * per_group; j < g1 * per_group; ++j) {  // blocks of 64 columns
        const int64_t g = j / per_group;
        const std::byte* group = panel + (g - g0) * l.group_bytes;
        const std::byte* scales = group + l.group_code_bytes;
        __m512i even[T], odd[T];
        block_dots<B, T>(reinterpret_cast<const uint8_t*>(group) + (j % per_group) * block_bytes,
                         a.xi + j * 64, a.xi_stride, a.prefetch, even, odd);
        const __m512 scale = tile_params<kBf16>(scales);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const __m512 sd = _mm512_mul_ps(scale, _mm512_set1_ps(a.xi_scale[t * a.xi_blocks + j]));
          acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(even[t], odd[t])), sd, acc[t]);
        }
        if ((j + 1) % per_group == 0) {  // the group's last block: its bias term
          const __m512 bias = tile_params<kBf16>(scales + kInt8TileRows * l.param_bytes);
#pragma GCC unroll 8
          for (int t = 0; t < T; ++t)
            acc[t] = _mm512_fmadd_ps(bias, _mm512_set1_ps(a.xsum[t * l.groups + g]), acc[t]);
        }
      }
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(a.y + t * w.rows + r0, mask, acc[t]);
    }
  }
}

template <int B, bool kBf16>
MTPLX_VNNI void int8_tiles_t(const WeightMatrix& w, const RowArgs& a, int64_t tile0, int64_t tile1) {
  with_row_count(a.T, [&]<int T>() { int8_tiles<B, T, kBf16>(w, a, tile0, tile1); });
}

}  // namespace

void quantize_x_int8(const WeightMatrix& w, const float* x, int64_t T, int8_t* xi, float* xi_scale,
                     float* group_sum) {
  if (w.bits == 8) return quantize_rows<8>(w, x, T, xi, xi_scale, group_sum);
  quantize_rows<4>(w, x, T, xi, xi_scale, group_sum);
}

void tiles_int8(const WeightMatrix& w, const RowArgs& a, int64_t tile0, int64_t tile1) {
  with_int8_format(w, [&]<int B, bool kBf16>() { int8_tiles_t<B, kBf16>(w, a, tile0, tile1); });
}

}  // namespace mtplx::cpu::detail

#else  // not x86: never selected (int8_dot_supported() is false); defined so the library links.

namespace mtplx::cpu::detail {
void quantize_x_int8(const WeightMatrix&, const float*, int64_t, int8_t*, float*, float*) {}
void tiles_int8(const WeightMatrix&, const RowArgs&, int64_t, int64_t) {}
}  // namespace mtplx::cpu::detail

#endif

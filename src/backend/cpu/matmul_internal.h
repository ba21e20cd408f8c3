// Internal pieces shared by the matmul driver (matmul.cpp) and its per-ISA kernels (matmul_portable.cpp,
// matmul_avx2.cpp, matmul_avx512.cpp). Not part of the backend interface.
#pragma once

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <span>

#include "backend/weight.h"
#include "base/dtype.h"

namespace mtplx::cpu::detail {

// Activations as the row kernels (T <= kMaxRowKernelT) read them, prepared once per call.
struct RowArgs {
  const float* x = nullptr;     // [T, cols] as given
  const float* xq = nullptr;    // [T, cols] in the kernel's XOrder (x itself when natural)
  const float* xsum = nullptr;  // [T, cols / group_size]: sum of x over each group (int8: of the rounded x)
  // QuantDot::Int8 only: x rounded to int8 (quantize_x_int8), xi_stride bytes per activation row, and the
  // scale of every 64-column block ([T, xi_blocks]).
  const int8_t* xi = nullptr;
  const float* xi_scale = nullptr;
  int64_t xi_stride = 0, xi_blocks = 0;
  int64_t T = 0;
  float* y = nullptr;    // [T, rows]
  bool prefetch = true;  // MatmulOptions::prefetch
};

// How far ahead of its loads a row kernel prefetches the weight stream. At batch 1 a core streams each
// row once; with the hardware prefetchers alone the 8-bit kernels read 1.13-1.41x slower, and 8 KiB ahead
// measured no better than 4 KiB (docs/benchmarks.md, "Software prefetch in the AVX-512 row kernels").
inline constexpr int64_t kPrefetchBytes = 4096;

// Prefetches the cache line kPrefetchBytes past p into L1. An address past the mapping is harmless: a
// prefetch never faults (computed as an integer, so no out-of-range pointer is formed either).
inline void prefetch_ahead(const void* p) {
  __builtin_prefetch(reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(p) + kPrefetchBytes), 0, 3);
}

// Prefetches the scales and biases of the row whose codes start about kPrefetchBytes after row r's, so
// that the parameter streams (tens of bytes per row) arrive with the codes instead of stalling each row.
inline void prefetch_row_params(const WeightMatrix& w, int64_t r) {
  const int64_t ahead = r + std::max<int64_t>(1, kPrefetchBytes / (w.words_per_row() * 4));
  if (ahead >= w.rows) return;
  const int64_t row_param_bytes = (w.cols / w.group_size) * (w.scale_dtype == DType::F32 ? 4 : 2);
  for (const void* params : {w.scales, w.biases}) {
    const char* first = static_cast<const char*>(params) + ahead * row_param_bytes;
    __builtin_prefetch(first, 0, 3);
    __builtin_prefetch(first + row_param_bytes - 1, 0, 3);
  }
}

// Calls kernel.template operator()<T>() with the compile-time T equal to `rows` (1..7; 8 for anything
// larger). The row kernels are instantiated per width so their T accumulators stay in registers.
template <typename Kernel>
inline void with_row_count(int64_t rows, Kernel&& kernel) {
  switch (rows) {
    case 1:
      return kernel.template operator()<1>();
    case 2:
      return kernel.template operator()<2>();
    case 3:
      return kernel.template operator()<3>();
    case 4:
      return kernel.template operator()<4>();
    case 5:
      return kernel.template operator()<5>();
    case 6:
      return kernel.template operator()<6>();
    case 7:
      return kernel.template operator()<7>();
    default:
      return kernel.template operator()<8>();
  }
}

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

// Order of x the SIMD row kernels read. Packed codes (and BF16 pairs) are widened so that one int32 lane
// holds `per_lane` consecutive values, and value k of every lane is peeled off with a shift: vector k of a
// piece of lanes * per_lane values then holds, in lane j, value per_lane * j + k. Permuting x once per call
// into that order (rather than shuffling every weight) keeps the inner loop to load, shift, unpack, FMA.
//  AVX2:    8 lanes; 2/4/8-bit codes with per_lane = 8 / bits.
//  AVX-512: 16 lanes; 2/4-bit codes with per_lane = 8 / bits, BF16 with per_lane = 2.
// per_lane == 1 is the natural order (the kernel reads x as given).
struct XOrder {
  int lanes = 8;
  int per_lane = 1;
  int piece() const { return lanes * per_lane; }
  // The natural column, within a piece, of position i of the permuted piece.
  int natural(int i) const { return per_lane * (i % lanes) + i / lanes; }
};

// Scales and biases of row r of a quantized matrix as fp32, converted once per row so the group loops do
// plain float loads.
inline void row_params(const WeightMatrix& w, int64_t r, int64_t groups, float* scale, float* bias) {
  const int64_t p0 = r * groups;
  if (w.scale_dtype == DType::BF16) {
    const auto* s = static_cast<const uint16_t*>(w.scales) + p0;
    const auto* b = static_cast<const uint16_t*>(w.biases) + p0;
    for (int64_t g = 0; g < groups; ++g) scale[g] = bf16_to_float(s[g]), bias[g] = bf16_to_float(b[g]);
  } else {
    for (int64_t g = 0; g < groups; ++g)
      scale[g] = load_param(w.scales, w.scale_dtype, p0 + g),
      bias[g] = load_param(w.biases, w.scale_dtype, p0 + g);
  }
}

// Dequantizes W[row, c0 .. c0 + out.size()) to fp32 (any supported dtype and bit width).
void dequantize_span(const WeightMatrix& w, int64_t row, int64_t c0, std::span<float> out);

// Row kernels: for r in [r0, r1) and t < a.T, a.y[t * w.rows + r] = dot(x[t], W[r]). `scratch` holds at
// least w.cols floats (the caller allocates it once per call and thread).
void rows_portable(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1, std::span<float> scratch);
void rows_avx2(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1, std::span<float> scratch);
void rows_avx512(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1, std::span<float> scratch);

// Calls kernel.template operator()<B, kBf16>() for an int8-tiled matrix: its code width (4 or 8) and whether
// its tiles hold BF16 scales and biases (else F32).
template <typename Kernel>
inline void with_int8_format(const WeightMatrix& w, Kernel&& kernel) {
  const bool bf16 = w.scale_dtype == DType::BF16;
  if (w.bits == 8)
    return bf16 ? kernel.template operator()<8, true>() : kernel.template operator()<8, false>();
  return bf16 ? kernel.template operator()<4, true>() : kernel.template operator()<4, false>();
}

// QuantDot::Int8 (matmul_int8.cpp: AVX-512 VNNI; matmul_int8_avx2.cpp: AVX2, the same results).
// int8_format: whether the kernels take this matrix. quantize_x_int8 fills xi [T, cols] (int8 in the order
// of the B-bit words), xi_scale [T, cols / 64] and group_sum [T, cols / group_size] (sums of the rounded x,
// for RowArgs::xsum); tiles_int8 is the kernel over tiles [tile0, tile1) of w.tiles
// (cpu::with_int8_tiles), each kInt8TileRows output rows. The _avx2 pair does the same on AVX2.
inline constexpr int64_t kInt8TileRows = 16;
inline constexpr int64_t kInt8PanelColumns = 1024;  // columns of a panel (see matmul_int8.cpp)
struct Int8TileLayout {
  int64_t words = 0, groups = 0;                  // per row
  int64_t param_bytes = 0;                        // 2 (BF16 scales and biases) or 4 (F32)
  int64_t group_code_bytes = 0, group_bytes = 0;  // per group of a tile: its codes, and with its parameters
  int64_t panel_groups = 0;                       // groups per panel (the last panel may have fewer)
  int64_t tiles = 0;
  // Where group g of a tile starts, from the start of the tiles.
  int64_t group_offset(int64_t tile, int64_t g) const {
    const int64_t panel = g / panel_groups, first = panel * panel_groups;
    const int64_t in_panel = std::min(panel_groups, groups - first);
    return (first * tiles + tile * in_panel + (g - first)) * group_bytes;
  }
  int64_t total_bytes() const { return tiles * groups * group_bytes; }
};
bool int8_format(const WeightMatrix& w);
Int8TileLayout int8_tile_layout(const WeightMatrix& w);
void quantize_x_int8(const WeightMatrix& w, const float* x, int64_t T, int8_t* xi, float* xi_scale,
                     float* group_sum);
void tiles_int8(const WeightMatrix& w, const RowArgs& a, int64_t tile0, int64_t tile1);
void quantize_x_int8_avx2(const WeightMatrix& w, const float* x, int64_t T, int8_t* xi, float* xi_scale,
                          float* group_sum);
void tiles_int8_avx2(const WeightMatrix& w, const RowArgs& a, int64_t tile0, int64_t tile1);

// The x order rows_avx2 / rows_avx512 read for this matrix (validated by the driver).
XOrder x_order_avx2(const WeightMatrix& w);
XOrder x_order_avx512(const WeightMatrix& w);

// Tile kernels of the matrix-matrix path: c[i * kTileN + j] = sum_k xrows[i][k] * panel[k * kTileN + j]
// for i < kTileM, j < kTileN, k < kc.
inline constexpr int kTileM = 6;
inline constexpr int kTileN = 16;
void tile_portable(const float* const* xrows, const float* panel, int64_t kc, float* c);
void tile_avx2(const float* const* xrows, const float* panel, int64_t kc, float* c);

}  // namespace mtplx::cpu::detail

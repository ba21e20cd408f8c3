// Device pieces shared by the tensor-core GEMMs (matmul_mma.cu and matmul_wgmma.cu, T > 8 rows): the layout
// of the split activations, the kernels' arguments, exact fp16 codes, the mma.sync call, cp.async, scales.
#pragma once

#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "backend/cuda/matmul_mma.h"
#include "base/dtype.h"

namespace mtplx::cuda {

// Split activations (split_activations, matmul_mma.h: the two layouts): 256 bytes of hi/lo fp16 halves per
// activation row and 64-column slice. SplitLayout::kFragments: 16 chunks of 16 bytes; chunk p = 4s + c holds
// columns 16c + 4s .. + 3 of x P as hi[4] then lo[4], i.e. the operand a lane with c = lane % 4 feeds to
// mma step s (k slots 2c, 2c+1 | 2c+8, 2c+9). SplitLayout::kTiles: 128 rows of a slice as one 32 KiB tile.
constexpr int kSlice = 64;           // columns per slice (a quantization group, or part of one)
constexpr int kChunkBytes = 16;      // kFragments: hi[4] + lo[4] fp16, four columns of one row
constexpr int kSplitRowBytes = 256;  // one row of one slice
constexpr int kTileTokens = 128;     // kTiles: rows per tile
constexpr int kTileBytes = kTileTokens * kSplitRowBytes;  // one tile of one slice: hi plane, then lo

// Bytes of one weight row within a slice.
template <int kBits>
constexpr int slice_row_bytes() {
  return kSlice * kBits / 8;
}

// Arguments of both GEMM kernels: the split activations, the weight's device arrays, the output.
struct GemmArgs {
  const uint4* split;
  const float* sums;
  const float* inverse;  // 1 / P per row of x
  const uint8_t* w;
  const uint8_t* scales;
  const uint8_t* biases;
  DType scale_dtype;
  int64_t T, rows, cols;
  int group_size;
  float* y;
};
inline GemmArgs gemm_args(const WeightMatrix& w, const SplitActivations& split, float* y, int64_t T) {
  return {static_cast<const uint4*>(split.chunks),
          split.sums,
          split.inverse,
          static_cast<const uint8_t*>(w.data),
          static_cast<const uint8_t*>(w.scales),
          static_cast<const uint8_t*>(w.biases),
          w.scale_dtype,
          T,
          w.rows,
          w.cols,
          w.group_size,
          y};
}

__device__ __forceinline__ void mma(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                    uint32_t b0, uint32_t b1) {
  // Not volatile: registers in, registers out, so the compiler may interleave it with other work.
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Two codes as an fp16x2 of their integer values (exact): 0x6400 | q is the fp16 of 1024 + q (q < 1024),
// so subtracting 1024 is exact. Bytes `first` and `first + 1` of a word, or nibbles j and j + 1.
__device__ __forceinline__ uint32_t minus_1024(uint32_t biased) {
  const __half2 v = __hsub2(*reinterpret_cast<const __half2*>(&biased), __floats2half2_rn(1024.0f, 1024.0f));
  return *reinterpret_cast<const uint32_t*>(&v);
}
__device__ __forceinline__ uint32_t f16x2_of_bytes(uint32_t word, int first) {
  return minus_1024(__byte_perm(word, 0x64646464u, first == 0 ? 0x4140u : 0x4342u));
}
__device__ __forceinline__ uint32_t f16x2_of_nibbles(uint32_t word, int j) {
  const uint32_t t = word >> (4 * j);
  return minus_1024((t & 0xFu) | ((t << 12) & 0xF0000u) | 0x64006400u);
}

// x = hi + lo for two values, as two fp16x2 words (hi = fp16(x), lo = fp16(x - hi)): ~22 significant bits
// through two fp16 operands.
__device__ __forceinline__ void split_fp16x2(float x, float y, uint32_t& hi, uint32_t& lo) {
  const __half2 h = __floats2half2_rn(x, y);
  const __half2 l = __floats2half2_rn(x - __low2float(h), y - __high2float(h));
  hi = *reinterpret_cast<const uint32_t*>(&h);
  lo = *reinterpret_cast<const uint32_t*>(&l);
}

// A lane's codes of one row within a slice (`codes`: the row's slice bytes in shared memory), columns 16c ..
// 16c + 15, as words: 4 of 8-bit codes or 2 of 4-bit (one 16- or 8-byte load).
template <int kBits>
__device__ __forceinline__ void lane_code_words(const uint8_t* codes, int c, uint32_t (&words)[kBits / 2]) {
  if constexpr (kBits == 8) {
    const uint4 v = *reinterpret_cast<const uint4*>(codes + 16 * c);
    words[0] = v.x, words[1] = v.y, words[2] = v.z, words[3] = v.w;
  } else {
    static_assert(kBits == 4);
    const uint2 v = *reinterpret_cast<const uint2*>(codes + 8 * c);
    words[0] = v.x, words[1] = v.y;
  }
}

// The two fp16 pairs of k step s (mma.sync or wgmma) from a lane's words of one row's codes, columns 16c ..
// 16c + 15 (4 words of 8-bit codes, 2 of 4-bit): columns 16c + 4s + {0, 1} and + {2, 3}, which the split's k
// order puts in the k slots {2c, 2c + 1} and {2c + 8, 2c + 9}.
template <int kBits>
__device__ __forceinline__ uint2 code_pairs(const uint32_t* words, int s) {
  if constexpr (kBits == 8) {
    return make_uint2(f16x2_of_bytes(words[s], 0), f16x2_of_bytes(words[s], 2));
  } else {
    static_assert(kBits == 4);
    return make_uint2(f16x2_of_nibbles(words[s / 2], 4 * (s % 2)),
                      f16x2_of_nibbles(words[s / 2], 4 * (s % 2) + 2));
  }
}

// cp.async: 16 bytes (L2 only) or 4 bytes into shared memory, committed and waited for in groups.
__device__ __forceinline__ void copy_async16(void* shared, const void* global) {
  const auto address = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(address), "l"(global));
}
__device__ __forceinline__ void copy_async4(void* shared, const void* global) {
  const auto address = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(address), "l"(global));
}
__device__ __forceinline__ void commit_async() {
  asm volatile("cp.async.commit_group;");
}
template <int Pending>
__device__ __forceinline__ void wait_async() {
  asm volatile("cp.async.wait_group %0;" ::"n"(Pending));
}

// Byte offset of the 4-byte word a GEMM copies for scale (or bias) `index`: 16-bit types the aligned pair
// that holds it (scale_from_word picks the half; weight uploads are padded to whole words).
template <typename Index>
__device__ __forceinline__ Index scale_word_offset(Index index, DType dtype) {
  return dtype == DType::F32 ? index * 4 : (index * 2) & ~Index{3};
}

// A scale or bias read from the 4-byte word that holds element `index` (16-bit types: the aligned pair).
__device__ __forceinline__ float scale_from_word(uint32_t word, DType dtype, int64_t index) {
  switch (dtype) {
    case DType::F32:
      return __uint_as_float(word);
    case DType::F16: {
      const auto bits = static_cast<unsigned short>(word >> (16 * (index & 1)));
      return __half2float(__ushort_as_half(bits));
    }
    default:
      return __uint_as_float((word >> (16 * (index & 1))) << 16);
  }
}

// {scale, bias} of a stage's block row `row` (of weight row n0 + row, the last one past the matrix, as
// copied) in `group`, from the stage's words: the scales of its rows_in_block rows, then their biases.
__device__ __forceinline__ float2 stage_scale_bias(const uint32_t* words, int rows_in_block, int row,
                                                   const GemmArgs& a, int64_t n0, int64_t groups,
                                                   int64_t group) {
  const int64_t gi = std::min(n0 + row, a.rows - 1) * groups + group;
  return make_float2(scale_from_word(words[row], a.scale_dtype, gi),
                     scale_from_word(words[rows_in_block + row], a.scale_dtype, gi));
}

}  // namespace mtplx::cuda

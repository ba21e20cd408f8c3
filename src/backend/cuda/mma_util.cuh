// Device pieces shared by the tensor-core GEMMs (matmul_mma.cu and matmul_wgmma.cu, T > 8 rows): the layout
// of the split activations, the kernels' arguments, exact fp16 codes, the mma.sync call, cp.async, scales.
#pragma once

#include <cuda_fp16.h>

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

}  // namespace mtplx::cuda

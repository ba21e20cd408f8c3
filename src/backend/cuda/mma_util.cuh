// Device pieces of the tensor-core GEMM (matmul_mma.cu, T > 8 rows): the fp16 mma, exact fp16 codes, and the
// layout of the split activations.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "base/dtype.h"

namespace mtplx::cuda {

// Split activations (split_activations, matmul_mma.h): per activation row and 64-column slice, 16 chunks of
// 16 bytes; chunk p = 4s + c holds columns 16c + 4s .. + 3 of x P as hi[4] then lo[4] (fp16), i.e. the
// operand a lane with c = lane % 4 feeds to mma step s (k slots 2c, 2c+1 | 2c+8, 2c+9).
constexpr int kSlice = 64;           // columns per slice (a quantization group, or part of one)
constexpr int kChunkBytes = 16;      // hi[4] + lo[4] fp16: four columns of one row
constexpr int kSplitRowBytes = 256;  // one row of one slice: 16 chunks
constexpr int kTileTokens = 128;     // SplitLayout::kTiles: rows per tile
constexpr int kTileBytes = kTileTokens * kSplitRowBytes;  // one tile of one slice: hi plane, then lo

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

// Queues, for 64-column slice j: the scales, then the biases, of weight rows n0 .. n0 + kRowsN (past `rows`:
// the last row) in the group `group`, as the 4-byte words that hold them (16-bit types: the aligned pair,
// scale_from_word picks the half), into words[0, 2 kRowsN); then slice j's sums of activation rows m0 ..
// m0 + kRowsM (past T: the last row) into words[2 kRowsN, 2 kRowsN + kRowsM).
template <int kRowsN, int kRowsM, int kThreads>
__device__ __forceinline__ void load_slice_scales(uint32_t* words, const uint8_t* scales,
                                                  const uint8_t* biases, DType dtype, const float* sums,
                                                  int64_t n0, int64_t rows, int64_t groups, int64_t group,
                                                  int64_t m0, int64_t T, int64_t slices, int64_t j, int tid) {
  for (int i = tid; i < 2 * kRowsN; i += kThreads) {
    const int64_t gi = (n0 + i % kRowsN < rows ? n0 + i % kRowsN : rows - 1) * groups + group;
    const int64_t offset = dtype == DType::F32 ? gi * 4 : (gi * 2) & ~int64_t{3};
    copy_async4(words + i, (i < kRowsN ? scales : biases) + offset);
  }
  for (int i = tid; i < kRowsM; i += kThreads)
    copy_async4(words + 2 * kRowsN + i, sums + (m0 + i < T ? m0 + i : T - 1) * slices + j);
}

}  // namespace mtplx::cuda

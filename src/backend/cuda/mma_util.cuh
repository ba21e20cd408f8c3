// Device pieces of the tensor-core GEMM (matmul_mma.cu, T > 8 rows): the fp16 mma, exact fp16 codes, and the
// layout of the split activations.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace mtplx::cuda {

// Split activations (split_activations, matmul_mma.h): per activation row and 64-column slice, 16 chunks of
// 16 bytes; chunk p = 4s + c holds columns 16c + 4s .. + 3 of x P as hi[4] then lo[4] (fp16), i.e. the
// operand a lane with c = lane % 4 feeds to mma step s (k slots 2c, 2c+1 | 2c+8, 2c+9).
constexpr int kSlice = 64;           // columns per slice (a quantization group, or part of one)
constexpr int kChunkBytes = 16;      // hi[4] + lo[4] fp16: four columns of one row
constexpr int kSplitRowBytes = 256;  // one row of one slice: 16 chunks

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

}  // namespace mtplx::cuda

// Device-side helpers shared by the CUDA backend's kernels: element loads of every weight type, affine
// code extraction, warp and block reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "backend/weight.h"
#include "base/dtype.h"

namespace mtplx::cuda {

// Element i of a dense array of `dtype` (F32, F16 or BF16) as fp32.
__device__ __forceinline__ float load_element(const void* base, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::F16:
      return __half2float(static_cast<const __half*>(base)[i]);
    case DType::BF16:
      return __uint_as_float(uint32_t{static_cast<const uint16_t*>(base)[i]} << 16);
    default:
      return static_cast<const float*>(base)[i];
  }
}

// Code c of a row stored as a little-endian bit stream of `bits`-bit codes in uint32 words (codes may
// straddle a word boundary for 3, 5, 6 and 7 bits).
__device__ __forceinline__ uint32_t affine_code(const uint32_t* row_words, int64_t c, int bits) {
  const int64_t bit = c * bits;
  const int64_t word = bit >> 5;
  const int offset = static_cast<int>(bit & 31);
  uint32_t v = row_words[word] >> offset;
  if (offset + bits > 32) v |= row_words[word + 1] << (32 - offset);
  return v & ((1u << bits) - 1u);
}

// Weight (row, c) of a WeightMatrix's device arrays, dequantized to fp32: scales * q + biases.
struct WeightView {
  const void* data;
  const void* scales;
  const void* biases;
  int64_t rows, cols;
  int64_t words_per_row;
  int bits, group_size;
  DType dtype, scale_dtype;

  __device__ __forceinline__ float at(int64_t row, int64_t c) const {
    if (bits == 0) return load_element(data, dtype, row * cols + c);
    const uint32_t q = affine_code(static_cast<const uint32_t*>(data) + row * words_per_row, c, bits);
    const int64_t g = row * (cols / group_size) + c / group_size;
    return load_element(scales, scale_dtype, g) * static_cast<float>(q) +
           load_element(biases, scale_dtype, g);
  }
};

// The device arrays of a prepared WeightMatrix as a kernel argument.
WeightView weight_view(const WeightMatrix& w);

// The four 8-bit codes of w, lowest byte first, as exact floats: one prmt puts byte j under the exponent of
// 2^23 (0x4B0000qq = 2^23 + q), then 2^23 is subtracted.
__device__ __forceinline__ void decode_bytes(uint32_t w, float (&f)[4]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) f[j] = __uint_as_float(__byte_perm(w, 0x4B000000u, 0x7540u | j)) - 8388608.0f;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// The end of a GEMV block whose warps work in row groups of `group_warps` warps: every warp sums acc[t][r]
// over its lanes, then the first warp of each group (part == 0) adds its group's partial sums, lane
// t * R + r holding the sum of (t, r), and calls finish(lane, sum) on all 32 of its lanes (lanes past T * R
// hold 0), so `finish` may shuffle. All threads of the block must call it.
template <int T, int R, int kWarps, typename Finish>
__device__ __forceinline__ void reduce_row_group_sums(const float (&acc)[T][R], int warp, int lane, int part,
                                                      int group_warps, Finish finish) {
  __shared__ float partial[kWarps][T * R];
#pragma unroll
  for (int t = 0; t < T; ++t)
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float v = warp_sum(acc[t][r]);
      if (lane == 0) partial[warp][t * R + r] = v;
    }
  __syncthreads();
  if (part == 0) {
    float sum = 0;
    if (lane < T * R)
      for (int p = 0; p < group_warps; ++p) sum += partial[warp + p][lane];
    finish(lane, sum);
  }
}

// The same, writing each row group's sums to y[t * rows + row0 + r], dropping rows past `rows`.
template <int T, int R, int kWarps>
__device__ __forceinline__ void store_row_group_sums(const float (&acc)[T][R], int warp, int lane, int part,
                                                     int group_warps, int64_t row0, int64_t rows, float* y) {
  reduce_row_group_sums<T, R, kWarps>(acc, warp, lane, part, group_warps, [&](int i, float sum) {
    const int t = i / R, r = i % R;
    if (i < T * R && row0 + r < rows) y[t * rows + row0 + r] = sum;
  });
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
// `shared` holds 32 floats. Ends with a barrier, so it can be called again at once.
__device__ __forceinline__ float block_sum(float v, float* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  float total = 0;
  for (int w = 0; w < warps; ++w) total += shared[w];
  __syncthreads();
  return total;
}

__device__ __forceinline__ float silu(float x) {
  return x / (1.0f + expf(-x));
}
__device__ __forceinline__ float sigmoid(float x) {
  return 1.0f / (1.0f + expf(-x));
}

// Programmatic dependent launch (cuda::launch): wait until the previous kernel on the stream has finished
// and its writes are visible, then let the next kernel be scheduled (it will wait in turn). Call before
// touching any memory an earlier op writes or reads; only immutable weights may be loaded before it.
__device__ __forceinline__ void begin_dependent() {
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" :::);
}

// A 16-byte load of immutable data streamed once (weights): no L1 allocation, so activations stay in L1.
__device__ __forceinline__ uint4 load_stream(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

inline int blocks_for(int64_t n, int threads) {
  return static_cast<int>((n + threads - 1) / threads);
}

}  // namespace mtplx::cuda

// y = x W^T for T = 1..8 rows (decode and speculative verify) of 8- and 4-bit affine codes on tensor cores.
//
// Why: the fp32 GEMVs spend a decode and T FMAs per weight, so a 3-row verify costs ~1.3x a 1-row step on
// the H100 although both read the same bytes. Here a warp feeds 16 weight rows x 16 columns and the (at
// most 8) activation rows to one mma.sync m16n8k16 (fp16 operands, fp32 accumulation): the per-weight work
// is the code's conversion to fp16, whatever T is.
//
// Numerics, as in the prefill GEMM (matmul_mma.cu): the weight operand is the integer code itself (exact in
// fp16); scales and biases are applied in fp32 per 64-column slice, s * (sum q x) + b * (sum x); each
// activation row's slice is scaled by a power of two P (its largest |x| to just under 2^14) and split into
// fp16 halves x P = hi + lo that both go through the tensor cores: ~22 significant bits per product.
//
// Fragments (PTX m16n8k16 .f16): lane = 4 g + c holds A rows g and g + 8 at k slots {2c, 2c+1, 2c+8, 2c+9},
// B column (activation row) g at the same k slots, and C rows g, g + 8 at columns 2c, 2c + 1. Within a
// slice the k order is free as long as A and B agree, so each lane takes its slots from the 16 columns
// 16c .. 16c + 15 of the slice: one 16-byte (8-bit) or 8-byte (4-bit) load per weight row, and the same
// 16 activations (4-bit: slots of step 2j + h are the nibbles 2h, 2h + 4 | 2h + 1, 2h + 5 of word j, the
// order in which one mask per pair of codes unpacks them).
//
// Work split: a block of kWarps warps owns 32 weight rows (two m16 tiles, sharing each split activation);
// its warps take the slices in turn, each loading its next slice's codes before using the current ones,
// and the block adds the warps' partial sums at the end.
#include <cuda_fp16.h>

#include <algorithm>
#include <type_traits>

#include "backend/cuda/device_util.cuh"
#include "backend/cuda/gemv.h"

namespace mtplx::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kTiles = 2;  // m16 tiles per block
constexpr int kBlockRows = 16 * kTiles;
constexpr int kSlice = 64;

// What one lane reads of one slice: 16 codes per weight row (rows g and g + 8 of each tile) and those rows'
// scale and bias, loaded a slice ahead of their use.
template <int BITS>
struct SliceCodes {
  using Word = std::conditional_t<BITS == 8, uint4, uint2>;
  Word rows[kTiles][2];
  float scale[kTiles][2], bias[kTiles][2];
};

struct Weights {
  const uint32_t* codes;
  const void* scales;
  const void* biases;
  DType scale_dtype;
  int64_t words_per_row, groups, group_size;
};

template <int BITS>
__device__ __forceinline__ void load_slice(const Weights& w, const int64_t (&row)[kTiles][2], int64_t slice,
                                           int c, SliceCodes<BITS>& out) {
  const int64_t group = slice * kSlice / w.group_size;
#pragma unroll
  for (int m = 0; m < kTiles; ++m)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const uint32_t* base = w.codes + row[m][h] * w.words_per_row;
      if constexpr (BITS == 8) {
        out.rows[m][h] = load_stream(reinterpret_cast<const uint4*>(base + slice * 16) + c);
      } else {
        out.rows[m][h] = __ldg(reinterpret_cast<const uint2*>(base + slice * 8) + c);
      }
      out.scale[m][h] = load_element(w.scales, w.scale_dtype, row[m][h] * w.groups + group);
      out.bias[m][h] = load_element(w.biases, w.scale_dtype, row[m][h] * w.groups + group);
    }
}

// Two codes as a half2 of exact integers: bytes or nibbles placed in the mantissa of 1024 (0x6400), minus
// 1024.
__device__ __forceinline__ uint32_t exact_half2(uint32_t bits_with_1024) {
  const __half2 v = __hsub2(*reinterpret_cast<const __half2*>(&bits_with_1024), __float2half2_rn(1024.0f));
  return *reinterpret_cast<const uint32_t*>(&v);
}

// A registers of mma step s (0..3) for one weight row: {slots 2c, 2c+1} and {slots 2c+8, 2c+9}.
template <int BITS>
__device__ __forceinline__ void a_pair(const typename SliceCodes<BITS>::Word& codes, int s, uint32_t& lo,
                                       uint32_t& hi) {
  if constexpr (BITS == 8) {
    const uint32_t word = s == 0 ? codes.x : s == 1 ? codes.y : s == 2 ? codes.z : codes.w;
    lo = exact_half2(__byte_perm(word, 0x64646464u, 0x4140));  // columns 4s, 4s + 1
    hi = exact_half2(__byte_perm(word, 0x64646464u, 0x4342));  // columns 4s + 2, 4s + 3
  } else {
    const uint32_t word = s < 2 ? codes.x : codes.y;
    const int shift = 8 * (s & 1);
    lo = exact_half2(((word >> shift) & 0x000F000Fu) | 0x64006400u);        // nibbles 2h, 2h + 4
    hi = exact_half2(((word >> (shift + 4)) & 0x000F000Fu) | 0x64006400u);  // nibbles 2h + 1, 2h + 5
  }
}

// Columns (within the lane's 16) that B register r (0: slots 2c, 2c+1; 1: slots 2c+8, 2c+9) of step s holds.
template <int BITS>
__device__ __forceinline__ void b_columns(int s, int r, int& first, int& second) {
  if constexpr (BITS == 8) {
    first = 4 * s + 2 * r, second = first + 1;
  } else {
    first = 8 * (s >> 1) + 2 * (s & 1) + r, second = first + 4;
  }
}

__device__ __forceinline__ void mma_f16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t half2_bits(float a, float b) {
  const __half2 h = __floats2half2_rn(a, b);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// One slice: this lane's share of x (activation row g, 16 columns), split and multiplied with the codes of
// both tiles; the products, scaled, go into total (rows g / g + 8 of each tile, activation rows 2c, 2c + 1).
template <int BITS>
__device__ __forceinline__ void multiply_slice(const SliceCodes<BITS>& codes, const float* __restrict__ x,
                                               int64_t cols, int64_t slice, int T, int g, int c,
                                               float (&total)[kTiles][4]) {
  // Activation row g's 16 columns of this slice, its scale P, and (shuffled from lanes 4t) the inverse
  // scale and plain sum of rows 2c and 2c + 1, which this lane's C entries belong to.
  float v[16];
  const float* xs = x + int64_t{g} * cols + slice * kSlice + 16 * c;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float4 f = g < T ? *reinterpret_cast<const float4*>(xs + 4 * i) : make_float4(0, 0, 0, 0);
    v[4 * i] = f.x, v[4 * i + 1] = f.y, v[4 * i + 2] = f.z, v[4 * i + 3] = f.w;
  }
  float largest = 0, sum = 0;
#pragma unroll
  for (int i = 0; i < 16; ++i) largest = fmaxf(largest, fabsf(v[i])), sum += v[i];
#pragma unroll
  for (int o = 1; o <= 2; o <<= 1) {
    largest = fmaxf(largest, __shfl_xor_sync(0xffffffffu, largest, o));
    sum += __shfl_xor_sync(0xffffffffu, sum, o);
  }
  int exponent = 0;
  frexpf(largest, &exponent);
  const int shift = largest > 0 && isfinite(largest) ? std::clamp(14 - exponent, -126, 127) : 0;
  const float scale = ldexpf(1.0f, shift), inverse = ldexpf(1.0f, -shift);
  const float inverse_of[2] = {__shfl_sync(0xffffffffu, inverse, 8 * c),
                               __shfl_sync(0xffffffffu, inverse, 8 * c + 4)};
  const float sum_of[2] = {__shfl_sync(0xffffffffu, sum, 8 * c), __shfl_sync(0xffffffffu, sum, 8 * c + 4)};

  float d[kTiles][4] = {};
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    uint32_t b_hi[2], b_lo[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      int first = 0, second = 0;
      b_columns<BITS>(s, r, first, second);
      const float f0 = v[first] * scale, f1 = v[second] * scale;
      const __half2 h = __floats2half2_rn(f0, f1);
      b_hi[r] = *reinterpret_cast<const uint32_t*>(&h);
      b_lo[r] = half2_bits(f0 - __low2float(h), f1 - __high2float(h));
    }
#pragma unroll
    for (int m = 0; m < kTiles; ++m) {
      uint32_t a[4];
      a_pair<BITS>(codes.rows[m][0], s, a[0], a[2]);
      a_pair<BITS>(codes.rows[m][1], s, a[1], a[3]);
      mma_f16(d[m], a, b_hi[0], b_hi[1]);
      mma_f16(d[m], a, b_lo[0], b_lo[1]);
    }
  }
#pragma unroll
  for (int m = 0; m < kTiles; ++m)
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int t = 0; t < 2; ++t)
        total[m][2 * h + t] +=
            d[m][2 * h + t] * (codes.scale[m][h] * inverse_of[t]) + codes.bias[m][h] * sum_of[t];
}

template <int BITS>
__global__ void __launch_bounds__(kThreads)
    skinny_mma_kernel(Weights w, int64_t rows, int64_t cols, const float* __restrict__ x,
                      float* __restrict__ y, int T) {
  __shared__ float partial[kWarps][kTiles][4][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, c = lane & 3;
  const int64_t row0 = int64_t{blockIdx.x} * kBlockRows, slices = cols / kSlice;
  int64_t row[kTiles][2];
#pragma unroll
  for (int m = 0; m < kTiles; ++m)
#pragma unroll
    for (int h = 0; h < 2; ++h) row[m][h] = std::min<int64_t>(row0 + 16 * m + 8 * h + g, rows - 1);

  float total[kTiles][4] = {};
  // Two buffers named apart (an array indexed at run time would live in local memory): each slice's codes
  // are loaded while the previous slice is multiplied.
  SliceCodes<BITS> even, odd;
  int64_t slice = warp;
  if (slice < slices) load_slice<BITS>(w, row, slice, c, even);  // weights: before the wait
  begin_dependent();
  for (; slice < slices; slice += 2 * kWarps) {
    if (slice + kWarps < slices) load_slice<BITS>(w, row, slice + kWarps, c, odd);
    multiply_slice<BITS>(even, x, cols, slice, T, g, c, total);
    if (slice + kWarps >= slices) break;
    if (slice + 2 * kWarps < slices) load_slice<BITS>(w, row, slice + 2 * kWarps, c, even);
    multiply_slice<BITS>(odd, x, cols, slice + kWarps, T, g, c, total);
  }
#pragma unroll
  for (int m = 0; m < kTiles; ++m)
#pragma unroll
    for (int i = 0; i < 4; ++i) partial[warp][m][i][lane] = total[m][i];
  __syncthreads();
  if (warp != 0) return;
#pragma unroll
  for (int m = 0; m < kTiles; ++m)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float result = 0;
#pragma unroll
      for (int k = 0; k < kWarps; ++k) result += partial[k][m][i][lane];
      const int64_t r = row0 + 16 * m + 8 * (i / 2) + g;
      const int t = 2 * c + (i & 1);
      if (r < rows && t < T) y[int64_t{t} * rows + r] = result;
    }
}

}  // namespace

bool gemv_mma_supported(const WeightMatrix& w) {
  return w.quantized() && (w.bits == 8 || w.bits == 4) && w.cols % kSlice == 0 && w.group_size % kSlice == 0;
}

void gemv_mma(const WeightMatrix& w, const float* x, float* y, int64_t T, Queue queue) {
  const auto blocks = static_cast<unsigned>((w.rows + kBlockRows - 1) / kBlockRows);
  const Weights view{static_cast<const uint32_t*>(w.data),
                     w.scales,
                     w.biases,
                     w.scale_dtype,
                     w.words_per_row(),
                     w.cols / w.group_size,
                     w.group_size};
  const auto kernel = w.bits == 8 ? skinny_mma_kernel<8> : skinny_mma_kernel<4>;
  launch(kernel, blocks, kThreads, 0, queue, view, w.rows, w.cols, x, y, static_cast<int>(T));
}

}  // namespace mtplx::cuda

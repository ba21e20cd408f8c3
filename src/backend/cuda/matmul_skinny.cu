// y = x W^T for T = 1..8 rows (decode and speculative verify) of 8- and 4-bit affine codes on tensor cores.
//
// Why: the fp32 GEMVs spend a decode and T FMAs per weight, so a 3-row verify costs ~1.3x a 1-row step on
// the H100 although both read the same bytes. Here a warp feeds 16 weight rows x 16 columns and the (at
// most 8) activation rows to one mma.sync m16n8k16 (fp16 operands, fp32 accumulation): the per-weight work
// is the code's conversion to fp16, whatever T is.
//
// Numerics as in the prefill GEMM (matmul_mma.cu, whose pre-pass splits the activations here too): the
// weight operand is the integer code (exact in fp16); each activation row is scaled by a power of two P and
// split into fp16 halves x P = hi + lo, both multiplied on the tensor cores (~22 significant bits); scales
// and biases are applied in fp32 per 64-column slice, s (sum q x) + b (sum x), and 1 / P at the end.
//
// Fragments (PTX m16n8k16 .f16): lane = 4 g + c holds A rows g and g + 8 at k slots {2c, 2c+1, 2c+8, 2c+9},
// B column (activation row) g at the same slots, and C rows g, g + 8 at columns (activation rows) 2c, 2c + 1.
// In mma step s those slots stand for columns 16c + 4s + {0, 1 | 2, 3} of the slice (mma_util.cuh), so a
// lane's codes of a row are one 16-byte (8-bit) or 8-byte (4-bit) load and its activations one split chunk
// per step.
//
// Work split: a block of kWarps warps owns 32 weight rows (two m16 tiles); its warps take the slices in
// turn, each loading its next slice while it multiplies the current one, and the block adds the warps'
// partial sums at the end.
//
// Status (H100, docs/benchmarks.md): exact to ~1e-6 and nearly flat in T, but 2.6x slower than the fp32
// GEMVs, with or without the activations split in the kernel, so it is off by default. Each warp has one
// 64-byte piece per row and slice in flight, and a 2,560-row matrix makes only 80 blocks: too few bytes in
// flight. Next: coalesced loads of whole row segments staged through shared memory (ldmatrix), several
// slices in flight per warp, and more blocks along K for short matrices.
#include <cuda_fp16.h>

#include <algorithm>
#include <type_traits>

#include "backend/cuda/device_util.cuh"
#include "backend/cuda/gemv.h"
#include "backend/cuda/matmul_mma.h"
#include "backend/cuda/mma_util.cuh"

namespace mtplx::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kTiles = 2;  // m16 tiles per block
constexpr int kBlockRows = 16 * kTiles;

// What one lane reads of one slice: 16 codes per weight row (rows g and g + 8 of each tile) and those rows'
// scale and bias, loaded a slice ahead of their use.
template <int BITS>
struct SliceCodes {
  using Word = std::conditional_t<BITS == 8, uint4, uint2>;
  Word rows[kTiles][2];
  float scale[kTiles][2], bias[kTiles][2];
  uint4 x[4];       // activation row g's split chunks 4s + c, s = 0..3 (zero past T)
  float sum_of[2];  // P times the slice sums of activation rows 2c and 2c + 1 (zero past T)
};

struct Split {
  const uint4* chunks;
  const float* sums;
  const float* inverse;
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

// The activation side of a slice (written by the previous kernel: load only after begin_dependent).
template <int BITS>
__device__ __forceinline__ void load_x(const Split& x, int64_t slices, int64_t slice, int T, int g, int c,
                                       SliceCodes<BITS>& out) {
  const uint4* chunks = x.chunks + (int64_t{g} * slices + slice) * 16 + c;
#pragma unroll
  for (int s = 0; s < 4; ++s) out.x[s] = g < T ? chunks[4 * s] : make_uint4(0, 0, 0, 0);
#pragma unroll
  for (int t = 0; t < 2; ++t) out.sum_of[t] = 2 * c + t < T ? x.sums[(2 * c + t) * slices + slice] : 0.0f;
}

// A registers of mma step s (0..3) for one weight row: columns 4s, 4s + 1 and 4s + 2, 4s + 3 of the
// lane's 16.
template <int BITS>
__device__ __forceinline__ void a_pair(const typename SliceCodes<BITS>::Word& codes, int s, uint32_t& lo,
                                       uint32_t& hi) {
  if constexpr (BITS == 8) {
    const uint32_t word = s == 0 ? codes.x : s == 1 ? codes.y : s == 2 ? codes.z : codes.w;
    lo = f16x2_of_bytes(word, 0);
    hi = f16x2_of_bytes(word, 2);
  } else {
    const uint32_t word = s < 2 ? codes.x : codes.y;
    lo = f16x2_of_nibbles(word, 4 * (s % 2));
    hi = f16x2_of_nibbles(word, 4 * (s % 2) + 2);
  }
}

// One slice: the codes of both tiles times activation rows 0..7, into total (rows g / g + 8 of each tile,
// activation rows 2c, 2c + 1), scaled by the rows' scales, biases and 1 / P.
template <int BITS>
__device__ __forceinline__ void multiply_slice(const SliceCodes<BITS>& codes, const float (&inverse_of)[2],
                                               float (&total)[kTiles][4]) {
  float d[kTiles][4] = {};
#pragma unroll
  for (int s = 0; s < 4; ++s)
#pragma unroll
    for (int m = 0; m < kTiles; ++m) {
      uint32_t a[4];
      a_pair<BITS>(codes.rows[m][0], s, a[0], a[2]);
      a_pair<BITS>(codes.rows[m][1], s, a[1], a[3]);
      mma(d[m], a[0], a[1], a[2], a[3], codes.x[s].x, codes.x[s].y);  // hi
      mma(d[m], a[0], a[1], a[2], a[3], codes.x[s].z, codes.x[s].w);  // lo
    }
#pragma unroll
  for (int m = 0; m < kTiles; ++m)
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int t = 0; t < 2; ++t)
        total[m][2 * h + t] +=
            (d[m][2 * h + t] * codes.scale[m][h] + codes.bias[m][h] * codes.sum_of[t]) * inverse_of[t];
}

template <int BITS>
__global__ void __launch_bounds__(kThreads)
    skinny_mma_kernel(Weights w, int64_t rows, int64_t cols, Split x, float* __restrict__ y, int T) {
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
  // Two buffers named apart (an array indexed at run time would live in local memory): each slice is
  // loaded while the previous one is multiplied.
  SliceCodes<BITS> even, odd;
  int64_t slice = warp;
  if (slice < slices) load_slice<BITS>(w, row, slice, c, even);  // weights: before the wait
  begin_dependent();
  float inverse_of[2];
#pragma unroll
  for (int t = 0; t < 2; ++t) inverse_of[t] = 2 * c + t < T ? x.inverse[2 * c + t] : 0.0f;
  if (slice < slices) load_x<BITS>(x, slices, slice, T, g, c, even);
  for (; slice < slices; slice += 2 * kWarps) {
    if (slice + kWarps < slices) {
      load_slice<BITS>(w, row, slice + kWarps, c, odd);
      load_x<BITS>(x, slices, slice + kWarps, T, g, c, odd);
    }
    multiply_slice<BITS>(even, inverse_of, total);
    if (slice + kWarps >= slices) break;
    if (slice + 2 * kWarps < slices) {
      load_slice<BITS>(w, row, slice + 2 * kWarps, c, even);
      load_x<BITS>(x, slices, slice + 2 * kWarps, T, g, c, even);
    }
    multiply_slice<BITS>(odd, inverse_of, total);
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

void gemv_mma(const WeightMatrix& w, const SplitActivations& x, float* y, int64_t T, Queue queue) {
  const auto blocks = static_cast<unsigned>((w.rows + kBlockRows - 1) / kBlockRows);
  const Weights view{static_cast<const uint32_t*>(w.data),
                     w.scales,
                     w.biases,
                     w.scale_dtype,
                     w.words_per_row(),
                     w.cols / w.group_size,
                     w.group_size};
  const Split split{static_cast<const uint4*>(x.chunks), x.sums, x.inverse};
  const auto kernel = w.bits == 8 ? skinny_mma_kernel<8> : skinny_mma_kernel<4>;
  launch(kernel, blocks, kThreads, 0, queue, view, w.rows, w.cols, split, y, static_cast<int>(T));
  check_launch("gemv_mma");
}

}  // namespace mtplx::cuda

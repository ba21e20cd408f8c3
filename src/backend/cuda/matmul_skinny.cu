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
// Work split: a block owns 16 weight rows (one m16 tile) and its warps take the slices in turn; each warp
// keeps the codes of kDepth slices in registers (the next requested as soon as one is multiplied, the first
// ones before the PDL wait, as weights never change) and the activations of the next slice; short matrices
// get 8 warps a block instead of 4.
//
// Status (H200, docs/benchmarks.md, 2026-11-27): exact to ~8e-7 and flat in T, and at 8 rows faster than
// the fp32 GEMVs (q8 lm_head 423-519 vs 790 us, in_proj_qkv 23 vs 33 us), but at 1-3 rows still about twice
// their time (in_proj_qkv 23 vs 11 us at T = 1; the AR step 200 vs 450 tok/s): 25% occupancy, the warps
// waiting on L1/L2 round trips (ncu), plus the split pre-pass kernel per input. Off by default
// (GemvOptions::mma_from). What it would need: weights repacked at load into the fragment order and staged
// through shared memory by many warps (a Marlin-style pipeline), and the split folded into the kernel.
#include <cuda_fp16.h>

#include <algorithm>
#include <bit>
#include <type_traits>

#include "backend/cuda/device_util.cuh"
#include "backend/cuda/gemv.h"
#include "backend/cuda/matmul_mma.h"
#include "backend/cuda/mma_util.cuh"

namespace mtplx::cuda {
namespace {

// What one lane reads of one slice: 16 codes of weight rows g and g + 8 of the block's tile, and those
// rows' scale and bias.
template <int BITS>
struct SliceCodes {
  using Word = std::conditional_t<BITS == 8, uint4, uint2>;
  Word row[2];
  float scale[2], bias[2];
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
  int64_t words_per_row, groups;
  int group_shift;  // log2 of the slices per quantization group (a power of two: gemv_mma_supported)
};

// Where one lane's weight rows start: its 16-byte (8-bit) or 8-byte (4-bit) pieces of rows g and g + 8,
// and their first scale and bias, computed once per kernel.
template <int BITS>
struct LaneRows {
  using Word = typename SliceCodes<BITS>::Word;
  const Word* codes[2];
  int64_t params[2];
};

template <int BITS>
__device__ __forceinline__ void load_slice(const Weights& w, const LaneRows<BITS>& rows, int64_t slice,
                                           SliceCodes<BITS>& out) {
  const int64_t group = slice >> w.group_shift;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if constexpr (BITS == 8) {
      out.row[h] = load_stream(rows.codes[h] + slice * 4);
    } else {
      out.row[h] = __ldg(rows.codes[h] + slice * 4);
    }
    out.scale[h] = load_element(w.scales, w.scale_dtype, rows.params[h] + group);
    out.bias[h] = load_element(w.biases, w.scale_dtype, rows.params[h] + group);
  }
}

// One lane's activations of one slice: row g's split chunks and P times the slice sums of rows 2c, 2c + 1.
struct SliceActivations {
  uint4 chunks[4];
  float sum_of[2];
};

__device__ __forceinline__ void load_activations(const Split& x, int64_t slices, int64_t slice, int T, int g,
                                                 int c, SliceActivations& out) {
  const uint4* chunks = x.chunks + (int64_t{g} * slices + slice) * 16 + c;
#pragma unroll
  for (int s = 0; s < 4; ++s) out.chunks[s] = g < T ? chunks[4 * s] : make_uint4(0, 0, 0, 0);
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

// One slice: the codes of the tile times activation rows 0..7, into total (rows g, g + 8; activation rows
// 2c, 2c + 1) as s (sum q x P) + b (sum x P).
template <int BITS>
__device__ __forceinline__ void multiply_slice(const SliceCodes<BITS>& codes, const SliceActivations& x,
                                               float (&total)[4]) {
  float hi[4] = {}, lo[4] = {};  // two chains of four mma instead of one of eight
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    uint32_t a[4];
    a_pair<BITS>(codes.row[0], s, a[0], a[2]);
    a_pair<BITS>(codes.row[1], s, a[1], a[3]);
    mma(hi, a[0], a[1], a[2], a[3], x.chunks[s].x, x.chunks[s].y);
    mma(lo, a[0], a[1], a[2], a[3], x.chunks[s].z, x.chunks[s].w);
  }
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int t = 0; t < 2; ++t)
      total[2 * h + t] += (hi[2 * h + t] + lo[2 * h + t]) * codes.scale[h] + codes.bias[h] * x.sum_of[t];
}

template <int BITS, int kWarps, int kDepth>
__global__ void __launch_bounds__(kWarps * 32)
    skinny_mma_kernel(Weights w, int64_t rows, int64_t slices, Split x, float* __restrict__ y, int T) {
  __shared__ float partial[kWarps][4][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, c = lane & 3;
  const int64_t row0 = int64_t{blockIdx.x} * 16;
  LaneRows<BITS> lane_rows;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t row = std::min<int64_t>(row0 + 8 * h + g, rows - 1);
    lane_rows.codes[h] =
        reinterpret_cast<const typename LaneRows<BITS>::Word*>(w.codes + row * w.words_per_row) + c;
    lane_rows.params[h] = row * w.groups;
  }
  // A ring of kDepth slices, indexed only by unrolled loop counters so that it stays in registers.
  SliceCodes<BITS> ring[kDepth];
#pragma unroll
  for (int i = 0; i < kDepth; ++i)
    if (warp + i * kWarps < slices) load_slice<BITS>(w, lane_rows, warp + i * kWarps, ring[i]);
  begin_dependent();
  // The activations one slice ahead (L1/L2 hits, but a round trip each).
  SliceActivations now;
  if (warp < slices) load_activations(x, slices, warp, T, g, c, now);
  float total[4] = {};
  for (int64_t first = warp; first < slices; first += kDepth * kWarps) {
#pragma unroll
    for (int i = 0; i < kDepth; ++i) {
      const int64_t slice = first + i * kWarps;
      if (slice < slices) {
        SliceActivations next;
        if (slice + kWarps < slices) load_activations(x, slices, slice + kWarps, T, g, c, next);
        multiply_slice<BITS>(ring[i], now, total);
        if (slice + kDepth * kWarps < slices)
          load_slice<BITS>(w, lane_rows, slice + kDepth * kWarps, ring[i]);
        now = next;
      }
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) partial[warp][i][lane] = total[i];
  __syncthreads();
  if (warp != 0) return;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float result = 0;
#pragma unroll
    for (int k = 0; k < kWarps; ++k) result += partial[k][i][lane];
    const int64_t r = row0 + 8 * (i / 2) + g;
    const int t = 2 * c + (i & 1);
    if (r < rows && t < T) y[int64_t{t} * rows + r] = result * x.inverse[t];
  }
}

}  // namespace

bool gemv_mma_supported(const WeightMatrix& w) {
  return w.quantized() && (w.bits == 8 || w.bits == 4) && w.cols % kSlice == 0 &&
         w.group_size % kSlice == 0 && std::has_single_bit(static_cast<unsigned>(w.group_size / kSlice));
}

void gemv_mma(const WeightMatrix& w, const SplitActivations& x, float* y, int64_t T, Queue queue) {
  const auto blocks = static_cast<unsigned>((w.rows + 15) / 16);
  const Weights view{static_cast<const uint32_t*>(w.data),
                     w.scales,
                     w.biases,
                     w.scale_dtype,
                     w.words_per_row(),
                     w.cols / w.group_size,
                     std::countr_zero(static_cast<unsigned>(w.group_size / kSlice))};
  const Split split{static_cast<const uint4*>(x.chunks), x.sums, x.inverse};
  const int64_t slices = w.cols / kSlice;
  // Slices in flight per warp: 4 unless GemvOptions::batch forces 2, 4 or 8 (benchmarks compare; deeper
  // rings cost registers and so resident warps: 8 measured slower for both widths); 8 warps a block while
  // the grid would leave SMs with under ~4 blocks of 4.
  const int depth = queue.gemv.batch == 2 || queue.gemv.batch == 8 ? queue.gemv.batch : 4;
  const bool short_matrix = blocks < 4u * static_cast<unsigned>(queue.context->sm_count);
  auto run = [&]<int BITS, int kDepth>() {
    const auto kernel =
        short_matrix ? skinny_mma_kernel<BITS, 8, kDepth> : skinny_mma_kernel<BITS, 4, kDepth>;
    launch(kernel, blocks, (short_matrix ? 8 : 4) * 32, 0, queue, view, w.rows, slices, split, y,
           static_cast<int>(T));
  };
  auto by_depth = [&]<int BITS>() {
    if (depth == 2)
      run.template operator()<BITS, 2>();
    else if (depth == 4)
      run.template operator()<BITS, 4>();
    else
      run.template operator()<BITS, 8>();
  };
  if (w.bits == 8)
    by_depth.template operator()<8>();
  else
    by_depth.template operator()<4>();
  check_launch("gemv_mma");
}

}  // namespace mtplx::cuda

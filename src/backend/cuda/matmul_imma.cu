// y = x W^T for T = 1..8 rows (decode and speculative verify) of 8- and 4-bit affine codes on the integer
// tensor cores (mma.sync m16n8k32, u8 codes times s8 activations, s32 sums).
//
// Why: the fp32 GEMVs spend a decode and T FMAs per weight, so a 3-row verify costs ~1.5x a 1-row step
// although both read the same bytes. Here an 8-bit code is the A operand as it lies in memory (a 4-bit one
// after a mask or a shift), so the per-weight work does not grow with T and has no conversion at all (an
// earlier fp16 form converted every code and ran two mma per 16 columns; it measured slower in the step).
//
// Numerics: a pre-pass (pieces_kernel) writes each activation row's 64-column slices in fixed point: with P
// a power of two that puts the slice's largest |x| in [2^21, 2^22), X = rint(x P) is split into three
// signed bytes, X = h 2^16 + m 2^8 + l (each in [-128, 127]); those are the B operands of three integer
// mma (exact sums). Per slice and row, in fp32: s (H 2^16 + M 2^8 + L) / P + b sum(x), the GEMV's form,
// with sum(x) the slice's fp32 sum. So each value keeps 22 bits relative to its slice's largest, which
// puts the product within the fp32 kernels' tolerance (tests: 1e-5 of the CPU backend).
//
// Fragments (PTX m16n8k32 .u8/.s8): lane = 4 g + c holds A rows g and g + 8 at k slots 4c..4c+3 (a0, a1)
// and 16+4c..16+4c+3 (a2, a3), B column g (activation row g) at the same slots, and C rows g, g + 8 at
// columns (activation rows) 2c, 2c + 1. The k order inside a slice is free as long as A and B agree, so a
// lane reads 16 columns of each of its two rows in one load (8-bit: 16 bytes; 4-bit: 8 bytes, whose low
// and high nibbles of each word are two A registers) and the pre-pass stores each row's bytes in that
// order (for 4-bit codes: per 8 columns the even ones, then the odd ones).
//
// Work split: a block owns 16 weight rows (one m16 tile) and its warps take the slices in turn; each warp
// keeps the codes, scales and biases of kDepth slices in registers (the first ones requested before the
// PDL wait, as weights never change); the block copies the pre-pass's output into shared memory first
// (global memory, one slice ahead, past kStagedBytes).
//
// Status (H200, docs/benchmarks.md, 2026-11-28): exact to ~1e-6 and nearly flat in T (a verify of 3 rows
// 1.14x one row with it for every matrix), at 8 rows the fastest GEMV for most of the step's matrices (LM
// head 345 vs 633 us), but at 1-3 rows slower than the fp32 kernels (in_proj_qkv 17.6 vs 10.4 us at T = 1,
// 18.4 vs 15.6 at T = 3; the AR step 244 vs 448 tok/s). So by default it serves only matrices of 5,120 rows
// and columns or more from 3 rows on (GemvOptions::mma_large_from: the Qwen3.6-27B shape, whose 3..5-row
// verify it made 5-24% faster), every matrix only when asked (GemvOptions::mma_from). ncu: the
// warps wait on their weight loads (L1TEX scoreboard, 56% of stalls) at 24% occupancy, DRAM at 25%; the
// pre-pass is a kernel of ~3 us per input; matrices of 2,560 rows give 160 blocks. Next: bytes in flight
// without registers (cp.async rings in shared memory), split-K for short matrices, the pre-pass folded
// into the kernels that write x.
#include <algorithm>
#include <bit>
#include <cmath>
#include <type_traits>

#include "backend/cuda/device_util.cuh"
#include "backend/cuda/gemv.h"

namespace mtplx::cuda {
namespace {

constexpr int kSlice = 64;                   // columns per slice: a quantization group, or part of one
constexpr int kPieces = 3;                   // bytes per activation value: X = h 2^16 + m 2^8 + l
constexpr int kPieceBytes = 64;              // one slice of one activation row, one piece
constexpr int64_t kStagedBytes = 40 * 1024;  // the most a block stages (under the 48 KB default limit)

__device__ __forceinline__ void imma(int (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                     uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Where column j (0..63) of a slice goes among the slice's 64 piece bytes: lane c's 16 columns at 16c, in
// the order its A registers hold them (8-bit: as in memory; 4-bit: per word the even nibbles, then the odd).
__device__ __forceinline__ int piece_position(int j, int bits) {
  if (bits == 8) return j;
  const int in_word = j % 8;
  return (j / 8) * 8 + (in_word % 2) * 4 + in_word / 2;
}

// Converts item = slice * T + n (64 values of activation row n) into its pieces, sum and 1 / P; one warp,
// lane l takes columns 2l, 2l + 1.
__device__ __forceinline__ void convert_item(const float* __restrict__ x, int64_t cols, int T, int bits,
                                             int64_t item, int lane, int8_t* pieces, float* sums,
                                             float* inverse) {
  const int64_t slice = item / T;
  const int n = static_cast<int>(item % T);
  const float2 v = reinterpret_cast<const float2*>(x + n * cols + slice * kSlice)[lane];
  const float largest = warp_max(fmaxf(fabsf(v.x), fabsf(v.y)));
  const float sum = warp_sum(v.x + v.y);
  // inf or NaN anywhere: the slice's products are NaN, as the fp32 kernels' would be (or inf).
  const bool finite = isfinite(largest) && isfinite(sum);
  int exponent = 0;  // largest = f 2^exponent, f in [0.5, 1): largest 2^(22 - exponent) < 2^22
  frexpf(largest, &exponent);
  const int shift = finite && largest > 0 ? std::clamp(22 - exponent, -126, 126) : 0;
  const float scale = ldexpf(1.0f, shift);
  const float value[2] = {v.x, v.y};
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    const int X = finite ? __float2int_rn(value[k] * scale) : 0;
    const int low = static_cast<int8_t>(X & 0xFF);
    const int rest = (X - low) >> 8;  // exact: X - low is a multiple of 256
    const int mid = static_cast<int8_t>(rest & 0xFF);
    const int high = (rest - mid) >> 8;  // |X| <= 2^22: |high| <= 65
    const int at = piece_position(2 * lane + k, bits);
    int8_t* out = pieces + (slice * kPieces * T + n) * kPieceBytes + at;
    out[0] = static_cast<int8_t>(high);
    out[T * kPieceBytes] = static_cast<int8_t>(mid);
    out[2 * T * kPieceBytes] = static_cast<int8_t>(low);
  }
  if (lane == 0) {
    sums[item] = sum;
    inverse[item] = finite ? ldexpf(1.0f, -shift) : __int_as_float(0x7FC00000);
  }
}

// The pre-pass: one warp per item.
constexpr int kPieceWarps = 8;
__global__ void __launch_bounds__(kPieceWarps * 32)
    pieces_kernel(const float* __restrict__ x, int64_t cols, int T, int bits, int8_t* __restrict__ pieces,
                  float* __restrict__ sums, float* __restrict__ inverse) {
  begin_dependent();
  const int64_t item = int64_t{blockIdx.x} * kPieceWarps + (threadIdx.x >> 5);
  if (item < cols / kSlice * T) convert_item(x, cols, T, bits, item, threadIdx.x & 31, pieces, sums, inverse);
}

// The pre-pass's output, one block of device memory: the pieces, then the sums and the inverses (each
// start and the end on 16 bytes, so a block can copy it into shared memory as uint4).
struct Layout {
  int64_t sums, inverse, bytes;  // byte offsets of the arrays, and the size
};
__host__ __device__ inline int64_t round16(int64_t n) {
  return (n + 15) / 16 * 16;
}
__host__ __device__ inline Layout layout_of(int64_t T, int64_t cols) {
  const int64_t items = T * (cols / kSlice);
  const int64_t sums = items * kPieces * kPieceBytes, inverse = sums + round16(items * 4);
  return {sums, inverse, inverse + round16(items * 4)};
}

struct Codes {
  const uint32_t* words;
  const void* scales;
  const void* biases;
  DType scale_dtype;
  int64_t words_per_row, groups;
  int group_shift;  // log2 of the slices per quantization group
};

struct Pieces {
  const int8_t* bytes;
  const float* sums;
  const float* inverse;
};

// One lane's share of one slice: 16 columns of weight rows g and g + 8, and those rows' scale and bias.
template <int BITS>
struct SliceCodes {
  using Word = std::conditional_t<BITS == 8, uint4, uint2>;
  Word row[2];
  float scale[2], bias[2];
};

template <int BITS>
struct LaneRows {
  using Word = typename SliceCodes<BITS>::Word;
  const Word* codes[2];  // the lane's 16 columns of slice 0
  int64_t params[2];     // index of the row's first scale
};

template <int BITS>
__device__ __forceinline__ LaneRows<BITS> lane_rows_of(const Codes& w, int64_t rows, int64_t tile, int g,
                                                       int c) {
  LaneRows<BITS> out;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t row = std::min<int64_t>(tile * 16 + 8 * h + g, rows - 1);  // a partial tile repeats a row
    out.codes[h] =
        reinterpret_cast<const typename LaneRows<BITS>::Word*>(w.words + row * w.words_per_row) + c;
    out.params[h] = row * w.groups;
  }
  return out;
}

template <int BITS>
__device__ __forceinline__ void load_slice(const Codes& w, const LaneRows<BITS>& rows, int64_t slice,
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

// One lane's activations of one slice: row g's three pieces (its 16 bytes of each), and the slice sums and
// 1 / P of rows 2c and 2c + 1. Rows at or past T are zeros.
struct SliceActivations {
  uint4 piece[kPieces];
  float sum[2], inverse[2];
};

__device__ __forceinline__ void load_activations(const Pieces& x, int64_t slice, int T, int g, int c,
                                                 SliceActivations& out) {
  const uint4* base = reinterpret_cast<const uint4*>(x.bytes + (slice * kPieces * T + g) * kPieceBytes) + c;
#pragma unroll
  for (int p = 0; p < kPieces; ++p)
    out.piece[p] = g < T ? base[p * T * (kPieceBytes / 16)] : make_uint4(0, 0, 0, 0);
#pragma unroll
  for (int t = 0; t < 2; ++t) {
    const int n = 2 * c + t;
    out.sum[t] = n < T ? x.sums[slice * T + n] : 0.0f;
    out.inverse[t] = n < T ? x.inverse[slice * T + n] : 0.0f;
  }
}

// A registers of mma step s (0, 1) for one weight row: the lane's columns of k slots 4c.. and 16+4c..
template <int BITS>
__device__ __forceinline__ void a_pair(const typename SliceCodes<BITS>::Word& codes, int s, uint32_t& first,
                                       uint32_t& second) {
  if constexpr (BITS == 8) {
    first = s == 0 ? codes.x : codes.z;
    second = s == 0 ? codes.y : codes.w;
  } else {
    const uint32_t word = s == 0 ? codes.x : codes.y;
    first = word & 0x0F0F0F0Fu;          // nibbles 0, 2, 4, 6 as bytes
    second = (word >> 4) & 0x0F0F0F0Fu;  // nibbles 1, 3, 5, 7
  }
}

// One slice: the tile's codes times activation rows 0..7, into total (rows g, g + 8; activation rows 2c,
// 2c + 1) as s (sum q x) + b (sum x).
template <int BITS>
__device__ __forceinline__ void multiply_slice(const SliceCodes<BITS>& codes, const SliceActivations& x,
                                               float (&total)[4]) {
  int sums[kPieces][4] = {};
#pragma unroll
  for (int s = 0; s < 2; ++s) {
    uint32_t a[4];
    a_pair<BITS>(codes.row[0], s, a[0], a[2]);
    a_pair<BITS>(codes.row[1], s, a[1], a[3]);
#pragma unroll
    for (int p = 0; p < kPieces; ++p) {
      const uint32_t b0 = s == 0 ? x.piece[p].x : x.piece[p].z;
      const uint32_t b1 = s == 0 ? x.piece[p].y : x.piece[p].w;
      imma(sums[p], a[0], a[1], a[2], a[3], b0, b1);
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int h = i / 2, t = i % 2;
    // |M 2^8 + L| < 2^30 fits an int; H < 2^21 is exact in fp32.
    const float q_x =
        fmaf(static_cast<float>(sums[0][i]), 65536.0f, static_cast<float>(sums[1][i] * 256 + sums[2][i]));
    total[i] = fmaf(codes.scale[h], q_x * x.inverse[t], fmaf(codes.bias[h], x.sum[t], total[i]));
  }
}

// kShared: the block first copies the pre-pass's output (layout_of(T, cols).bytes, dynamic shared memory)
// and reads its activations there; else from global memory (L1/L2), one slice ahead.
template <int BITS, int kWarps, int kDepth, bool kShared>
__global__ void __launch_bounds__(kWarps * 32, 768 / (kWarps * 32))
    imma_gemv_kernel(Codes w, int64_t rows, int64_t slices, Pieces x, float* __restrict__ y, int T) {
  __shared__ float partial[kWarps][4][32];
  extern __shared__ uint4 staged[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, c = lane & 3;
  const int64_t row0 = int64_t{blockIdx.x} * 16;
  const LaneRows<BITS> lane_rows = lane_rows_of<BITS>(w, rows, blockIdx.x, g, c);
  // A ring of kDepth slices, indexed only by unrolled loop counters so that it stays in registers.
  SliceCodes<BITS> ring[kDepth];
#pragma unroll
  for (int i = 0; i < kDepth; ++i)
    if (warp + i * kWarps < slices) load_slice<BITS>(w, lane_rows, warp + i * kWarps, ring[i]);
  begin_dependent();
  if constexpr (kShared) {
    const Layout at = layout_of(T, slices * kSlice);
    const uint4* from = reinterpret_cast<const uint4*>(x.bytes);
    for (int64_t i = threadIdx.x; i < at.bytes / 16; i += kWarps * 32) staged[i] = from[i];
    const auto* base = reinterpret_cast<const int8_t*>(staged);
    x = Pieces{base, reinterpret_cast<const float*>(base + at.sums),
               reinterpret_cast<const float*>(base + at.inverse)};
    __syncthreads();
  }
  SliceActivations now;
  if (warp < slices) load_activations(x, warp, T, g, c, now);
  float total[4] = {};
  for (int64_t first = warp; first < slices; first += kDepth * kWarps) {
#pragma unroll
    for (int i = 0; i < kDepth; ++i) {
      const int64_t slice = first + i * kWarps;
      if (slice < slices) {
        if constexpr (kShared) {
          if (slice != warp) load_activations(x, slice, T, g, c, now);
          multiply_slice<BITS>(ring[i], now, total);
        } else {
          SliceActivations next;
          if (slice + kWarps < slices) load_activations(x, slice + kWarps, T, g, c, next);
          multiply_slice<BITS>(ring[i], now, total);
          now = next;
        }
        if (slice + kDepth * kWarps < slices)
          load_slice<BITS>(w, lane_rows, slice + kDepth * kWarps, ring[i]);
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
    if (r < rows && t < T) y[int64_t{t} * rows + r] = result;
  }
}

}  // namespace

bool gemv_imma_supported(const WeightMatrix& w) {
  return w.quantized() && (w.bits == 8 || w.bits == 4) && w.cols % kSlice == 0 &&
         w.group_size % kSlice == 0 && std::has_single_bit(static_cast<unsigned>(w.group_size / kSlice));
}

size_t imma_scratch_bytes(int64_t T, int64_t cols) {
  return static_cast<size_t>(layout_of(T, cols).bytes);
}

ImmaActivations imma_activations(const float* x, int64_t T, int64_t cols, int bits, void* scratch,
                                 Queue queue) {
  const int64_t items = T * (cols / kSlice);
  const Layout at = layout_of(T, cols);
  auto* pieces = static_cast<int8_t*>(scratch);
  auto* sums = reinterpret_cast<float*>(pieces + at.sums);
  auto* inverse = reinterpret_cast<float*>(pieces + at.inverse);
  launch(pieces_kernel, static_cast<unsigned>((items + kPieceWarps - 1) / kPieceWarps), kPieceWarps * 32, 0,
         queue, x, cols, static_cast<int>(T), bits, pieces, sums, inverse);
  check_launch("imma_activations");
  return {pieces, sums, inverse, bits};
}

void gemv_imma(const WeightMatrix& w, const ImmaActivations& x, float* y, int64_t T, Queue queue) {
  require(x.bits == w.bits, "internal error: gemv_imma: activations laid out for other codes");
  const auto blocks = static_cast<unsigned>((w.rows + 15) / 16);
  const Codes codes{static_cast<const uint32_t*>(w.data),
                    w.scales,
                    w.biases,
                    w.scale_dtype,
                    w.words_per_row(),
                    w.cols / w.group_size,
                    std::countr_zero(static_cast<unsigned>(w.group_size / kSlice))};
  const Pieces pieces{static_cast<const int8_t*>(x.pieces), x.sums, x.inverse};
  const int64_t slices = w.cols / kSlice;
  // Slices in flight per warp: 2 unless GemvOptions::batch forces 4 or 8 (deeper rings spill at the
  // register cap of three blocks of 8 warps or six of 4 an SM). 8 warps a block while the grid fits the GPU
  // at once that way, else 4 (one wave for the step's 8k-9k-row matrices).
  const int depth = queue.gemv.batch == 4 || queue.gemv.batch == 8 ? queue.gemv.batch : 2;
  const bool short_matrix = blocks <= 3u * static_cast<unsigned>(queue.context->sm_count);
  // Activations staged in shared memory while they fit in kStagedBytes (GemvOptions::words = 1 forces
  // global memory, for comparison).
  const int64_t staged = layout_of(T, w.cols).bytes;
  const bool shared = staged <= kStagedBytes && queue.gemv.words != 1;
  auto run = [&]<int BITS, int kDepth>() {
    const auto kernel =
        short_matrix
            ? (shared ? imma_gemv_kernel<BITS, 8, kDepth, true> : imma_gemv_kernel<BITS, 8, kDepth, false>)
            : (shared ? imma_gemv_kernel<BITS, 4, kDepth, true> : imma_gemv_kernel<BITS, 4, kDepth, false>);
    launch(kernel, blocks, (short_matrix ? 8 : 4) * 32, shared ? static_cast<size_t>(staged) : 0, queue,
           codes, w.rows, slices, pieces, y, static_cast<int>(T));
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
  check_launch("gemv_imma");
}

}  // namespace mtplx::cuda

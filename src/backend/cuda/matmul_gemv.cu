// The word-interleaved fused GEMV: y = x W^T for T <= 8 rows (decode, speculative verify) over MLX affine
// 4- and 8-bit codes, every weight byte read once for all T rows.
//
// Why another kernel: the classic one (matmul.cu) gives each lane a 16-byte chunk of a row (16 or 32
// columns), so the lanes of a warp read x at a 64- or 128-byte stride: every warp-wide 16-byte load of x
// touches 16 or 32 L1 lines. Those load wavefronts, not weight bytes, bound 4-bit GEMVs (x is 8 floats per
// code byte) and every GEMV at large T (T times the x loads). Here a lane owns a unit of V consecutive
// 32-bit words (V = 1 for 4-bit codes: 8 columns; 2 for 8-bit: 8 columns) of each stretch of 32 V words of
// a row, so a warp's weight load is 128 V contiguous bytes and its x loads are 32 or 64 contiguous bytes
// per lane. Each lane issues U units of each of its R = 4 rows before using any, the first batch before
// griddepcontrol.wait (unless GemvOptions::early < 0): weights never change, so they stream in while the
// previous kernel still runs. Where it serves by default (gemv_wide): 4-bit codes at every T, 8-bit codes
// at T >= 2 (at T = 1 the classic kernel measured as fast or faster in an 8-bit decode step); every variant
// can be forced for comparison (CudaBackend::set_gemv).
//
// Decoding (exact in fp32, as the classic kernel):
//   8-bit  byte q -> prmt into 0x4B0000qq = 2^23 + q, minus 2^23 (2 ops per value)
//   4-bit  nibble q -> 0x3F800000 | q << 19 = 1 + q/16: a shift and a mask/or per word half, then one prmt
//          per value (1.5 ops per value, no subtraction); the offset folds into the bias:
//          sum (s q + b) x = 16 s sum (1 + q/16) x + (b - 16 s) sum x, so per unit only dot - xs is formed.
// A unit lies in one quantization group, so its scale and bias are applied once per unit and row.
// Work layout: a block of 128 threads, KW warps per row group of 4 rows, lanes over the units of the rows.
#include <algorithm>
#include <bit>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/gemv.h"

namespace mtplx::cuda {
namespace {

constexpr int kRows = 4;  // R: output rows per row group
constexpr int kThreads = 128;

struct WideArgs {
  const uint32_t* w;
  const void* scales;
  const void* biases;
  DType scale_dtype;
  int64_t rows, cols;
  int group_shift;  // log2(units per quantization group)
  int kw;           // warps per row group: 1, 2 or 4
  bool early;       // first batch loaded before griddepcontrol.wait
  const float* x;
  float* y;
};

template <int BITS>
struct Decode {
  static constexpr int kPerWord = 32 / BITS;
  // Values of word w in column order: q for 8 bits, 1 + q/16 for 4 bits (see the header).
  __device__ __forceinline__ static void word(uint32_t w, float (&f)[kPerWord]) {
    if constexpr (BITS == 8) {
      decode_bytes(w, f);
    } else {
      static_assert(BITS == 4);
      // Byte k of lo holds nibble 2k, of hi nibble 2k + 1, each as 0x80 | q << 3: mantissa bits 19..22 and
      // the exponent's low bit once moved to byte 2 under 0x3F.
      const uint32_t lo = ((w << 3) & 0x78787878u) | 0x80808080u;
      const uint32_t hi = ((w >> 1) & 0x78787878u) | 0x80808080u;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        f[2 * k] = __uint_as_float(__byte_perm(lo, 0x3F000000u, 0x7044u | (k << 8)));
        f[2 * k + 1] = __uint_as_float(__byte_perm(hi, 0x3F000000u, 0x7044u | (k << 8)));
      }
    }
  }
};

// V consecutive words of a row, streamed (no L1 allocation: x stays in L1).
template <int V>
struct Unit {
  uint32_t w[V];
  __device__ __forceinline__ void load(const uint32_t* p) {
    if constexpr (V == 1) {
      asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(w[0]) : "l"(p));
    } else if constexpr (V == 2) {
      asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];" : "=r"(w[0]), "=r"(w[1]) : "l"(p));
    } else {
      const uint4 v = load_stream(reinterpret_cast<const uint4*>(p));
      w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
    }
  }
};

// Adds unit c (V words, one quantization group or less) of rows q[0..R) times the T rows of x into acc.
template <int BITS, int T, int V>
__device__ __forceinline__ void unit_product(const WideArgs& a, const Unit<V> (&q)[kRows],
                                             const int64_t (&row)[kRows], int64_t c, float (&acc)[T][kRows]) {
  using D = Decode<BITS>;
  constexpr int kN = D::kPerWord;
  float dot[T][kRows], xs[T];
#pragma unroll
  for (int t = 0; t < T; ++t) {
    xs[t] = 0;
#pragma unroll
    for (int r = 0; r < kRows; ++r) dot[t][r] = 0;
  }
#pragma unroll
  for (int v = 0; v < V; ++v) {
    float f[kRows][kN];
#pragma unroll
    for (int r = 0; r < kRows; ++r) D::word(q[r].w[v], f[r]);
#pragma unroll
    for (int t = 0; t < T; ++t) {
      const float* xp = a.x + t * a.cols + (c * V + v) * kN;
#pragma unroll
      for (int j = 0; j < kN; j += 4) {
        const float4 x4 = *reinterpret_cast<const float4*>(xp + j);
        const float xv[4] = {x4.x, x4.y, x4.z, x4.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          xs[t] += xv[k];
#pragma unroll
          for (int r = 0; r < kRows; ++r) dot[t][r] = fmaf(f[r][j + k], xv[k], dot[t][r]);
        }
      }
    }
  }
  const int64_t g = c >> a.group_shift;
  const int64_t groups = a.cols * BITS / (32 * V) >> a.group_shift;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int64_t gi = row[r] * groups + g;
    const float s = load_element(a.scales, a.scale_dtype, gi), b = load_element(a.biases, a.scale_dtype, gi);
#pragma unroll
    for (int t = 0; t < T; ++t) {
      if constexpr (BITS == 4)
        acc[t][r] = fmaf(16.0f * s, dot[t][r] - xs[t], fmaf(b, xs[t], acc[t][r]));
      else
        acc[t][r] = fmaf(s, dot[t][r], fmaf(b, xs[t], acc[t][r]));
    }
  }
}

// Blocks an SM that a kernel's registers must allow (GemvOptions::register_bound; 0 leaves the count to the
// compiler). Left to it, the kernels for T >= 4 rows take 110-175 registers (T accumulators and partial
// dots per row): 3-4 blocks of 4 warps an SM, too few weight loads in flight for the memory. Bound 1 (the
// default) asks 5 blocks (96 registers) from T = 4 on; bound 2 asks 8 at T = 2 and 3, 6 at T = 4 and 5
// past it. A few registers spill (to L1) where the bound is tight. H200, 2026-11-29, one process, q8 4B
// verify of 4 / 5 rows: 3.877 ms with 5 blocks at T = 4 (4.195 with 6, 4.501 as the compiler chose), 4.634
// with 5 at T = 5 (4.823 with 4, 5.175 as chosen); 8 blocks at T = 2 and 3 ran slower (2.878 / 3.558 ms
// against 2.830 / 3.301). 0 is not 1: asked for one block an SM, the compiler took more registers
// everywhere (103 instead of 80 at T = 3, 105 instead of 64 for 4-bit codes at T = 1) and the 3-row verify
// ran 3.95 ms instead of 3.30 in that build.
template <int T, int kBound>
constexpr int min_blocks() {
  if (kBound == 1) return T < 4 ? 0 : 5;
  if (kBound == 2) return T < 2 ? 0 : T <= 3 ? 8 : T == 4 ? 6 : 5;
  return 0;
}

template <int BITS, int T, int V, int U, int kBound = 0>
__global__ void __launch_bounds__(kThreads, min_blocks<T, kBound>()) gemv_wide_kernel(WideArgs a) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int kw = a.kw;
  const int slot = warp / kw;  // row group within the block
  const int part = warp % kw;  // which warp of the row group
  const int64_t row0 = (int64_t{blockIdx.x} * (4 / kw) + slot) * kRows;
  const int64_t units = a.cols * BITS / (32 * V);
  const int64_t stride = 32 * kw;  // lanes of one row group
  const int64_t first = int64_t{part} * 32 + lane;
  int64_t row[kRows];
  const uint32_t* ptr[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    row[r] = std::min<int64_t>(row0 + r, a.rows - 1);  // the last group repeats a row; never stored
    ptr[r] = a.w + row[r] * units * V;
  }

  Unit<V> q[U][kRows];
  const auto load = [&](int64_t base) {
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (base + u * stride < units)
#pragma unroll
        for (int r = 0; r < kRows; ++r) q[u][r].load(ptr[r] + (base + u * stride) * V);
  };
  if (a.early) load(first);
  begin_dependent();  // x is written by the previous kernel; the weights are not

  float acc[T][kRows];
#pragma unroll
  for (int t = 0; t < T; ++t)
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[t][r] = 0;
  for (int64_t base = first; base < units; base += U * stride) {
    if (base != first || !a.early) load(base);
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (base + u * stride < units) unit_product<BITS, T, V>(a, q[u], row, base + u * stride, acc);
  }

  store_row_group_sums<T, kRows, kThreads / 32>(acc, warp, lane, part, kw, row0, a.rows, a.y);
}

// Warps per row group: all four of a block while that still gives 1024 blocks or fewer, then two, then one
// (as the classic kernel).
int warps_for(int64_t row_groups) {
  return row_groups <= 1024 ? 4 : row_groups <= 4096 ? 2 : 1;
}

// Units per lane and row loaded before use: as many as the lane has, up to what the registers allow at
// this T (8, 4 or 2 words of each of 4 rows); one for 8-bit codes at T <= 4 (at T = 3 one unit of 2 words
// measured 8-30% faster than two on the step's larger matrices, H100, 2026-11-26).
int batch_for(int64_t per_lane, int64_t T, int BITS, int V, int forced) {
  const int most = std::max(1, (T <= 2 ? 8 : T <= 4 ? 4 : 2) / V);
  if (forced > 0) return std::min(forced, most);
  if (BITS == 8 && T <= 4) return 1;
  return static_cast<int>(std::min<int64_t>(std::bit_ceil(static_cast<uint64_t>(per_lane)), most));
}

// Words per unit by default: 4-bit codes one (8 columns, x read contiguously by the warp), 8-bit codes
// two (the per-unit scale work is per 8 columns instead of 4; four measured slower at T >= 5).
template <int BITS>
int words_for(int forced) {
  if (forced > 0) return BITS == 4 ? 1 : forced;
  return BITS == 4 ? 1 : 2;
}

template <int BITS, int T, int V>
void launch_v(const WeightMatrix& w, const float* x, float* y, Queue queue) {
  constexpr int kUnit = Decode<BITS>::kPerWord * V;  // columns per unit
  const int64_t row_groups = (w.rows + kRows - 1) / kRows;
  const int64_t units = w.cols / kUnit;
  const int kw = queue.gemv.warps > 0 ? queue.gemv.warps : warps_for(row_groups);
  const int64_t per_lane = (units + 32 * kw - 1) / (32 * kw);
  const int U = batch_for(per_lane, T, BITS, V, queue.gemv.batch);
  const int group_shift = std::countr_zero(static_cast<unsigned>(w.group_size / kUnit));
  const WideArgs args{static_cast<const uint32_t*>(w.data),
                      w.scales,
                      w.biases,
                      w.scale_dtype,
                      w.rows,
                      w.cols,
                      group_shift,
                      kw,
                      queue.gemv.early >= 0,
                      x,
                      y};
  const int64_t per_block = 4 / kw;
  const auto blocks = static_cast<unsigned>((row_groups + per_block - 1) / per_block);
  const auto run = [&]<int UNITS>() {
    // Only the bounds that differ from the compiler's choice get kernels of their own.
    if constexpr (T >= 4)
      if (queue.gemv.register_bound == 1)
        return launch(gemv_wide_kernel<BITS, T, V, UNITS, 1>, blocks, kThreads, 0, queue, args);
    if constexpr (T >= 2)
      if (queue.gemv.register_bound == 2)
        return launch(gemv_wide_kernel<BITS, T, V, UNITS, 2>, blocks, kThreads, 0, queue, args);
    launch(gemv_wide_kernel<BITS, T, V, UNITS>, blocks, kThreads, 0, queue, args);
  };
  if constexpr (V == 1) {
    if (U >= 8)
      run.template operator()<8>();
    else if (U >= 4)
      run.template operator()<4>();
    else
      run.template operator()<2>();
  } else if constexpr (V == 2) {
    if (U >= 4)
      run.template operator()<4>();
    else if (U >= 2)
      run.template operator()<2>();
    else
      run.template operator()<1>();
  } else {
    if (U >= 2)
      run.template operator()<2>();
    else
      run.template operator()<1>();
  }
}

template <int BITS, int T>
void launch_t(const WeightMatrix& w, const float* x, float* y, Queue queue) {
  const int V = words_for<BITS>(queue.gemv.words);
  if constexpr (BITS == 4) {
    launch_v<BITS, T, 1>(w, x, y, queue);
  } else {
    if (V >= 4)
      launch_v<BITS, T, 4>(w, x, y, queue);
    else
      launch_v<BITS, T, 2>(w, x, y, queue);
  }
}

template <int BITS>
void launch_bits(const WeightMatrix& w, const float* x, float* y, int64_t T, Queue queue) {
  switch (T) {
    case 1:
      return launch_t<BITS, 1>(w, x, y, queue);
    case 2:
      return launch_t<BITS, 2>(w, x, y, queue);
    case 3:
      return launch_t<BITS, 3>(w, x, y, queue);
    case 4:
      return launch_t<BITS, 4>(w, x, y, queue);
    case 5:
      return launch_t<BITS, 5>(w, x, y, queue);
    case 6:
      return launch_t<BITS, 6>(w, x, y, queue);
    case 7:
      return launch_t<BITS, 7>(w, x, y, queue);
    default:
      return launch_t<BITS, 8>(w, x, y, queue);
  }
}

}  // namespace

bool gemv_wide_chosen(int path, int64_t T, const GemvOptions& options) {
  if (options.batch != 0 || options.words != 0 || options.warps != 0) return true;  // forced
  // Measured (bench_cuda, H100 and H200; docs/benchmarks.md): at T = 1 single GEMVs of both widths run
  // 10-30% faster here, yet the 8-bit AR step ran 1-2% slower than with the classic kernel in every
  // same-run comparison (2026-11-26), while the 4-bit step ran 3-8% faster (2026-11-27). So this kernel
  // serves 4-bit codes from GemvOptions::wide4_from rows (1) and 8-bit codes from wide8_from rows (2; 5
  // before one unit per batch was chosen at T <= 4) unless forced.
  return T >= (path == 8 ? options.wide8_from : options.wide4_from);
}

bool gemv_wide(const WeightMatrix& w, int path, const float* x, float* y, int64_t T, Queue queue) {
  if (path != 8 && path != 4) return false;  // BF16 stays on the classic kernel (not measured here)
  if (!gemv_wide_chosen(path, T, queue.gemv)) return false;
  const int words = path == 4 ? 1 : words_for<8>(queue.gemv.words) >= 4 ? 4 : 2;
  // Units within one group, a power-of-two number of them per group: the group index is a shift.
  const int unit_cols = 32 / path * words;
  if (w.group_size % unit_cols != 0 || !std::has_single_bit(static_cast<unsigned>(w.group_size / unit_cols)))
    return false;
  if (queue.gemv.warps != 0 && queue.gemv.warps != 1 && queue.gemv.warps != 2 && queue.gemv.warps != 4)
    return false;
  if (path == 8)
    launch_bits<8>(w, x, y, T, queue);
  else
    launch_bits<4>(w, x, y, T, queue);
  return true;
}

}  // namespace mtplx::cuda

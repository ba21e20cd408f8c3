// y = x W^T on the GPU for every WeightMatrix format. Activations are fp32 and so is every product and
// sum; quantized weights are dequantized in registers (w = s q + b), never written out.
//
// T <= 8 rows (decode, speculative verify): a fused GEMV reads each weight byte once for all T rows: the
// word-interleaved kernel of matmul_gemv.cu where it measured faster (4-bit codes alone at every T,
// 8-bit codes at T >= 2), else the classic kernel here (CudaBackend::set_gemv selects either for comparison).
// Classic: a block of 128 threads owns R = 4 output rows per row group; KW warps of the block split a row
// group's columns (more warps in flight for short matrices). Each thread streams 16-byte chunks of the R rows
// (ld.global.nc, no L1 allocation, so x stays in L1; the first chunk before the PDL wait unless
// GemvOptions::early < 0; the next chunk issued before this one's math unless GemvOptions::pipelined is off),
// decodes them with the exponent trick (2^23 + q as a float bit pattern, minus 2^23: exact), and accumulates
// per chunk
//   sum_c (s q_c + b) x_c = s * sum_c q_c x_c + b * sum_c x_c     (a chunk lies in one quantization group)
// for all T rows, so each x value loaded is reused across the R rows. Formats without that fast path
// (2/3/5/6-bit codes, F32/F16 weights, odd widths) take a warp-per-row kernel. From
// GemvOptions::mma_from rows on (off by default), 8/4-bit codes take the integer tensor-core GEMV of
// matmul_imma.cu instead; so do large matrices (5,120 rows and columns or more) from
// GemvOptions::mma_large_from rows on (3 by default).
//
// T > 8 (prefill): the tensor-core GEMMs (exact weight operand, activations split into two fp16 halves):
// for 8-bit and 4-bit codes on Hopper the warpgroup-MMA GEMM of matmul_wgmma.cu (unless
// CudaBackend::set_wgmma_gemm(false)), else the mma.sync GEMM of matmul_mma.cu, which also serves BF16;
// other formats, and every format with CudaBackend::set_mma_gemm(false), take a 64 x 64 output tile per
// block, 16-deep K slices dequantized into shared memory, 4 x 4 outputs per thread, fp32 FMA.
#include <algorithm>
#include <array>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/gemv.h"
#include "backend/cuda/matmul_mma.h"

namespace mtplx {
namespace cuda {
namespace {

constexpr int kRows = 4;  // R: output rows per row group
constexpr int kThreads = 128;
constexpr int kMaxT = 8;

// Values per 32-bit word and their decoding. BITS 16 means dense BF16 (two values per word).
template <int BITS>
struct Codec {
  static constexpr int kPerWord = 32 / BITS;
  __device__ __forceinline__ static void decode(uint32_t w, float (&f)[kPerWord]) {
    if constexpr (BITS == 8) {
      decode_bytes(w, f);
    } else if constexpr (BITS == 4) {
#pragma unroll
      for (int j = 0; j < 8; ++j) f[j] = __uint_as_float(((w >> (4 * j)) & 0xFu) | 0x4B000000u) - 8388608.0f;
    } else {
      f[0] = __uint_as_float(w << 16);
      f[1] = __uint_as_float(w & 0xFFFF0000u);
    }
  }
};

// The up_proj of a paired GEMV (gemv_kernel with kPaired): the same shape and format as the gate weights.
struct UpRows {
  const uint32_t* w;
  const void* scales;
  const void* biases;
};

// The matrices of one classic-GEMV launch: one, or up to kMaxSegments of one format and width that share
// the input (matmul_many at one row), their row groups laid end to end over the grid. Segment i owns the
// blocks from first_block on.
constexpr int kMaxSegments = static_cast<int>(kMaxGroupedMatmuls);
struct GemvSegment {
  const uint32_t* w;
  const void* scales;
  const void* biases;
  float* y;
  int64_t rows;
  unsigned first_block;
};
struct GemvSegments {
  GemvSegment at[kMaxSegments];
  int count;
};

// kPaired: y = silu(x W^T) * (x U^T) for the MLP's gate W and up U in one pass. A row group then holds gate
// rows row0, row0 + 1 and up rows row0, row0 + 1 (each accumulated exactly as alone), and its first warp
// combines them, so the gate and up rows never go to memory and no silu_mul kernel follows.
//
// kGrouped: the segments' matrices in one grid (a block finds its segment by its index); else segment 0.
template <int BITS, int T, int KW, bool kPaired = false, bool kGrouped = false>
__global__ void __launch_bounds__(kThreads)
    gemv_kernel(GemvSegments segments, DType scale_dtype, int64_t cols, int group_size,
                const float* __restrict__ x, bool early, bool pipelined, UpRows up) {
  using C = Codec<BITS>;
  constexpr int kPerChunk = 4 * C::kPerWord;
  constexpr bool kQuantized = BITS <= 8;
  constexpr int kOut = kPaired ? kRows / 2 : kRows;  // output rows per row group
  GemvSegment segment = segments.at[0];
  if constexpr (kGrouped) {
#pragma unroll
    for (int i = 1; i < kMaxSegments; ++i)
      if (i < segments.count && blockIdx.x >= segments.at[i].first_block) segment = segments.at[i];
  }
  const uint32_t* __restrict__ w = segment.w;
  const void* scales = segment.scales;
  const void* biases = segment.biases;
  float* __restrict__ y = segment.y;
  const int64_t rows = segment.rows;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int slot = warp / KW;  // row group within the block
  const int part = warp % KW;  // which warp of the row group
  const int64_t row0 = (int64_t{blockIdx.x - segment.first_block} * (4 / KW) + slot) * kOut;
  const int64_t chunks = cols / kPerChunk;
  const int64_t chunks_per_row = chunks;  // 16-byte chunks per row
  const int64_t groups = kQuantized ? cols / group_size : 1;
  int64_t src[kRows];  // the matrix row behind accumulator r (in W, or in U for r >= kOut when paired)
  const uint4* row_ptr[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    src[r] = std::min<int64_t>(row0 + r % kOut, rows - 1);
    row_ptr[r] = reinterpret_cast<const uint4*>(kPaired && r >= kOut ? up.w : w) + src[r] * chunks_per_row;
  }
  float acc[T][kRows];
#pragma unroll
  for (int t = 0; t < T; ++t)
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[t][r] = 0;

  constexpr int64_t kStride = 32 * KW;
  const int64_t c0 = int64_t{part} * 32 + lane;
  uint4 q[kRows], ahead[kRows];
  const auto load = [&](uint4(&into)[kRows], int64_t c) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) into[r] = load_stream(row_ptr[r] + c);
  };
  // Weights never change: with `early` the first chunk streams in while the previous kernel still runs.
  if (early && c0 < chunks) load(q, c0);
  begin_dependent();
  if (!early && c0 < chunks) load(q, c0);
  for (int64_t c = c0; c < chunks; c += kStride) {
    // `pipelined`: the next chunk's loads go out before this chunk's math, so a lane keeps two chunks in
    // flight instead of waiting out a full memory round trip per chunk.
    const bool next = c + kStride < chunks;
    if (pipelined && next) load(ahead, c + kStride);
    float dot[T][kRows], xs[T];
#pragma unroll
    for (int t = 0; t < T; ++t) {
      xs[t] = 0;
#pragma unroll
      for (int r = 0; r < kRows; ++r) dot[t][r] = 0;
    }
    const float* xc = x + c * kPerChunk;
#pragma unroll
    for (int wi = 0; wi < 4; ++wi) {
      float f[kRows][C::kPerWord];
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const uint32_t word = wi == 0 ? q[r].x : wi == 1 ? q[r].y : wi == 2 ? q[r].z : q[r].w;
        C::decode(word, f[r]);
      }
#pragma unroll
      for (int t = 0; t < T; ++t) {
        float xv[C::kPerWord];
        const float* xp = xc + t * cols + wi * C::kPerWord;
        if constexpr (C::kPerWord == 2) {
          const float2 v = *reinterpret_cast<const float2*>(xp);
          xv[0] = v.x, xv[1] = v.y;
        } else {
#pragma unroll
          for (int j = 0; j < C::kPerWord; j += 4) {
            const float4 v = *reinterpret_cast<const float4*>(xp + j);
            xv[j] = v.x, xv[j + 1] = v.y, xv[j + 2] = v.z, xv[j + 3] = v.w;
          }
        }
#pragma unroll
        for (int j = 0; j < C::kPerWord; ++j) {
          if constexpr (kQuantized) xs[t] += xv[j];
#pragma unroll
          for (int r = 0; r < kRows; ++r) dot[t][r] = fmaf(f[r][j], xv[j], dot[t][r]);
        }
      }
    }
    if constexpr (kQuantized) {
      const int64_t g = c * kPerChunk / group_size;
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const int64_t gi = src[r] * groups + g;
        const bool in_up = kPaired && r >= kOut;
        const float s = load_element(in_up ? up.scales : scales, scale_dtype, gi);
        const float b = load_element(in_up ? up.biases : biases, scale_dtype, gi);
#pragma unroll
        for (int t = 0; t < T; ++t) acc[t][r] += s * dot[t][r] + b * xs[t];
      }
    } else {
#pragma unroll
      for (int t = 0; t < T; ++t)
#pragma unroll
        for (int r = 0; r < kRows; ++r) acc[t][r] += dot[t][r];
    }
    if (next && pipelined) {
#pragma unroll
      for (int r = 0; r < kRows; ++r) q[r] = ahead[r];
    } else if (next) {
      load(q, c + kStride);
    }
  }
  if constexpr (kPaired) {
    reduce_row_group_sums<T, kRows, kThreads / 32>(acc, warp, lane, part, KW, [&](int i, float sum) {
      const float up_sum = __shfl_down_sync(0xffffffffu, sum, kOut);  // lane t * 4 + 2 + r
      const int t = i / kRows, r = i % kRows;
      if (i < T * kRows && r < kOut && row0 + r < rows) y[t * rows + row0 + r] = silu(sum) * up_sum;
    });
  } else {
    store_row_group_sums<T, kRows, kThreads / 32>(acc, warp, lane, part, KW, row0, rows, y);
  }
}

// Any format, T <= 8: a warp per output row, lanes over the columns.
__global__ void gemv_generic_kernel(WeightView w, const float* x, float* y, int T) {
  begin_dependent();
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t{blockIdx.x} * (blockDim.x / 32) + (threadIdx.x >> 5);
  if (row >= w.rows) return;
  float acc[kMaxT] = {};
  for (int64_t c = lane; c < w.cols; c += 32) {
    const float v = w.at(row, c);
#pragma unroll
    for (int t = 0; t < kMaxT; ++t)
      if (t < T) acc[t] += v * x[t * w.cols + c];
  }
#pragma unroll
  for (int t = 0; t < kMaxT; ++t) {
    if (t >= T) break;
    const float s = warp_sum(acc[t]);
    if (lane == 0) y[t * w.rows + row] = s;
  }
}

constexpr int kTile = 64, kDepth = 16, kPad = 4;

__global__ void __launch_bounds__(256) gemm_tiled_kernel(WeightView w, const float* x, float* y, int64_t T) {
  begin_dependent();
  __shared__ __align__(16) float xs[kDepth][kTile + kPad];
  __shared__ __align__(16) float ws[kDepth][kTile + kPad];
  const int tid = threadIdx.x;
  const int64_t m0 = int64_t{blockIdx.y} * kTile, n0 = int64_t{blockIdx.x} * kTile;
  const int tm = tid % 16, tn = tid / 16;
  float c[4][4] = {};
  for (int64_t k0 = 0; k0 < w.cols; k0 += kDepth) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int e = tid + i * 256;  // 0..1023 over [64 rows][16 depth]
      const int row = e / kDepth, k = e % kDepth;
      const int64_t kk = k0 + k;
      const int64_t m = m0 + row, n = n0 + row;
      xs[k][row] = (m < T && kk < w.cols) ? x[m * w.cols + kk] : 0.0f;
      ws[k][row] = (n < w.rows && kk < w.cols) ? w.at(n, kk) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kDepth; ++k) {
      const float4 a = *reinterpret_cast<const float4*>(&xs[k][tm * 4]);
      const float4 b = *reinterpret_cast<const float4*>(&ws[k][tn * 4]);
      const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) c[i][j] = fmaf(av[i], bv[j], c[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + tm * 4 + i;
    if (m >= T) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t n = n0 + tn * 4 + j;
      if (n < w.rows) y[m * w.rows + n] = c[i][j];
    }
  }
}

// The classic GEMV over `ws` (one matrix, or up to kMaxSegments in one grid with kGrouped; all of one
// format and width) into ys. `up` set: the paired GEMV (kPaired; T = 1, one matrix), y = silu(x W^T) *
// (x U^T).
template <int BITS, int T, bool kPaired = false, bool kGrouped = false>
void launch_gemv_kw(std::span<const WeightMatrix* const> ws, const float* x, std::span<float* const> ys,
                    Queue stream, UpRows up = {}) {
  constexpr int kOut = kPaired ? kRows / 2 : kRows;
  // Warps per row group by the rows of the largest matrix: a paired GEMV splits each row as gate and up
  // alone would, and a grouped one as its main projection alone would.
  int64_t largest = 0;
  for (const WeightMatrix* w : ws) largest = std::max(largest, w->rows);
  const int64_t shape_groups = (largest + kRows - 1) / kRows;
  const WeightMatrix& first = *ws[0];
  auto run = [&](auto kernel, int kw) {
    const int64_t per_block = 4 / kw;
    GemvSegments segments{};
    segments.count = static_cast<int>(ws.size());
    unsigned blocks = 0;
    for (size_t i = 0; i < ws.size(); ++i) {
      const WeightMatrix& w = *ws[i];
      const int64_t row_groups = (w.rows + kOut - 1) / kOut;
      segments.at[i] = {static_cast<const uint32_t*>(w.data), w.scales, w.biases, ys[i], w.rows, blocks};
      blocks += static_cast<unsigned>((row_groups + per_block - 1) / per_block);
    }
    // Pipelined only where some lane has three or more chunks: with two, both in flight at once measured
    // slower (2560 x 4096 at 8 bits: 6.4 vs 6.0 us alone, H100, 2026-11-27).
    const int64_t chunks = first.cols / (4 * Codec<BITS>::kPerWord);
    const bool pipelined = stream.gemv.pipelined && chunks > 2 * 32 * kw;
    launch(kernel, blocks, kThreads, 0, stream, segments, first.scale_dtype, first.cols, first.group_size, x,
           stream.gemv.early >= 0, pipelined, up);
  };
  const int forced = stream.gemv.warps;  // CudaBackend::set_gemv(true, 0, warps): benchmarks compare
  if (forced == 4 || (forced == 0 && shape_groups <= 1024))
    run(gemv_kernel<BITS, T, 4, kPaired, kGrouped>, 4);
  else if (forced == 2 || (forced == 0 && shape_groups <= 4096))
    run(gemv_kernel<BITS, T, 2, kPaired, kGrouped>, 2);
  else
    run(gemv_kernel<BITS, T, 1, kPaired, kGrouped>, 1);
}

template <int BITS, int T>
void launch_gemv_kw(const WeightMatrix& w, const float* x, float* y, Queue stream) {
  const WeightMatrix* ws[] = {&w};
  float* ys[] = {y};
  launch_gemv_kw<BITS, T>(ws, x, ys, stream);
}

template <int BITS>
void launch_gemv(const WeightMatrix& w, const float* x, float* y, int64_t T, Queue stream) {
  switch (T) {
    case 1:
      launch_gemv_kw<BITS, 1>(w, x, y, stream);
      break;
    case 2:
      launch_gemv_kw<BITS, 2>(w, x, y, stream);
      break;
    case 3:
      launch_gemv_kw<BITS, 3>(w, x, y, stream);
      break;
    case 4:
      launch_gemv_kw<BITS, 4>(w, x, y, stream);
      break;
    case 5:
      launch_gemv_kw<BITS, 5>(w, x, y, stream);
      break;
    case 6:
      launch_gemv_kw<BITS, 6>(w, x, y, stream);
      break;
    case 7:
      launch_gemv_kw<BITS, 7>(w, x, y, stream);
      break;
    default:
      launch_gemv_kw<BITS, 8>(w, x, y, stream);
      break;
  }
}

// Which fused GEMV handles `w`: 8 or 4 for affine codes, 16 for BF16, 0 for none (generic kernel).
int fast_path(const WeightMatrix& w) {
  if (w.quantized()) {
    const int per_chunk = 128 / w.bits;
    if ((w.bits == 8 || w.bits == 4) && w.group_size % per_chunk == 0 && w.cols % per_chunk == 0)
      return w.bits;
    return 0;
  }
  if (w.dtype == DType::BF16 && w.cols % 8 == 0) return 16;
  return 0;
}

// Whether a and b have one fused-GEMV format and width (rows may differ), so one launch can serve both.
bool same_gemv_format(const WeightMatrix& a, const WeightMatrix& b) {
  return a.cols == b.cols && a.bits == b.bits && a.group_size == b.group_size && a.dtype == b.dtype &&
         a.scale_dtype == b.scale_dtype;
}

// launch.template operator()<BITS>() for fused-GEMV path 8, 4 or 16 (fast_path).
template <typename Launch>
void for_path(int path, Launch&& launch) {
  if (path == 8)
    launch.template operator()<8>();
  else if (path == 4)
    launch.template operator()<4>();
  else
    launch.template operator()<16>();
}

void validate(const WeightMatrix& w) {
  const std::string where = str("weight matrix [", w.rows, ", ", w.cols, "]");
  require(w.rows > 0 && w.cols > 0 && w.data != nullptr, "matmul needs a non-empty weight matrix", where);
  if (!w.quantized()) {
    require(w.dtype == DType::F32 || w.dtype == DType::F16 || w.dtype == DType::BF16,
            str("dense weights of type ", dtype_name(w.dtype), " are not supported"), where,
            "convert the checkpoint to F32, F16 or BF16, or quantize it");
    return;
  }
  require(w.bits >= 2 && w.bits <= 8 && w.dtype == DType::U32 && w.scales != nullptr && w.biases != nullptr,
          str("quantized weights with ", w.bits, " bits are not supported"), where, "use 2..8 bits");
  require(w.group_size > 0 && w.cols % w.group_size == 0,
          str("column count ", w.cols, " is not a multiple of the group size ", w.group_size), where);
  require(w.scale_dtype == DType::F32 || w.scale_dtype == DType::F16 || w.scale_dtype == DType::BF16,
          str("scales of type ", dtype_name(w.scale_dtype), " are not supported"), where,
          "store scales and biases as BF16, F16 or F32");
}

}  // namespace

bool takes_gemv_mma(const WeightMatrix& w, int64_t T, const Queue& stream) {
  constexpr int64_t kMmaLargeSide = 5120;
  const GemvOptions& o = stream.gemv;
  const bool large = w.rows >= kMmaLargeSide && w.cols >= kMmaLargeSide;
  const bool asked =
      (o.mma_from > 0 && T >= o.mma_from) || (large && o.mma_large_from > 0 && T >= o.mma_large_from);
  return T <= kMaxT && asked && gemv_imma_supported(w);
}

void matmul(const WeightMatrix& w, const float* x, float* y, int64_t T, Queue stream) {
  validate(w);
  if (T == 0) return;
  // Tensor cores: the GEMV when asked for (takes_gemv_mma: GemvOptions::mma_from, or mma_large_from for
  // large matrices), the GEMM past 8 rows. Their converted activations go back to the pool when this
  // returns: safe, as every later user of the block queues behind the product on the same stream
  // (matmul_many converts before it forks, for that reason).
  if (takes_gemv_mma(w, T, stream)) {
    const auto scratch = stream.context->scratch(imma_scratch_bytes(T, w.cols));
    gemv_imma(w, imma_activations(x, T, w.cols, w.bits, scratch.get(), stream), y, T, stream);
    return;
  }
  if (T > kMaxT && stream.mma_gemm) {
    const bool wgmma = stream.wgmma_gemm && gemm_wgmma_supported(w, T, *stream.context);
    if (wgmma || gemm_mma_supported(w)) {
      const auto scratch = stream.context->scratch(gemm_mma_scratch_bytes(T, w.cols));
      const SplitLayout layout = wgmma ? SplitLayout::kTiles : SplitLayout::kFragments;
      const SplitActivations split = split_activations(x, T, w.cols, scratch.get(), stream, layout);
      (wgmma ? gemm_wgmma : gemm_mma)(w, split, y, T, stream);
      return;
    }
  }
  if (T > kMaxT) {
    const dim3 grid(static_cast<unsigned>((w.rows + kTile - 1) / kTile),
                    static_cast<unsigned>((T + kTile - 1) / kTile));
    launch(gemm_tiled_kernel, grid, 256, 0, stream, weight_view(w), x, y, T);
    check_launch("gemm_tiled");
    return;
  }
  const int path = fast_path(w);
  if (path != 0 && !stream.gemv.classic && gemv_wide(w, path, x, y, T, stream)) {
    check_launch("gemv_wide");
    return;
  }
  switch (path) {
    case 8:
      launch_gemv<8>(w, x, y, T, stream);
      break;
    case 4:
      launch_gemv<4>(w, x, y, T, stream);
      break;
    case 16:
      launch_gemv<16>(w, x, y, T, stream);
      break;
    default: {
      constexpr int kWarpsPerBlock = 4;
      const auto blocks = static_cast<unsigned>((w.rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
      launch(gemv_generic_kernel, blocks, kWarpsPerBlock * 32, 0, stream, weight_view(w), x, y,
             static_cast<int>(T));
    }
  }
  check_launch("gemv");
}

namespace {

// Whether a matrix of fused-GEMV path `path` at T rows takes the interleaved kernel when it runs alone
// (gemv_wide's choice under these options): one classic-kernel pass over several such matrices (paired or
// grouped) would then be slower than running them apart.
bool wide_when_alone(int path, int64_t T, const GemvOptions& o) {
  return !o.classic && (path == 8 || path == 4) && gemv_wide_chosen(path, T, o);
}

}  // namespace

bool matmul_silu_mul(const WeightMatrix& gate, const WeightMatrix& up, const float* x, float* y, int64_t T,
                     Queue stream) {
  const int path = fast_path(gate);
  if (T != 1 || path == 0 || gate.rows != up.rows || !same_gemv_format(gate, up) || !stream.gemv.paired_mlp ||
      takes_gemv_mma(gate, T, stream))
    return false;
  // Only where gate and up alone would take the classic kernel (as matmul_grouped): 4-bit codes run faster
  // on the interleaved one, and two of those GEMVs + silu_mul measured 3.9% faster in the q4 AR step than the
  // paired classic pass (H200, 433.4 vs 417.1 tok/s, one run, 2026-11-29).
  if (wide_when_alone(path, T, stream.gemv)) return false;
  validate(gate);
  validate(up);
  const UpRows rows{static_cast<const uint32_t*>(up.data), up.scales, up.biases};
  const WeightMatrix* ws[] = {&gate};
  float* ys[] = {y};
  for_path(path, [&]<int BITS>() { launch_gemv_kw<BITS, 1, true>(ws, x, ys, stream, rows); });
  check_launch("gemv paired");
  return true;
}

bool matmul_grouped(std::span<const WeightMatrix* const> ws, const float* x, std::span<float* const> ys,
                    int64_t T, Queue stream) {
  if (T != 1 || !stream.gemv.grouped || ws.size() < 2 || ws.size() > kMaxGroupedMatmuls ||
      ys.size() != ws.size())
    return false;
  // Only where each matrix alone would take the classic kernel (gemv_wide_chosen: by default 8-bit codes
  // and BF16 at T = 1, not 4-bit codes) and all share one format and width. As separate GEMVs on parallel
  // streams, 4-bit projections measured 0.8-0.9% faster in the q4 AR step than in one grouped classic grid
  // (H100, two runs, 2026-11-27).
  const GemvOptions& o = stream.gemv;
  if (!o.classic && (o.batch != 0 || o.words != 0 || o.warps != 0)) return false;  // forced: alone, too
  const int path = fast_path(*ws[0]);
  if (wide_when_alone(path, T, o)) return false;
  // One format for all (so fast_path too); none on the tensor-core GEMV (decided per matrix: its size
  // counts).
  if (path == 0 ||
      std::any_of(ws.begin(), ws.end(),
                  [&](const WeightMatrix* w) { return takes_gemv_mma(*w, T, stream); }) ||
      !std::all_of(ws.begin(), ws.end(), [&](const WeightMatrix* w) { return same_gemv_format(*w, *ws[0]); }))
    return false;
  for (const WeightMatrix* w : ws) validate(*w);
  for_path(path, [&]<int BITS>() { launch_gemv_kw<BITS, 1, false, true>(ws, x, ys, stream); });
  check_launch("gemv grouped");
  return true;
}

}  // namespace cuda

void CudaBackend::matmul_silu_mul(const WeightMatrix& gate, const WeightMatrix& up, const Tensor& x,
                                  Tensor& out) {
  if (!(x.cols == gate.cols && x.cols == up.cols && out.cols == gate.rows && out.cols == up.rows &&
        x.rows == out.rows))
    fail("internal error: cuda backend: matmul_silu_mul shape");
  if (!cuda::matmul_silu_mul(gate, up, x.data, out.data, x.rows, ctx_->queue()))
    Backend::matmul_silu_mul(gate, up, x, out);
}

// Independent matmuls on one input run side by side: the first on the backend's stream, the others on side
// streams forked from it and joined back before anything later runs, so the stream order every other op
// relies on holds. In a step graph they become parallel branches: the small projections (the GDN's a and b,
// k and v) and the tail of one GEMV overlap the next instead of each paying its own ramp.
void CudaBackend::matmul_many(std::span<const WeightMatrix* const> ws, const Tensor& x,
                              std::span<Tensor* const> ys) {
  if (ws.size() != ys.size()) fail("internal error: cuda backend: matmul_many needs one output per weight");
  for (size_t i = 0; i < ws.size(); ++i)
    if (!(x.cols == ws[i]->cols && ys[i]->cols == ws[i]->rows && x.rows == ys[i]->rows))
      fail("internal error: cuda backend: matmul shape");
  const cuda::Queue main = ctx_->queue();
  // One row, one format: all the matrices in one classic-GEMV grid (no fork, and PDL stays on the chain).
  if (ws.size() <= cuda::kMaxGroupedMatmuls) {
    std::array<float*, cuda::kMaxGroupedMatmuls> outputs{};
    for (size_t i = 0; i < ys.size(); ++i) outputs[i] = ys[i]->data;
    if (cuda::matmul_grouped(ws, x.data, std::span(outputs).first(ys.size()), x.rows, main)) return;
  }
  // Past 8 rows (prefill) one after another: each matmul fills the GPU, and the tensor-core GEMM's scratch
  // is only safe on one stream.
  if (!ctx_->concurrent_matmuls || ws.size() < 2 || ws.size() > ctx_->side.size() + 1 || x.rows > 8) {
    Backend::matmul_many(ws, x, ys);
    return;
  }
  // The matrices on the tensor-core GEMV get their input converted here, before the fork, once per code width
  // (the converted layout depends on it), into blocks held until after the join: converted inside each
  // branch, a side stream's block could be one the main stream just gave back while its GEMV still reads it.
  std::array<std::shared_ptr<void>, 2> scratch;  // 8-bit, 4-bit layouts
  std::array<cuda::ImmaActivations, 2> pieces{};
  const auto layout = [](const WeightMatrix& w) { return w.bits == 8 ? 0 : 1; };
  for (const WeightMatrix* w : ws) {
    if (!cuda::takes_gemv_mma(*w, x.rows, main) || scratch[layout(*w)]) continue;
    scratch[layout(*w)] = ctx_->scratch(cuda::imma_scratch_bytes(x.rows, x.cols));
    pieces[layout(*w)] =
        cuda::imma_activations(x.data, x.rows, x.cols, w->bits, scratch[layout(*w)].get(), main);
  }
  const auto run = [&](size_t i, const cuda::Queue& queue) {
    if (cuda::takes_gemv_mma(*ws[i], x.rows, main))
      cuda::gemv_imma(*ws[i], pieces[layout(*ws[i])], ys[i]->data, x.rows, queue);
    else
      cuda::matmul(*ws[i], x.data, ys[i]->data, x.rows, queue);
  };
  MTPLX_CUDA_CHECK(cudaEventRecord(ctx_->events[0], ctx_->stream));
  run(0, main);
  for (size_t i = 1; i < ws.size(); ++i) {
    cuda::Queue side = main;
    side.stream = ctx_->side[i - 1];
    MTPLX_CUDA_CHECK(cudaStreamWaitEvent(side.stream, ctx_->events[0], 0));
    run(i, side);
    MTPLX_CUDA_CHECK(cudaEventRecord(ctx_->events[i], side.stream));
    MTPLX_CUDA_CHECK(cudaStreamWaitEvent(ctx_->stream, ctx_->events[i], 0));
  }
}

void CudaBackend::matmul(const WeightMatrix& w, const Tensor& x, Tensor& y) {
  if (!(x.cols == w.cols && y.cols == w.rows && x.rows == y.rows))
    fail("internal error: cuda backend: matmul shape");
  cuda::matmul(w, x.data, y.data, x.rows, ctx_->queue());
}

}  // namespace mtplx

// y = x W^T for T > 8 rows (prefill) on tensor cores: mma.sync m16n8k16 with fp16 operands and fp32
// accumulation, kept close to the fp32 CPU reference by two choices:
//   - the weight operand is exact: the integer code q itself (0..255 and 0..15 are fp16 integers), or the
//     BF16 weight as fp16 (exact for |w| in [2^-14, 65504]; smaller ones keep 2^-24 absolute; larger ones,
//     which no trained checkpoint has, would overflow). Scales and biases are applied in fp32 per 64-column
//     slice, as the GEMV does:
//       sum_c (s q_c + b) x_c = s * (sum_c q_c x_c) + b * (sum_c x_c)
//   - each activation row is scaled by a power of two P (its largest |x| to just under 2^14: exact) and
//     split into two fp16 values, x P = hi + lo (hi = fp16(x P), lo = fp16(x P - hi)); both halves go
//     through the tensor cores, and the row's result is multiplied by 1 / P at the end: ~22 significant
//     bits, a relative error of ~2.4e-7 per product (bf16 halves gave ~16 bits: 1.2-3.3e-5 on the fixtures'
//     logits, against the 1e-5 their tests allow).
// A pre-pass (split_kernel) writes hi/lo, P times the 64-column sums of x, and 1 / P once per matmul.
//
// GEMM: a 64 (T) x 128 (rows) tile per block of 4 warps (64 x 32 each; or 128 x 128, 8 warps); 64-column
// slices of the split activations, the codes and the slice's scales/biases/sums stream into shared memory
// through a 4-stage cp.async pipeline. Within a slice the k order is permuted (the same way for both
// operands, which leaves the sum unchanged) so that each lane's operands are contiguous: in mma step s (k16)
// the lane with c = lane % 4 holds logical k {2c, 2c+1, 2c+8, 2c+9}, which stand for columns 16c + 4s + {0,
// 1, 2, 3}. So a lane reads its 16 codes of a row in one 16-byte load (8-bit) and its activations as one
// 16-byte chunk (hi[4], lo[4]) per row and step; the pre-pass stores chunk 4s + c at position 4s + c
// (conflict-free reads).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "backend/cuda/device_util.cuh"
#include "backend/cuda/matmul_mma.h"
#include "backend/cuda/mma_util.cuh"

namespace mtplx::cuda {
namespace {

constexpr int kBlockN = 128;             // weight rows per block; T rows per block: 64 kWarpsM (1 or 2)
constexpr int kWarpM = 64, kWarpN = 32;  // warp tile: 4 x 4 mma tiles (32 x 32 measured slower)
constexpr int kFragsM = kWarpM / 16, kFragsN = kWarpN / 8;
constexpr int kStages = 4;

// Split: x [T, cols] fp32 -> per row: P (a power of two: largest |x| times P just under 2^14), and per slice
// 256 bytes of hi/lo halves (SplitLayout) and P times the slice's fp32 sum; 1 / P goes to inverse[row]. A
// block per row; a half warp per slice, lane p = 4s + c converting columns 16c + 4s .. + 3.
constexpr int kSplitThreads = 256;
template <SplitLayout kLayout>
__global__ void __launch_bounds__(kSplitThreads)
    split_kernel(const float* __restrict__ x, int64_t cols, uint4* __restrict__ split,
                 float* __restrict__ sums, float* __restrict__ inverse) {
  begin_dependent();
  __shared__ float shared[32];
  const int64_t row = blockIdx.x, slices = cols / kSlice;
  const float4* xr = reinterpret_cast<const float4*>(x + row * cols);
  float largest = 0;
  for (int64_t i = threadIdx.x; i < cols / 4; i += kSplitThreads) {
    const float4 v = xr[i];
    largest = fmaxf(largest, fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w))));
  }
  largest = warp_max(largest);
  if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = largest;
  __syncthreads();
  largest = 0;
  for (int w = 0; w < kSplitThreads / 32; ++w) largest = fmaxf(largest, shared[w]);
  int exponent = 0;  // largest = f 2^exponent, f in [0.5, 1)
  frexpf(largest, &exponent);
  const int shift = largest > 0 && isfinite(largest) ? std::clamp(14 - exponent, -126, 127) : 0;
  const float scale = ldexpf(1.0f, shift);
  if (threadIdx.x == 0) inverse[row] = ldexpf(1.0f, -shift);
  const unsigned half = 0xFFFFu << (threadIdx.x & 16);
  for (int64_t i = threadIdx.x; i < slices * 16; i += kSplitThreads) {  // whole half warps stay together
    const int64_t slice = i / 16;
    const int p = static_cast<int>(i % 16), s = p / 4, c = p % 4;
    const float4 v = xr[(slice * kSlice + 16 * c + 4 * s) / 4];
    const float f[4] = {v.x * scale, v.y * scale, v.z * scale, v.w * scale};
    uint32_t hi[2], lo[2];
    for (int j = 0; j < 2; ++j) split_fp16x2(f[2 * j], f[2 * j + 1], hi[j], lo[j]);
    if constexpr (kLayout == SplitLayout::kFragments) {
      split[(row * slices + slice) * 16 + p] = make_uint4(hi[0], hi[1], lo[0], lo[1]);
    } else {  // word c of chunk 2s + h of each plane: columns 16c + 4s + 2h, + 1; the chunk swizzled
      auto* tile =
          reinterpret_cast<uint32_t*>(split + ((row / kTileTokens) * slices + slice) * kTileBytes / 16);
      const int64_t r = row % kTileTokens;
      for (int h = 0; h < 2; ++h) {
        const int64_t word = r * 32 + (((2 * s + h) ^ (r & 7)) * 4) + c;
        tile[word] = hi[h];
        tile[kTileBytes / 8 + word] = lo[h];
      }
    }
    float sum = (f[0] + f[1]) + (f[2] + f[3]);
    for (int o = 8; o > 0; o >>= 1) sum += __shfl_xor_sync(half, sum, o);
    if (p == 0) sums[row * slices + slice] = sum;
  }
}

// Two BF16 weights as fp16x2.
__device__ __forceinline__ uint32_t f16x2_of_bf16x2(uint32_t word) {
  const __half2 v = __floats2half2_rn(__uint_as_float(word << 16), __uint_as_float(word & 0xFFFF0000u));
  return *reinterpret_cast<const uint32_t*>(&v);
}

// Shared memory per stage.
template <int kBits, int kBlockM>
constexpr int stage_bytes() {
  return kBlockM * kSplitRowBytes + kBlockN * slice_row_bytes<kBits>() + (2 * kBlockN + kBlockM) * 4;
}

// kWarpsM 2: a 128 x 128 tile, 8 warps, one block per SM (shared memory and registers); kWarpsM 1: 64 x
// 128, 4 warps, two blocks per SM, so one block's slice barrier and fp32 epilogue overlap the other's mma.
template <int kBits, int kWarpsM>
__global__ void __launch_bounds__(128 * kWarpsM, 3 - kWarpsM) gemm_mma_kernel(GemmArgs a) {
  constexpr int kBlockM = kWarpM * kWarpsM, kThreads = 128 * kWarpsM;
  constexpr bool kQuantized = kBits <= 8;
  constexpr int kRowBytes = slice_row_bytes<kBits>();
  extern __shared__ __align__(16) uint8_t shared[];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane / 4, c = lane % 4;
  const int wm = warp / (kBlockN / kWarpN), wn = warp % (kBlockN / kWarpN);
  const int64_t m0 = int64_t{blockIdx.y} * kBlockM, n0 = int64_t{blockIdx.x} * kBlockN;
  const int64_t slices = a.cols / kSlice;
  const int64_t groups = kQuantized ? a.cols / a.group_size : 1;
  const int64_t weight_row_bytes = a.cols * kBits / 8;

  const auto stage = [&](int slot) { return shared + slot * stage_bytes<kBits, kBlockM>(); };
  // Queues slice j's copies into stage `slot` (rows past T or `rows` repeat the last row; never stored).
  const auto load = [&](int slot, int64_t j) {
    uint8_t* base = stage(slot);
#pragma unroll
    for (int i = tid; i < kBlockM * 16; i += kThreads) {
      const int row = i / 16, p = i % 16;
      const int64_t m = std::min(m0 + row, a.T - 1);
      copy_async16(base + row * kSplitRowBytes + ((p ^ ((row & 1) << 2)) * kChunkBytes),
                   a.split + (m * slices + j) * 16 + p);
    }
    uint8_t* wbase = base + kBlockM * kSplitRowBytes;
    constexpr int kChunksPerRow = kRowBytes / 16;
#pragma unroll
    for (int i = tid; i < kBlockN * kChunksPerRow; i += kThreads) {
      const int row = i / kChunksPerRow, p = i % kChunksPerRow;
      const int64_t n = std::min(n0 + row, a.rows - 1);
      const int q = kBits == 16 ? p ^ (row & 1) : p;  // BF16: swizzle pairs of rows apart
      copy_async16(wbase + row * kRowBytes + q * 16, a.w + n * weight_row_bytes + j * kRowBytes + p * 16);
    }
    if constexpr (kQuantized) {
      auto* words = reinterpret_cast<uint32_t*>(wbase + kBlockN * kRowBytes);
      for (int i = tid; i < 2 * kBlockN; i += kThreads) {  // scales of the block's rows, then biases
        const int64_t gi = std::min(n0 + i % kBlockN, a.rows - 1) * groups + j * kSlice / a.group_size;
        copy_async4(words + i, (i < kBlockN ? a.scales : a.biases) + scale_word_offset(gi, a.scale_dtype));
      }
      for (int i = tid; i < kBlockM; i += kThreads)
        copy_async4(words + 2 * kBlockN + i, a.sums + std::min(m0 + i, a.T - 1) * slices + j);
    }
  };

  float acc[kFragsM][kFragsN][4] = {};
  begin_dependent();
#pragma unroll
  for (int st = 0; st < kStages - 1; ++st) {
    if (st < slices) load(st, st);
    commit_async();
  }
  for (int64_t j = 0; j < slices; ++j) {
    wait_async<kStages - 2>();
    __syncthreads();
    if (j + kStages - 1 < slices) load(static_cast<int>((j + kStages - 1) % kStages), j + kStages - 1);
    commit_async();

    const uint8_t* base = stage(static_cast<int>(j % kStages));
    const uint8_t* wbase = base + kBlockM * kSplitRowBytes;
    // This lane's 16 codes (or BF16 values) of each of its weight rows: columns 16c .. 16c + 15.
    uint32_t raw[kFragsN][kBits / 2];
#pragma unroll
    for (int nf = 0; nf < kFragsN; ++nf) {
      const int row = wn * kWarpN + nf * 8 + g;
      const uint8_t* p = wbase + row * kRowBytes;
      if constexpr (kQuantized) {
        lane_code_words<kBits>(p, c, raw[nf]);
      } else {
        const uint4 v0 = *reinterpret_cast<const uint4*>(p + ((2 * c) ^ (row & 1)) * 16);
        const uint4 v1 = *reinterpret_cast<const uint4*>(p + ((2 * c + 1) ^ (row & 1)) * 16);
        raw[nf][0] = v0.x, raw[nf][1] = v0.y, raw[nf][2] = v0.z, raw[nf][3] = v0.w;
        raw[nf][4] = v1.x, raw[nf][5] = v1.y, raw[nf][6] = v1.z, raw[nf][7] = v1.w;
      }
    }
    // This slice's products, added to acc in fp32 below (scaled, for codes): a long chain of accumulation
    // inside the tensor cores lost precision (BF16 at K = 9216: 2.3e-5 relative vs 5e-6 for fp32 tiles).
    float part[kFragsM][kFragsN][4] = {};
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      uint32_t b[kFragsN][2];  // columns 16c + 4s + {0, 1} and {2, 3}
#pragma unroll
      for (int nf = 0; nf < kFragsN; ++nf) {
        if constexpr (kQuantized) {
          const uint2 pairs = code_pairs<kBits>(raw[nf], s);
          b[nf][0] = pairs.x;
          b[nf][1] = pairs.y;
        } else {
          b[nf][0] = f16x2_of_bf16x2(raw[nf][2 * s]);
          b[nf][1] = f16x2_of_bf16x2(raw[nf][2 * s + 1]);
        }
      }
#pragma unroll
      for (int mf = 0; mf < kFragsM; ++mf) {
        const int row = wm * kWarpM + mf * 16 + g;  // and row + 8 (same parity)
        const int chunk = (4 * s + c) ^ ((row & 1) << 2);
        const uint4 top = *reinterpret_cast<const uint4*>(base + row * kSplitRowBytes + chunk * kChunkBytes);
        const uint4 bottom =
            *reinterpret_cast<const uint4*>(base + (row + 8) * kSplitRowBytes + chunk * kChunkBytes);
#pragma unroll
        for (int nf = 0; nf < kFragsN; ++nf)  // hi, then lo: four independent mma between dependent ones
          mma(part[mf][nf], top.x, bottom.x, top.y, bottom.y, b[nf][0], b[nf][1]);
#pragma unroll
        for (int nf = 0; nf < kFragsN; ++nf)
          mma(part[mf][nf], top.z, bottom.z, top.w, bottom.w, b[nf][0], b[nf][1]);
      }
    }
    if constexpr (kQuantized) {
      const auto* words = reinterpret_cast<const uint32_t*>(wbase + kBlockN * kRowBytes);
      const auto* sums = reinterpret_cast<const float*>(words + 2 * kBlockN);
      const int64_t group = j * kSlice / a.group_size;
      float scale[kFragsN][2], bias[kFragsN][2], xsum[kFragsM][2];
#pragma unroll
      for (int nf = 0; nf < kFragsN; ++nf)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float2 scale_bias =
              stage_scale_bias(words, kBlockN, wn * kWarpN + nf * 8 + 2 * c + e, a, n0, groups, group);
          scale[nf][e] = scale_bias.x;
          bias[nf][e] = scale_bias.y;
        }
#pragma unroll
      for (int mf = 0; mf < kFragsM; ++mf)
#pragma unroll
        for (int h = 0; h < 2; ++h) xsum[mf][h] = sums[wm * kWarpM + mf * 16 + g + 8 * h];
#pragma unroll
      for (int mf = 0; mf < kFragsM; ++mf)
#pragma unroll
        for (int nf = 0; nf < kFragsN; ++nf)
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int h = i / 2, e = i % 2;
            acc[mf][nf][i] =
                fmaf(scale[nf][e], part[mf][nf][i], fmaf(bias[nf][e], xsum[mf][h], acc[mf][nf][i]));
          }
    } else {
#pragma unroll
      for (int mf = 0; mf < kFragsM; ++mf)
#pragma unroll
        for (int nf = 0; nf < kFragsN; ++nf)
#pragma unroll
          for (int i = 0; i < 4; ++i) acc[mf][nf][i] += part[mf][nf][i];
    }
  }
  wait_async<0>();

  // Accumulator element i of tile (mf, nf): T row g + 8 (i / 2), output column 2c + i % 2.
  const bool pairs = a.rows % 2 == 0;
#pragma unroll
  for (int mf = 0; mf < kFragsM; ++mf)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t m = m0 + wm * kWarpM + mf * 16 + g + 8 * h;
      if (m >= a.T) continue;
      const float inverse = a.inverse[m];
#pragma unroll
      for (int nf = 0; nf < kFragsN; ++nf) {
        const int64_t n = n0 + wn * kWarpN + nf * 8 + 2 * c;
        float* out = a.y + m * a.rows + n;
        if (pairs && n + 1 < a.rows) {
          *reinterpret_cast<float2*>(out) =
              make_float2(acc[mf][nf][2 * h] * inverse, acc[mf][nf][2 * h + 1] * inverse);
        } else {
          if (n < a.rows) out[0] = acc[mf][nf][2 * h] * inverse;
          if (n + 1 < a.rows) out[1] = acc[mf][nf][2 * h + 1] * inverse;
        }
      }
    }
}

template <int kBits, int kWarpsM>
void launch_gemm(const GemmArgs& args, Queue queue) {
  constexpr int kBlockM = kWarpM * kWarpsM;
  constexpr int kShared = kStages * stage_bytes<kBits, kBlockM>();
  check(cudaFuncSetAttribute(gemm_mma_kernel<kBits, kWarpsM>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             kShared),
        "cudaFuncSetAttribute", "gemm_mma");
  const dim3 grid(static_cast<unsigned>((args.rows + kBlockN - 1) / kBlockN),
                  static_cast<unsigned>((args.T + kBlockM - 1) / kBlockM));
  launch(gemm_mma_kernel<kBits, kWarpsM>, grid, 128 * kWarpsM, kShared, queue, args);
}

// BF16 weights always take 128 T rows a block: two blocks of 64 would not fit an SM's shared memory.
template <int kBits>
void launch_gemm(const GemmArgs& args, int tile_rows, Queue queue) {
  if (kBits == 16 || tile_rows == 128)
    launch_gemm<kBits, 2>(args, queue);
  else if constexpr (kBits != 16)
    launch_gemm<kBits, 1>(args, queue);
}

}  // namespace

bool gemm_mma_supported(const WeightMatrix& w) {
  if (w.cols % kSlice != 0) return false;
  if (w.quantized()) return (w.bits == 8 || w.bits == 4) && w.group_size % kSlice == 0;
  return w.dtype == DType::BF16;
}

namespace {

// Rows of the split halves: T rounded up to whole tiles (kTiles leaves the last tile's extra rows unwritten).
int64_t split_rows(int64_t T) {
  return (T + kTileTokens - 1) / kTileTokens * kTileTokens;
}

}  // namespace

size_t gemm_mma_scratch_bytes(int64_t T, int64_t cols) {
  const auto slices = static_cast<size_t>(cols / kSlice);
  return static_cast<size_t>(split_rows(T)) * slices * kSplitRowBytes +
         static_cast<size_t>(T) * (slices + 1) * sizeof(float);
}

SplitActivations split_activations(const float* x, int64_t T, int64_t cols, void* scratch, Queue queue,
                                   SplitLayout layout) {
  const int64_t slices = cols / kSlice;
  auto* split = static_cast<uint4*>(scratch);
  auto* sums =
      reinterpret_cast<float*>(static_cast<uint8_t*>(scratch) + split_rows(T) * slices * kSplitRowBytes);
  float* inverse = sums + T * slices;
  const auto kernel = layout == SplitLayout::kFragments ? split_kernel<SplitLayout::kFragments>
                                                        : split_kernel<SplitLayout::kTiles>;
  launch(kernel, static_cast<unsigned>(T), kSplitThreads, 0, queue, x, cols, split, sums, inverse);
  check_launch("split_activations");
  return {split, sums, inverse};
}

void gemm_mma(const WeightMatrix& w, const SplitActivations& split, float* y, int64_t T, Queue queue) {
  const GemmArgs args = gemm_args(w, split, y, T);
  if (!w.quantized())
    launch_gemm<16>(args, queue.mma_tile_rows, queue);
  else if (w.bits == 8)
    launch_gemm<8>(args, queue.mma_tile_rows, queue);
  else
    launch_gemm<4>(args, queue.mma_tile_rows, queue);
  check_launch("gemm_mma");
}

}  // namespace mtplx::cuda

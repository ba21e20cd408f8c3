// Causal GQA attention for prefill on tensor cores: mma.sync m16n8k16 with fp16 operands and fp32 sums, kept
// close to the fp32 CPU reference by splitting every operand into two fp16 halves, x = hi + lo (hi =
// fp16(x), lo = fp16(x - hi)), and summing three products, hi hi + hi lo + lo hi (the dropped lo lo is
// ~2^-22 of a product): ~22 significant bits for |x| >= 1/8, an absolute error under 2^-25 below that (lo is
// then subnormal). The halves hold |x| < 65504 (fp16's range): far above what the normed queries and keys
// and a trained model's values reach, but a checkpoint whose values did would get inf here. The probabilities
// are split as 2^12 p (exact), so that their lo halves stay normal down to p ~ 2^-15; the output divides by
// 2^12 l at the end.
//
// A pre-pass (split_kv_kernel) writes K and V once as four fp16 planes (K hi, K lo, V hi, V lo), each
// [kv_heads][keys, rounded up to a tile][D], zero past the last key (masked keys then add 0 * 0, never NaN).
// The main kernel is FlashAttention-2 shaped: a block owns 64 query vectors that share one KV head (64 /
// group rows, rounded down, x the group's heads; the vectors past them are padding); their hi/lo halves sit
// in shared memory, key tiles of 32 stream through two cp.async stages. Two warps share 16 vectors: per tile
// the scoring warp computes S = Q K^T (16 x 32, fp32 in registers) and the online softmax of its rows, and
// leaves P's operand fragments and the rows' rescaling in shared memory (the accumulator layout of two n8
// tiles is the A operand layout of one k16 step); then each warp of the pair adds P V for half of the head
// dims. A warp holding all D dims of O would need 128 registers for them alone, and no room would be left
// for the fresh sums below. Rows in shared memory are padded by 16 bytes, so the 8 rows an ldmatrix reads
// fall in distinct banks.
//
// The tensor cores round their fp32 sums toward zero: a bias that grows with every product added to one
// accumulator (for O, thousands of keys). So each k32 step of S and each k16 step of P V starts from zero,
// and registers add the parts up with fp32 rounding.
#include <cuda_fp16.h>

#include <algorithm>

#include "backend/cuda/attention_prefill.h"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/mma_util.cuh"

namespace mtplx::cuda {
namespace {

constexpr int kVectors = 64;               // query vectors per block
constexpr int kWarps = 2 * kVectors / 16;  // two per 16 vectors
constexpr int kKeys = 32;                  // keys per tile
constexpr int kPlanes = 4;                 // K hi, K lo, V hi, V lo
constexpr float kProbabilityScale = 4096.0f;
constexpr int64_t kMinRows = 64;  // query rows from which the tensor-core path is taken
// Per lane of a scoring warp, what it hands its partner each tile: P's fragments (hi, lo) and the two rows'
// rescaling; at the end the two rows' sums.
constexpr int kSlotWords = 2 * (kKeys / 16) * 4 + 2;
constexpr int kSlotStride = kSlotWords | 1;  // odd: the 32 lanes' slots start in distinct banks

template <int D>
struct Layout {
  static constexpr int kPitch = D + 8;                     // halves per shared row
  static constexpr int kQuery = 2 * kVectors * kPitch;     // hi plane, then lo plane
  static constexpr int kStage = kPlanes * kKeys * kPitch;  // one key tile of the four planes
  static constexpr size_t kBytes =
      sizeof(__half) * (kQuery + 2 * kStage) + sizeof(uint32_t) * kWarps / 2 * 32 * kSlotStride;
};

__device__ __forceinline__ void load_matrices(uint32_t (&r)[4], const __half* shared) {
  const auto address = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}
__device__ __forceinline__ void load_matrices_transposed(uint32_t (&r)[4], const __half* shared) {
  const auto address = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// The two warps of pair p (warps p and p + kWarps / 2) meet; barrier 0 is __syncthreads'.
__device__ __forceinline__ void pair_barrier(int pair) {
  asm volatile("bar.sync %0, 64;" ::"r"(pair + 1) : "memory");
}

// hi hi + hi lo + lo hi into d.
__device__ __forceinline__ void mma3(float (&d)[4], const uint32_t (&a_hi)[4], const uint32_t (&a_lo)[4],
                                     uint32_t b_hi0, uint32_t b_hi1, uint32_t b_lo0, uint32_t b_lo1) {
  mma(d, a_lo[0], a_lo[1], a_lo[2], a_lo[3], b_hi0, b_hi1);
  mma(d, a_hi[0], a_hi[1], a_hi[2], a_hi[3], b_lo0, b_lo1);
  mma(d, a_hi[0], a_hi[1], a_hi[2], a_hi[3], b_hi0, b_hi1);
}

// d0, d1 += a b for two n8 tiles of one k16 step: b's hi and lo halves as four 8 x 8 matrices each at
// `offset` in their planes (ldmatrix; transposed for V, whose rows are keys), each tile through mma3.
template <bool kTransposed>
__device__ __forceinline__ void mma3_two_tiles(float (&d0)[4], float (&d1)[4], const uint32_t (&a_hi)[4],
                                               const uint32_t (&a_lo)[4], const __half* b_hi_plane,
                                               const __half* b_lo_plane, int offset) {
  uint32_t b_hi[4], b_lo[4];
  if constexpr (kTransposed) {
    load_matrices_transposed(b_hi, b_hi_plane + offset);
    load_matrices_transposed(b_lo, b_lo_plane + offset);
  } else {
    load_matrices(b_hi, b_hi_plane + offset);
    load_matrices(b_lo, b_lo_plane + offset);
  }
  mma3(d0, a_hi, a_lo, b_hi[0], b_hi[1], b_lo[0], b_lo[1]);
  mma3(d1, a_hi, a_lo, b_hi[2], b_hi[3], b_lo[2], b_lo[3]);
}

// K and V rows [0, keys) of every KV head as the four planes; rows [keys, keys_pad) zero. A thread per four
// values of one row.
template <int D>
__global__ void split_kv_kernel(const float* __restrict__ k_cache, const float* __restrict__ v_cache,
                                __half* __restrict__ planes, int64_t keys, int64_t keys_pad, int kv_heads) {
  begin_dependent();
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const int64_t per_row = int64_t{kv_heads} * D / 4;
  if (i >= keys_pad * per_row) return;
  const int64_t key = i / per_row;
  const int head = static_cast<int>(i % per_row / (D / 4)), d = static_cast<int>(i % (D / 4)) * 4;
  const int64_t source = key * kv_heads * D + int64_t{head} * D + d;
  const float4 zero = make_float4(0, 0, 0, 0);
  const float4 kx = key < keys ? *reinterpret_cast<const float4*>(k_cache + source) : zero;
  const float4 vx = key < keys ? *reinterpret_cast<const float4*>(v_cache + source) : zero;
  const int64_t plane = int64_t{kv_heads} * keys_pad * D;
  __half* out = planes + (int64_t{head} * keys_pad + key) * D + d;
  uint2 hi, lo;
  split_fp16x2(kx.x, kx.y, hi.x, lo.x);
  split_fp16x2(kx.z, kx.w, hi.y, lo.y);
  *reinterpret_cast<uint2*>(out) = hi;
  *reinterpret_cast<uint2*>(out + plane) = lo;
  split_fp16x2(vx.x, vx.y, hi.x, lo.x);
  split_fp16x2(vx.z, vx.w, hi.y, lo.y);
  *reinterpret_cast<uint2*>(out + 2 * plane) = hi;
  *reinterpret_cast<uint2*>(out + 3 * plane) = lo;
}

template <int D>
__global__ void __launch_bounds__(kWarps * 32, 1)
    attention_mma_kernel(const float* __restrict__ q, const __half* __restrict__ planes,
                         float* __restrict__ out, Position position, int64_t T, int heads, int group,
                         int kv_heads, int64_t keys_pad, float scale) {
  using L = Layout<D>;
  constexpr int kPitch = L::kPitch;
  extern __shared__ __align__(16) __half shared_halves[];
  __half* q_hi = shared_halves;
  __half* q_lo = q_hi + kVectors * kPitch;
  __half* stages = shared_halves + L::kQuery;
  auto* slots = reinterpret_cast<uint32_t*>(stages + 2 * L::kStage);
  begin_dependent();
  const int64_t pos0 = position.get();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane / 4, c = lane % 4;
  const int rows = kVectors / group;  // query rows per block: vectors [0, rows * group) are stored
  const int64_t tiles_t = (T + rows - 1) / rows;
  const int64_t t0 = (tiles_t - 1 - blockIdx.x) * rows;  // the longest rows first
  const int kv_head = blockIdx.y;
  const int64_t q_cols = int64_t{heads} * D;
  // Vector v: row t0 + v / group (past T: the last row again, never stored), head kv_head * group + v %
  // group.
  const auto row_of = [&](int v) { return std::min<int64_t>(t0 + v / group, T - 1); };
  const auto head_of = [&](int v) { return kv_head * group + v % group; };
  const int64_t plane = int64_t{kv_heads} * keys_pad * D;
  const __half* kv = planes + int64_t{kv_head} * keys_pad * D;
  const auto load_tile = [&](int64_t tile, int stage) {
    __half* base = stages + stage * L::kStage;
    constexpr int kChunks = D / 8;  // 16-byte chunks per row
    for (int i = threadIdx.x; i < kPlanes * kKeys * kChunks; i += kWarps * 32) {
      const int p = i / (kKeys * kChunks), key = i / kChunks % kKeys, chunk = i % kChunks;
      copy_async16(base + (p * kKeys + key) * kPitch + chunk * 8,
                   kv + p * plane + (tile * kKeys + key) * D + chunk * 8);
    }
    commit_async();
  };
  const int64_t keys = pos0 + std::min<int64_t>(t0 + rows, T);  // keys any vector of the block sees
  const int64_t tiles = (keys + kKeys - 1) / kKeys;
  load_tile(0, 0);
  for (int i = threadIdx.x; i < kVectors * D / 4; i += kWarps * 32) {
    const int v = i / (D / 4), d = i % (D / 4) * 4;
    const float4 x = *reinterpret_cast<const float4*>(q + row_of(v) * q_cols + int64_t{head_of(v)} * D + d);
    uint2 hi, lo;
    split_fp16x2(x.x, x.y, hi.x, lo.x);
    split_fp16x2(x.z, x.w, hi.y, lo.y);
    *reinterpret_cast<uint2*>(q_hi + v * kPitch + d) = hi;
    *reinterpret_cast<uint2*>(q_lo + v * kPitch + d) = lo;
  }
  const int pair = warp % (kWarps / 2), side = warp / (kWarps / 2);  // side: which half of the dims
  const bool scorer = side == 0;
  uint32_t* slot = slots + (pair * 32 + lane) * kSlotStride;
  float* slot_floats = reinterpret_cast<float*>(slot);
  // This lane's two rows of the pair's 16 vectors: g and g + 8.
  const int64_t last[2] = {pos0 + row_of(pair * 16 + g), pos0 + row_of(pair * 16 + g + 8)};
  constexpr int kHalfTiles = D / 16;  // n8 tiles of O per warp: half the dims
  float o[kHalfTiles][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0, 0};
  const int a_row = pair * 16 + lane % 16, a_col = lane / 16 * 8;          // ldmatrix of Q
  const int b_key = lane / 16 * 8 + lane % 8, b_dim = (lane / 8) % 2 * 8;  // of K
  const int v_key = (lane / 8) % 2 * 8 + lane % 8,
            v_dim = lane / 16 * 8 + side * (D / 2);  // of V (transposed)
  for (int64_t tile = 0; tile < tiles; ++tile) {
    if (tile + 1 < tiles)
      load_tile(tile + 1, static_cast<int>((tile + 1) % 2));
    else
      commit_async();  // an empty group: the wait below then always means this tile
    wait_async<1>();
    __syncthreads();
    const __half* k_hi = stages + (tile % 2) * L::kStage;
    const __half* k_lo = k_hi + kKeys * kPitch;
    const __half* v_hi = k_lo + kKeys * kPitch;
    const __half* v_lo = v_hi + kKeys * kPitch;
    if (scorer) {
      float s[kKeys / 8][4] = {};
#pragma unroll
      for (int ks = 0; ks < D / 16; ks += 2) {
        float part[kKeys / 8][4] = {};
#pragma unroll
        for (int step = ks; step < ks + 2; ++step) {
          uint32_t a_hi[4], a_lo[4];
          load_matrices(a_hi, q_hi + a_row * kPitch + step * 16 + a_col);
          load_matrices(a_lo, q_lo + a_row * kPitch + step * 16 + a_col);
#pragma unroll
          for (int np = 0; np < kKeys / 16; ++np)
            mma3_two_tiles<false>(part[2 * np], part[2 * np + 1], a_hi, a_lo, k_hi, k_lo,
                                  (np * 16 + b_key) * kPitch + step * 16 + b_dim);
        }
#pragma unroll
        for (int j = 0; j < kKeys / 8; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) s[j][e] += part[j][e];
      }
      // Online softmax on rows g (s[j][0..1]) and g + 8 (s[j][2..3]); the four lanes of a row share m, l.
      const int64_t k0 = tile * kKeys;
      float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int j = 0; j < kKeys / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int64_t key = k0 + 8 * j + 2 * c + (e & 1);
          s[j][e] = key <= last[e / 2] ? s[j][e] * scale : -INFINITY;
          tile_max[e / 2] = fmaxf(tile_max[e / 2], s[j][e]);
        }
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
        tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
        const float m_new = fmaxf(m[r], tile_max[r]);  // finite: key 0 is visible to every vector
        const float correction = expf(m[r] - m_new);
        m[r] = m_new;
        l[r] *= correction;
        slot_floats[kSlotWords - 2 + r] = correction;
      }
#pragma unroll
      for (int j = 0; j < kKeys / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          s[j][e] = expf(s[j][e] - m[e / 2]);
          l[e / 2] += s[j][e];
        }
      }
      // P for k16 step kk (keys 16 kk .. + 15) is s[2 kk] and s[2 kk + 1] as one A operand.
#pragma unroll
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        uint32_t* hi = slot + kk * 8;
        const float(&s0)[4] = s[2 * kk];
        const float(&s1)[4] = s[2 * kk + 1];
        split_fp16x2(s0[0] * kProbabilityScale, s0[1] * kProbabilityScale, hi[0], hi[4]);
        split_fp16x2(s0[2] * kProbabilityScale, s0[3] * kProbabilityScale, hi[1], hi[5]);
        split_fp16x2(s1[0] * kProbabilityScale, s1[1] * kProbabilityScale, hi[2], hi[6]);
        split_fp16x2(s1[2] * kProbabilityScale, s1[3] * kProbabilityScale, hi[3], hi[7]);
      }
    }
    pair_barrier(pair);  // the scorer's slot is written
    // O = O * correction + P V over this warp's half of the dims.
    const float correction[2] = {slot_floats[kSlotWords - 2], slot_floats[kSlotWords - 1]};
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      uint32_t p_hi[4], p_lo[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) p_hi[i] = slot[kk * 8 + i], p_lo[i] = slot[kk * 8 + 4 + i];
#pragma unroll
      for (int np = 0; np < kHalfTiles / 2; ++np) {
        float part[2][4] = {};
        mma3_two_tiles<true>(part[0], part[1], p_hi, p_lo, v_hi, v_lo,
                             (kk * 16 + v_key) * kPitch + np * 16 + v_dim);
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            o[2 * np + h][e] = kk == 0 ? fmaf(o[2 * np + h][e], correction[e / 2], part[h][e])
                                       : o[2 * np + h][e] + part[h][e];
      }
    }
    __syncthreads();  // this stage and the slots are used up before the next iteration refills them
  }
  if (scorer) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
      slot_floats[r] = l[r];
    }
  }
  pair_barrier(pair);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int v = pair * 16 + g + 8 * r;
    const int64_t t = t0 + v / group;
    if (t >= T || v >= rows * group) continue;
    const float inv = 1.0f / (slot_floats[r] * kProbabilityScale);
    float* row = out + t * q_cols + int64_t{head_of(v)} * D + side * (D / 2) + 2 * c;
#pragma unroll
    for (int n = 0; n < kHalfTiles; ++n)
      *reinterpret_cast<float2*>(row + 8 * n) = make_float2(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
  }
}

template <int D>
void launch_mma(const AttentionArgs& a, Position position, Queue queue) {
  using L = Layout<D>;
  check(cudaFuncSetAttribute(attention_mma_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(L::kBytes)),
        "cudaFuncSetAttribute", "attention_mma");
  const int64_t T = a.q->rows, keys = a.pos0 + T, keys_pad = (keys + kKeys - 1) / kKeys * kKeys;
  const auto planes = queue.context->scratch(sizeof(__half) * kPlanes * a.kv_heads * keys_pad * D);
  auto* halves = static_cast<__half*>(planes.get());
  constexpr int kSplitThreads = 256;
  launch(split_kv_kernel<D>, blocks_for(keys_pad * a.kv_heads * D / 4, kSplitThreads), kSplitThreads, 0,
         queue, a.k_cache->data, a.v_cache->data, halves, keys, keys_pad, a.kv_heads);
  check_launch("attention split_kv");
  const int group = a.heads / a.kv_heads, rows = kVectors / group;
  const dim3 grid(static_cast<unsigned>((T + rows - 1) / rows), static_cast<unsigned>(a.kv_heads));
  launch(attention_mma_kernel<D>, grid, kWarps * 32, L::kBytes, queue, a.q->data,
         static_cast<const __half*>(halves), a.out->data, position, T, a.heads, group, a.kv_heads, keys_pad,
         a.scale);
  check_launch("attention_mma");
}

}  // namespace

bool attention_prefill_mma(const AttentionArgs& args, Position position, Queue queue) {
  const Context& context = *queue.context;
  const int group = args.heads / args.kv_heads;
  // The split pre-pass sizes its planes by the host's position, which a step graph would move; it splits
  // every key, so it pays for itself over many query rows only (verify widths keep the fp32 tiles).
  const size_t shared = args.head_dim == 256 ? Layout<256>::kBytes : Layout<128>::kBytes;
  if (args.q->rows < kMinRows || group > kVectors || context.capture ||
      shared > static_cast<size_t>(context.shared_per_block) ||
      args.k_cache->cols != int64_t{args.kv_heads} * args.head_dim)
    return false;
  if (args.head_dim == 256)
    launch_mma<256>(args, position, queue);
  else if (args.head_dim == 128)
    launch_mma<128>(args, position, queue);
  else
    return false;
  return true;
}

}  // namespace mtplx::cuda

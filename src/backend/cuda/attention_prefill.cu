// Causal GQA attention for prefill (many query rows), fp32 throughout like the CPU reference. The decode
// kernel of attention.cu gives every (query row, head) its own block, so each block streams all visible K
// and V rows: ~270 GB of L2 reads per 4k-token layer of Qwen3.5-4B. Here a block owns 64 query vectors that
// share one KV head (64 / group rows x the group's heads) and walks the keys in tiles of 32 through shared
// memory, so each K/V row is read once per 64 vectors.
//
// A warp owns 8 of the vectors. Scores: lane = key of the tile (K rows padded by 4 floats: conflict-free
// 16-byte reads), the query read as a broadcast. Softmax: online, once per tile (running max and sum per
// vector). P V: lane = D / 32 consecutive dims, each key's probability broadcast by a shuffle.
#include <algorithm>

#include "backend/cuda/attention_prefill.h"
#include "backend/cuda/device_util.cuh"

namespace mtplx::cuda {
namespace {

constexpr int kVectors = 64;  // query vectors per block
constexpr int kWarps = 8;
constexpr int kPerWarp = kVectors / kWarps;
constexpr int kKeys = 32;  // keys per tile

template <int D>
constexpr size_t shared_bytes() {
  return sizeof(float) * (size_t{kVectors} * D + size_t{kKeys} * (D + 4) + size_t{kKeys} * D);
}

template <int D>
__global__ void __launch_bounds__(kWarps * 32, 1)
    attention_prefill_kernel(const float* __restrict__ q, const float* __restrict__ k_cache,
                             const float* __restrict__ v_cache, float* __restrict__ out, Position position,
                             int64_t T, int heads, int group, int64_t kv_cols, float scale) {
  constexpr int kDims = D / 32;  // per lane in P V
  extern __shared__ __align__(16) float shared[];
  float* sq = shared;                // [kVectors][D]
  float* sk = sq + kVectors * D;     // [kKeys][D + 4]
  float* sv = sk + kKeys * (D + 4);  // [kKeys][D]
  begin_dependent();
  const int64_t pos0 = position.get();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int rows = kVectors / group;  // query rows per block
  const int64_t tiles = (T + rows - 1) / rows;
  const int64_t t0 = (tiles - 1 - blockIdx.x) * rows;  // the longest rows first
  const int kv_head = blockIdx.y;
  const int64_t q_cols = int64_t{heads} * D;
  // Vector v: row t0 + v / group (past T: the last row again, never stored), head kv_head * group + v %
  // group.
  const auto row_of = [&](int v) { return std::min<int64_t>(t0 + v / group, T - 1); };
  for (int i = threadIdx.x; i < kVectors * D / 4; i += blockDim.x) {
    const int v = i / (D / 4), c4 = i % (D / 4);
    const int head = kv_head * group + v % group;
    reinterpret_cast<float4*>(sq)[i] =
        reinterpret_cast<const float4*>(q + row_of(v) * q_cols + int64_t{head} * D)[c4];
  }
  float m[kPerWarp], l[kPerWarp], acc[kPerWarp][kDims];
  int64_t last[kPerWarp];  // the last key each vector sees
#pragma unroll
  for (int j = 0; j < kPerWarp; ++j) {
    m[j] = -INFINITY;
    l[j] = 0;
    last[j] = pos0 + row_of(warp * kPerWarp + j);
#pragma unroll
    for (int i = 0; i < kDims; ++i) acc[j][i] = 0;
  }
  const int64_t keys = pos0 + std::min<int64_t>(t0 + rows, T);  // keys any vector of the block sees
  const float* k_base = k_cache + int64_t{kv_head} * D;
  const float* v_base = v_cache + int64_t{kv_head} * D;
  for (int64_t k0 = 0; k0 < keys; k0 += kKeys) {
    __syncthreads();  // the previous tile is used up (and the queries are in place)
    for (int i = threadIdx.x; i < kKeys * D / 4; i += blockDim.x) {
      const int s = i / (D / 4), c4 = i % (D / 4);
      const int64_t key = std::min<int64_t>(k0 + s, keys - 1);
      reinterpret_cast<float4*>(sk + s * (D + 4))[c4] =
          reinterpret_cast<const float4*>(k_base + key * kv_cols)[c4];
      reinterpret_cast<float4*>(sv + s * D)[c4] = reinterpret_cast<const float4*>(v_base + key * kv_cols)[c4];
    }
    __syncthreads();
    // Scores of key k0 + lane against the warp's vectors.
    float score[kPerWarp];
#pragma unroll
    for (int j = 0; j < kPerWarp; ++j) score[j] = 0;
    const float* krow = sk + lane * (D + 4);
    const float* qw = sq + warp * kPerWarp * D;
#pragma unroll 4
    for (int d = 0; d < D; d += 4) {
      const float4 kk = *reinterpret_cast<const float4*>(krow + d);
#pragma unroll
      for (int j = 0; j < kPerWarp; ++j) {
        const float4 qq = *reinterpret_cast<const float4*>(qw + j * D + d);
        score[j] = fmaf(qq.x, kk.x, score[j]);
        score[j] = fmaf(qq.y, kk.y, score[j]);
        score[j] = fmaf(qq.z, kk.z, score[j]);
        score[j] = fmaf(qq.w, kk.w, score[j]);
      }
    }
    float p[kPerWarp];
#pragma unroll
    for (int j = 0; j < kPerWarp; ++j) {
      const float s = k0 + lane <= last[j] ? score[j] * scale : -INFINITY;
      const float m_new = fmaxf(m[j], warp_max(s));  // finite: key 0 is visible to every vector
      const float correction = expf(m[j] - m_new);
      p[j] = expf(s - m_new);
      l[j] = l[j] * correction + warp_sum(p[j]);
      m[j] = m_new;
#pragma unroll
      for (int i = 0; i < kDims; ++i) acc[j][i] *= correction;
    }
    const int tile_keys = static_cast<int>(std::min<int64_t>(kKeys, keys - k0));
    for (int s = 0; s < tile_keys; ++s) {
      float vv[kDims];
#pragma unroll
      for (int i = 0; i < kDims; i += 4) {
        const float4 x = *reinterpret_cast<const float4*>(sv + s * D + lane * kDims + i);
        vv[i] = x.x, vv[i + 1] = x.y, vv[i + 2] = x.z, vv[i + 3] = x.w;
      }
#pragma unroll
      for (int j = 0; j < kPerWarp; ++j) {
        const float ps = __shfl_sync(0xffffffffu, p[j], s);
#pragma unroll
        for (int i = 0; i < kDims; ++i) acc[j][i] = fmaf(ps, vv[i], acc[j][i]);
      }
    }
  }
#pragma unroll
  for (int j = 0; j < kPerWarp; ++j) {
    const int v = warp * kPerWarp + j;
    const int64_t t = t0 + v / group;
    if (t >= T) continue;
    const int head = kv_head * group + v % group;
    float* o = out + t * q_cols + int64_t{head} * D + lane * kDims;
    const float inv = 1.0f / l[j];
#pragma unroll
    for (int i = 0; i < kDims; i += 4)
      *reinterpret_cast<float4*>(o + i) =
          make_float4(acc[j][i] * inv, acc[j][i + 1] * inv, acc[j][i + 2] * inv, acc[j][i + 3] * inv);
  }
}

template <int D>
void launch_prefill(const AttentionArgs& a, Position position, Queue queue) {
  constexpr size_t kShared = shared_bytes<D>();
  check(cudaFuncSetAttribute(attention_prefill_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(kShared)),
        "cudaFuncSetAttribute", "attention_prefill");
  const int group = a.heads / a.kv_heads;
  const int64_t T = a.q->rows, rows = kVectors / group;
  const dim3 grid(static_cast<unsigned>((T + rows - 1) / rows), static_cast<unsigned>(a.kv_heads));
  launch(attention_prefill_kernel<D>, grid, kWarps * 32, kShared, queue, a.q->data, a.k_cache->data,
         a.v_cache->data, a.out->data, position, T, a.heads, group, a.k_cache->cols, a.scale);
}

}  // namespace

bool attention_prefill(const AttentionArgs& args, Position position, Queue queue) {
  const int group = args.heads / args.kv_heads;
  if (kVectors % group != 0) return false;
  if (args.head_dim == 256)
    launch_prefill<256>(args, position, queue);
  else if (args.head_dim == 128)
    launch_prefill<128>(args, position, queue);
  else
    return false;
  check_launch("attention_prefill");
  return true;
}

}  // namespace mtplx::cuda

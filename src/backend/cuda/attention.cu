// Causal GQA softmax attention over the KV cache. One block per (query row, head, split); its warps take
// cache positions round-robin, each keeping an online softmax (running max, sum and weighted value sum in
// registers), and the block merges the warps' partial results at the end. Lane l holds dims l, l+32, ...
// Split-K for long contexts at decode widths: the visible positions (read on the device, so a step graph
// replays at any length) are cut into `splits` ranges, one block each; every block writes its (max, sum,
// weighted values) and a second kernel merges them. The split count follows the cache capacity, so it is
// fixed for a state and its graphs.
#include <algorithm>
#include <memory>

#include "backend/cuda/attention_prefill.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/device_util.cuh"

namespace mtplx {
namespace cuda {
namespace {

constexpr int kWarps = 8;

template <int NPL>  // dims per lane: head_dim = 32 * NPL
__global__ void __launch_bounds__(kWarps * 32)
    attention_kernel(const float* q, const float* k_cache, const float* v_cache, float* out,
                     const float* gate, Position position, int heads, int group, int64_t kv_cols, float scale,
                     int splits, float* partial) {
  begin_dependent();
  const int64_t pos0 = position.get();
  constexpr int D = 32 * NPL;
  const int h = blockIdx.x;
  const int64_t t = blockIdx.y;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t q_cols = int64_t{heads} * D;
  const float* qv = q + t * q_cols + int64_t{h} * D;
  const int64_t kv_off = int64_t{h / group} * D;
  float qr[NPL], acc[NPL];
#pragma unroll
  for (int i = 0; i < NPL; ++i) {
    qr[i] = qv[i * 32 + lane];
    acc[i] = 0;
  }
  float m = -INFINITY, l = 0;
  const int64_t visible = pos0 + t + 1;
  const int64_t per_split = (visible + splits - 1) / splits;
  const int64_t begin = int64_t{blockIdx.z} * per_split;
  const int64_t end = visible < begin + per_split ? visible : begin + per_split;
  for (int64_t s = begin + warp; s < end; s += kWarps) {
    const float* kv = k_cache + s * kv_cols + kv_off;
    const float* vv = v_cache + s * kv_cols + kv_off;
    float kr[NPL], vr[NPL];
#pragma unroll
    for (int i = 0; i < NPL; ++i) {
      kr[i] = kv[i * 32 + lane];
      vr[i] = vv[i * 32 + lane];
    }
    float dot = 0;
#pragma unroll
    for (int i = 0; i < NPL; ++i) dot += qr[i] * kr[i];
    const float score = warp_sum(dot) * scale;
    const float m_new = fmaxf(m, score);
    const float correction = expf(m - m_new);
    const float p = expf(score - m_new);
    l = l * correction + p;
#pragma unroll
    for (int i = 0; i < NPL; ++i) acc[i] = acc[i] * correction + p * vr[i];
    m = m_new;
  }
  __shared__ float shared_m[kWarps], shared_l[kWarps];
  __shared__ float shared_acc[kWarps][D];
  if (lane == 0) {
    shared_m[warp] = m;
    shared_l[warp] = l;
  }
#pragma unroll
  for (int i = 0; i < NPL; ++i) shared_acc[warp][i * 32 + lane] = acc[i];
  __syncthreads();
  float M = -INFINITY;
  for (int w = 0; w < kWarps; ++w) M = fmaxf(M, shared_m[w]);
  if (splits > 1) {
    // (max, sum, weighted values) of this split; an empty split (M = -inf) contributes nothing.
    float* p = partial + ((t * heads + h) * splits + blockIdx.z) * (D + 2);
    const bool empty = M == -INFINITY;
    float L = 0;
    for (int w = 0; w < kWarps && !empty; ++w) L += shared_l[w] * expf(shared_m[w] - M);
    if (threadIdx.x == 0) {
      p[0] = M;
      p[1] = L;
    }
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
      float sum = 0;
      for (int w = 0; w < kWarps && !empty; ++w) sum += shared_acc[w][d] * expf(shared_m[w] - M);
      p[2 + d] = sum;
    }
    return;
  }
  float L = 0;
  for (int w = 0; w < kWarps; ++w) L += shared_l[w] * expf(shared_m[w] - M);
  float* o = out + t * q_cols + int64_t{h} * D;
  const float* g = gate == nullptr ? nullptr : gate + t * q_cols + int64_t{h} * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float sum = 0;
    for (int w = 0; w < kWarps; ++w) sum += shared_acc[w][d] * expf(shared_m[w] - M);
    o[d] = g == nullptr ? sum / L : sum / L * sigmoid(g[d]);
  }
}

// Merges the splits of one (query row, head): thread = dim.
__global__ void attention_combine_kernel(const float* partial, float* out, const float* gate, int heads,
                                         int splits, int D) {
  begin_dependent();
  const int h = blockIdx.x;
  const int64_t t = blockIdx.y;
  const float* p = partial + (t * heads + h) * splits * int64_t{D + 2};
  float M = -INFINITY;
  for (int z = 0; z < splits; ++z) M = fmaxf(M, p[z * (D + 2)]);
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float L = 0, sum = 0;
    for (int z = 0; z < splits; ++z) {
      const float m = p[z * (D + 2)];
      if (m == -INFINITY) continue;
      const float f = expf(m - M);
      L += p[z * (D + 2) + 1] * f;
      sum += p[z * (D + 2) + 2 + d] * f;
    }
    const int64_t i = t * heads * int64_t{D} + int64_t{h} * D + d;
    out[i] = gate == nullptr ? sum / L : sum / L * sigmoid(gate[i]);
  }
}

// attention_prepare: one block per (head, row), q heads first then kv heads, thread = dim. Arithmetic as
// rms_norm and rope do it (angles in double); the partner of a rotated pair comes through shared memory.
__global__ void attention_prepare_kernel(const float* qg, float* k, const float* v, const float* q_norm,
                                         const float* k_norm, float* q, float* gate, float* k_cache,
                                         float* v_cache, int heads, int rot_dim, double theta, float eps,
                                         Position position, int64_t kv_cols) {
  begin_dependent();
  extern __shared__ float row[];  // the block's normed head
  __shared__ float shared[32];
  const int D = static_cast<int>(blockDim.x), i = static_cast<int>(threadIdx.x);
  const int64_t t = blockIdx.y;
  const bool is_q = static_cast<int>(blockIdx.x) < heads;
  const int64_t h = is_q ? blockIdx.x : blockIdx.x - heads;
  const int64_t q_cols = int64_t{heads} * D;
  float x;
  if (is_q) {
    const float* head = qg + t * 2 * q_cols + h * 2 * D;
    x = head[i];
    gate[t * q_cols + h * D + i] = head[D + i];
  } else {
    x = k[t * kv_cols + h * D + i];
  }
  const float sum = block_sum(x * x, shared);
  const float inv = 1.0f / sqrtf(sum / static_cast<float>(D) + eps);
  const float normed = x * inv * (is_q ? q_norm : k_norm)[i];
  row[i] = normed;
  __syncthreads();
  float out = normed;
  const int half = rot_dim / 2;
  const int64_t pos = position.get() + t;
  if (i < rot_dim) {
    const int j = i < half ? i : i - half;
    const double inv_freq = pow(theta, -2.0 * j / rot_dim);
    const double angle = static_cast<double>(pos) * inv_freq;
    const float c = static_cast<float>(cos(angle)), s = static_cast<float>(sin(angle));
    const float a = row[j], b = row[j + half];
    out = i < half ? a * c - b * s : b * c + a * s;
  }
  if (is_q) {
    q[t * q_cols + h * D + i] = out;
  } else {
    k[t * kv_cols + h * D + i] = out;
    k_cache[pos * kv_cols + h * D + i] = out;
    v_cache[pos * kv_cols + h * D + i] = v[t * kv_cols + h * D + i];
  }
}

}  // namespace
}  // namespace cuda

void CudaBackend::attention_prepare(const AttentionPrepareArgs& a) {
  const int D = a.head_dim;
  const int64_t T = a.qg->rows, kv_cols = int64_t{a.kv_heads} * D;
  const bool fused = D % 32 == 0 && D <= 1024 && a.rot_dim % 2 == 0 && a.rot_dim <= D &&
                     a.q_norm->numel() == D && a.k_norm->numel() == D;
  if (!fused) {
    Backend::attention_prepare(a);
    return;
  }
  if (!(a.qg->cols == 2 * int64_t{a.heads} * D && a.k->rows == T && a.k->cols == kv_cols && a.v->rows == T &&
        a.v->cols == kv_cols && a.q->rows == T && a.q->cols == int64_t{a.heads} * D && a.gate->rows == T &&
        a.gate->cols == a.q->cols && a.k_cache->cols == kv_cols && a.v_cache->cols == kv_cols &&
        a.pos0 >= 0 && a.pos0 + T <= a.k_cache->rows && a.pos0 + T <= a.v_cache->rows))
    fail("internal error: cuda backend: attention_prepare shapes");
  if (T == 0) return;
  const dim3 grid(static_cast<unsigned>(a.heads + a.kv_heads), static_cast<unsigned>(T));
  cuda::launch(cuda::attention_prepare_kernel, grid, static_cast<unsigned>(D), sizeof(float) * D,
               ctx_->queue(), a.qg->data, a.k->data, a.v->data, a.q_norm->data, a.k_norm->data, a.q->data,
               a.gate->data, a.k_cache->data, a.v_cache->data, a.heads, a.rot_dim, a.theta, a.eps,
               ctx_->position(a.pos0), kv_cols);
  cuda::check_launch("attention_prepare");
}

void CudaBackend::attention(const AttentionArgs& args) {
  const Tensor& q = *args.q;
  const int64_t D = args.head_dim;
  const int64_t kv_cols = args.k_cache->cols;
  if (!(q.cols == args.heads * D && kv_cols == args.kv_heads * D && args.out->cols == q.cols &&
        args.heads % args.kv_heads == 0 && args.pos0 + q.rows <= args.k_cache->rows))
    fail("internal error: cuda backend: attention shape");
  if (q.rows == 0) return;
  if (args.gate != nullptr && args.gate->numel() != q.numel())
    fail("internal error: cuda backend: attention gate");
  // Prefill rows: a block per 64 query vectors of one KV head (attention_mma.cu on tensor cores, or
  // attention_prefill.cu in fp32), the gate after.
  const cuda::Position position = ctx_->position(args.pos0);
  if (q.rows > 8 && ctx_->attention_tiles &&
      ((ctx_->attention_mma && cuda::attention_prefill_mma(args, position, ctx_->queue())) ||
       cuda::attention_prefill(args, position, ctx_->queue()))) {
    if (args.gate != nullptr) sigmoid_mul(*args.out, *args.gate);
    return;
  }
  // Decode widths: the gate applied where the output is written (this kernel, or the split merge).
  const float* gate = args.gate == nullptr ? nullptr : args.gate->data;
  // Decode widths over a long cache: about one split per 512 positions of capacity, at most 32. A few
  // rows give only heads * rows blocks, far fewer than the SMs; prefill rows fill the GPU by themselves.
  const int64_t capacity = args.k_cache->rows;
  const int splits = q.rows <= 8 && ctx_->attention_splits
                         ? static_cast<int>(std::clamp<int64_t>(capacity / 512, 1, 32))
                         : 1;
  std::shared_ptr<void> partial;
  if (splits > 1)
    partial = ctx_->scratch(sizeof(float) * static_cast<size_t>(q.rows * args.heads * splits * (D + 2)));
  const dim3 grid(static_cast<unsigned>(args.heads), static_cast<unsigned>(q.rows),
                  static_cast<unsigned>(splits));
  const int group = args.heads / args.kv_heads;
  auto run = [&](auto kernel) {
    cuda::launch(kernel, grid, cuda::kWarps * 32, 0, ctx_->queue(), q.data, args.k_cache->data,
                 args.v_cache->data, args.out->data, gate, position, args.heads, group, kv_cols, args.scale,
                 splits, static_cast<float*>(partial.get()));
  };
  switch (D) {
    case 32:
      run(cuda::attention_kernel<1>);
      break;
    case 64:
      run(cuda::attention_kernel<2>);
      break;
    case 128:
      run(cuda::attention_kernel<4>);
      break;
    case 256:
      run(cuda::attention_kernel<8>);
      break;
    default:
      fail(str("attention head_dim ", D, " is not supported by the CUDA backend"), "cuda backend",
           "use --device cpu, or a model with head_dim 32, 64, 128 or 256");
  }
  cuda::check_launch("attention");
  if (splits > 1) {
    cuda::launch(cuda::attention_combine_kernel,
                 dim3(static_cast<unsigned>(args.heads), static_cast<unsigned>(q.rows)),
                 static_cast<unsigned>(D), 0, ctx_->queue(), static_cast<const float*>(partial.get()),
                 args.out->data, gate, args.heads, splits, static_cast<int>(D));
    cuda::check_launch("attention_combine");
  }
}

}  // namespace mtplx

// Gated delta rule on the GPU, token by token, per value head hv (key head hv / (Hv / Hk)):
//   S_t = exp(g_t) S_{t-1};  S_t += k_t (beta_t (v_t - S_t^T k_t))^T;  o_t = S_t^T q_t
// with S [Dk, Dv] in fp32. A block owns 32 value columns of one head and keeps that slice of S in
// registers for all T rows: lane = column, each of the 4 warps holds a quarter of the Dk rows. The two
// column sums per token (S^T k and S^T q) are reduced over the warps through shared memory.
//
// Prefills (gdn_chunked) below the chunked kernels' threshold (gdn_chunks.cu) take gdn_columns_kernel
// instead: a warp owns 8 value columns and all Dk rows of them (a lane holds a quarter of a column's rows in
// registers), so each column sum is a thread's own plus two shuffles and a step needs no barrier; q, k, g and
// beta of 32 tokens at a time are staged in shared memory. The per-step cost drops from three block
// barriers and dependent global loads to ~Dk register FMAs a lane.
#include <algorithm>
#include <cmath>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/gdn_chunks.h"

namespace mtplx {
namespace cuda {
namespace {

constexpr int kGdnWarps = 4;

template <int R>  // rows of S per thread: Dk <= 4 * R
__global__ void __launch_bounds__(kGdnWarps * 32)
    gdn_recurrent_kernel(const float* q, const float* k, const float* v, const float* g, const float* beta,
                         float* state, float* out, float* row_states, int64_t captured, int64_t T, int Hk,
                         int Hv, int Dk, int Dv) {
  begin_dependent();
  extern __shared__ float shared[];  // q and k of the current row: 2 * Dk
  float* sq = shared;
  float* sk = shared + Dk;
  __shared__ float red_m[kGdnWarps][32], red_o[kGdnWarps][32];
  const int hv = blockIdx.x;
  const int kh = hv / (Hv / Hk);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int j = blockIdx.y * 32 + lane;
  const bool column = j < Dv;
  const int d0 = warp * R;
  const int64_t head_state = int64_t{hv} * Dk * Dv;
  const int64_t qk_cols = int64_t{Hk} * Dk, v_cols = int64_t{Hv} * Dv;
  float S[R];
#pragma unroll
  for (int r = 0; r < R; ++r)
    S[r] = (column && d0 + r < Dk) ? state[head_state + int64_t{d0 + r} * Dv + j] : 0.0f;
  for (int64_t t = 0; t < T; ++t) {
    for (int i = threadIdx.x; i < Dk; i += blockDim.x) {
      sq[i] = q[t * qk_cols + int64_t{kh} * Dk + i];
      sk[i] = k[t * qk_cols + int64_t{kh} * Dk + i];
    }
    __syncthreads();
    const float decay = expf(g[t * Hv + hv]);
    const float b = beta[t * Hv + hv];
    float partial = 0;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (d0 + r < Dk) {
        S[r] *= decay;
        partial += S[r] * sk[d0 + r];
      }
    }
    red_m[warp][lane] = partial;
    __syncthreads();
    float m = 0;
#pragma unroll
    for (int w = 0; w < kGdnWarps; ++w) m += red_m[w][lane];
    const float vj = column ? v[t * v_cols + int64_t{hv} * Dv + j] : 0.0f;
    const float delta = b * (vj - m);
    partial = 0;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (d0 + r < Dk) {
        S[r] += sk[d0 + r] * delta;
        partial += S[r] * sq[d0 + r];
      }
    }
    red_o[warp][lane] = partial;
    if (t < captured && column) {
      float* rs = row_states + t * (int64_t{Hv} * Dk * Dv) + head_state;
#pragma unroll
      for (int r = 0; r < R; ++r)
        if (d0 + r < Dk) rs[int64_t{d0 + r} * Dv + j] = S[r];
    }
    __syncthreads();
    if (warp == 0 && column) {
      float o = 0;
#pragma unroll
      for (int w = 0; w < kGdnWarps; ++w) o += red_o[w][lane];
      out[t * v_cols + int64_t{hv} * Dv + j] = o;
    }
  }
  if (column) {
#pragma unroll
    for (int r = 0; r < R; ++r)
      if (d0 + r < Dk) state[head_state + int64_t{d0 + r} * Dv + j] = S[r];
  }
}

// gdn_prepare for a few rows: one block per Dk consecutive conv channels (thread = channel; Dk divides
// key_dim and value_dim, so a block lies wholly in q, k or v) plus one block for the gates. A thread owns
// its channel's conv state, so it reads the old state before overwriting it. Arithmetic as conv1d_silu,
// l2_norm and gdn_gates do it.
template <int K>
__global__ void gdn_prepare_kernel(const float* qkv, const float* weight, float* state, float* conv_rows,
                                   int64_t captured, const float* a, const float* b, const float* a_log,
                                   const float* dt_bias, float* q, float* k, float* v, float* g, float* beta,
                                   int64_t T, int64_t C, int64_t key_dim, int64_t value_dim, int Hv,
                                   float q_scale) {
  begin_dependent();
  __shared__ float shared[32];
  const int Dk = static_cast<int>(blockDim.x);
  if (blockIdx.x == C / Dk) {  // the gates
    for (int64_t i = threadIdx.x; i < T * Hv; i += blockDim.x) {
      const int64_t h = i % Hv;
      const float x = a[i] + dt_bias[h];
      const float softplus = x > 20.0f ? x : log1pf(expf(x));
      g[i] = -expf(a_log[h]) * softplus;
      beta[i] = sigmoid(b[i]);
    }
    return;
  }
  const int64_t c = int64_t{blockIdx.x} * Dk + threadIdx.x;
  float window[K];  // conv inputs t .. t + K - 1 ([state ; qkv] rows)
  float w[K];
#pragma unroll
  for (int j = 0; j < K; ++j) w[j] = weight[c * K + j];
#pragma unroll
  for (int j = 0; j < K - 1; ++j) window[j] = state[j * C + c];
  const bool is_q = c < key_dim, is_k = !is_q && c < 2 * key_dim;
  for (int64_t t = 0; t < T; ++t) {
    window[K - 1] = qkv[t * C + c];
    float sum = 0;
#pragma unroll
    for (int j = 0; j < K; ++j) sum += w[j] * window[j];
    const float y = silu(sum);
#pragma unroll
    for (int j = 0; j < K - 1; ++j) {
      window[j] = window[j + 1];
      if (t < captured) conv_rows[(t * (K - 1) + j) * C + c] = window[j];
    }
    if (is_q || is_k) {
      const float squares = block_sum(y * y, shared);
      const float factor = (is_q ? q_scale : 1.0f) / sqrtf(squares + 1e-6f);
      if (is_q)
        q[t * key_dim + c] = y * factor;
      else
        k[t * key_dim + c - key_dim] = y * factor;
    } else {
      v[t * value_dim + c - 2 * key_dim] = y;
    }
  }
#pragma unroll
  for (int j = 0; j < K - 1; ++j) state[j * C + c] = window[j];
}

void check_args(const GdnArgs& a) {
  const int64_t T = a.q->rows;
  const bool ok =
      a.key_heads > 0 && a.value_heads % a.key_heads == 0 && a.q->cols == int64_t{a.key_heads} * a.key_dim &&
      a.k->cols == a.q->cols && a.k->rows == T && a.v->rows == T &&
      a.v->cols == int64_t{a.value_heads} * a.value_dim && a.g->rows == T && a.g->cols == a.value_heads &&
      a.beta->rows == T && a.state->numel() == int64_t{a.value_heads} * a.key_dim * a.value_dim &&
      a.out->rows == T && a.out->cols == a.v->cols &&
      (a.row_states == nullptr || (a.row_states->rows <= T && a.row_states->cols == a.state->numel()));
  if (!ok) fail("internal error: cuda backend: gdn argument shapes");
}

void run_recurrent(const GdnArgs& a, Queue stream) {
  check_args(a);
  const int64_t T = a.q->rows;
  if (T == 0) return;
  const dim3 grid(static_cast<unsigned>(a.value_heads), static_cast<unsigned>((a.value_dim + 31) / 32));
  const size_t shared = 2 * sizeof(float) * static_cast<size_t>(a.key_dim);
  auto run = [&](auto kernel) {
    launch(kernel, grid, kGdnWarps * 32, shared, stream, a.q->data, a.k->data, a.v->data, a.g->data,
           a.beta->data, a.state->data, a.out->data, a.row_states ? a.row_states->data : nullptr,
           a.row_states ? a.row_states->rows : int64_t{0}, T, a.key_heads, a.value_heads, a.key_dim,
           a.value_dim);
  };
  const int rows = (a.key_dim + kGdnWarps - 1) / kGdnWarps;
  if (rows <= 4)
    run(gdn_recurrent_kernel<4>);
  else if (rows <= 8)
    run(gdn_recurrent_kernel<8>);
  else if (rows <= 16)
    run(gdn_recurrent_kernel<16>);
  else if (rows <= 32)
    run(gdn_recurrent_kernel<32>);
  else if (rows <= 64)
    run(gdn_recurrent_kernel<64>);
  else
    fail(str("GDN key head dim ", a.key_dim, " is not supported by the CUDA backend (at most 256)"),
         "cuda backend", "use --device cpu for this model");
  check_launch("gdn_recurrent");
}

constexpr int kColumnSteps = 32;  // tokens staged per round in gdn_columns_kernel
constexpr int kColumnParts = 4;   // lanes per value column, each holding Dk / 4 rows of S
constexpr int kColumnsPerWarp = 32 / kColumnParts;
constexpr int kColumnWarps = 4;  // 32 value columns per block: 128 blocks of 4 warps for Qwen3.5-4B

// A block per 32 value columns of a head, a warp per 8 of them: lane = (quarter of the Dk rows, column),
// S[Dk / 4] in registers; the quarters' column sums meet through two shuffles.
template <int DK>
__global__ void gdn_columns_kernel(const float* __restrict__ q, const float* __restrict__ k,
                                   const float* __restrict__ v, const float* __restrict__ g,
                                   const float* __restrict__ beta, float* __restrict__ state,
                                   float* __restrict__ out, int64_t T, int Hk, int Hv, int Dv) {
  constexpr int kRows = DK / kColumnParts;
  begin_dependent();
  __shared__ __align__(16) float sq[kColumnSteps][DK];
  __shared__ __align__(16) float sk[kColumnSteps][DK];
  __shared__ float sdecay[kColumnSteps], sbeta[kColumnSteps];
  const int hv = blockIdx.x, kh = hv / (Hv / Hk), lane = threadIdx.x & 31;
  const int part = lane / kColumnsPerWarp, d0 = part * kRows;
  const int j = blockIdx.y * (kColumnsPerWarp * kColumnWarps) + (threadIdx.x >> 5) * kColumnsPerWarp +
                lane % kColumnsPerWarp;
  const bool column = j < Dv;
  const int64_t head_state = int64_t{hv} * DK * Dv;
  const int64_t qk_cols = int64_t{Hk} * DK, v_cols = int64_t{Hv} * Dv;
  float S[kRows];
#pragma unroll
  for (int d = 0; d < kRows; ++d) S[d] = column ? state[head_state + int64_t{d0 + d} * Dv + j] : 0.0f;
  for (int64_t t0 = 0; t0 < T; t0 += kColumnSteps) {
    const int steps = static_cast<int>(std::min<int64_t>(kColumnSteps, T - t0));
    __syncthreads();  // the previous round's tokens are used up
    for (int i = threadIdx.x; i < steps * DK / 4; i += blockDim.x) {
      const int r = i / (DK / 4), c4 = i % (DK / 4);
      const int64_t offset = (t0 + r) * qk_cols + int64_t{kh} * DK + 4 * c4;
      reinterpret_cast<float4*>(sq[r])[c4] = *reinterpret_cast<const float4*>(q + offset);
      reinterpret_cast<float4*>(sk[r])[c4] = *reinterpret_cast<const float4*>(k + offset);
    }
    if (threadIdx.x < steps) {
      sdecay[threadIdx.x] = expf(g[(t0 + threadIdx.x) * Hv + hv]);
      sbeta[threadIdx.x] = beta[(t0 + threadIdx.x) * Hv + hv];
    }
    __syncthreads();
    float vj = column ? v[t0 * v_cols + int64_t{hv} * Dv + j] : 0.0f;
    for (int r = 0; r < steps; ++r) {
      const float v_next = (column && r + 1 < steps) ? v[(t0 + r + 1) * v_cols + int64_t{hv} * Dv + j] : 0.0f;
      const float decay = sdecay[r];
      const float* kr = &sk[r][d0];
      const float* qr = &sq[r][d0];
      float m[4] = {0, 0, 0, 0};
#pragma unroll
      for (int d = 0; d < kRows; d += 4) {
        const float4 kk = *reinterpret_cast<const float4*>(kr + d);
        S[d] *= decay, S[d + 1] *= decay, S[d + 2] *= decay, S[d + 3] *= decay;
        m[0] = fmaf(S[d], kk.x, m[0]);
        m[1] = fmaf(S[d + 1], kk.y, m[1]);
        m[2] = fmaf(S[d + 2], kk.z, m[2]);
        m[3] = fmaf(S[d + 3], kk.w, m[3]);
      }
      float mine = (m[0] + m[1]) + (m[2] + m[3]);
      for (int o = kColumnsPerWarp; o < 32; o *= 2) mine += __shfl_xor_sync(0xffffffffu, mine, o);
      const float delta = sbeta[r] * (vj - mine);
      float o[4] = {0, 0, 0, 0};
#pragma unroll
      for (int d = 0; d < kRows; d += 4) {
        const float4 kk = *reinterpret_cast<const float4*>(kr + d);
        const float4 qq = *reinterpret_cast<const float4*>(qr + d);
        S[d] = fmaf(kk.x, delta, S[d]);
        S[d + 1] = fmaf(kk.y, delta, S[d + 1]);
        S[d + 2] = fmaf(kk.z, delta, S[d + 2]);
        S[d + 3] = fmaf(kk.w, delta, S[d + 3]);
        o[0] = fmaf(S[d], qq.x, o[0]);
        o[1] = fmaf(S[d + 1], qq.y, o[1]);
        o[2] = fmaf(S[d + 2], qq.z, o[2]);
        o[3] = fmaf(S[d + 3], qq.w, o[3]);
      }
      float total = (o[0] + o[1]) + (o[2] + o[3]);
      for (int o = kColumnsPerWarp; o < 32; o *= 2) total += __shfl_xor_sync(0xffffffffu, total, o);
      if (column && part == 0) out[(t0 + r) * v_cols + int64_t{hv} * Dv + j] = total;
      vj = v_next;
    }
  }
  if (column) {
#pragma unroll
    for (int d = 0; d < kRows; ++d) state[head_state + int64_t{d0 + d} * Dv + j] = S[d];
  }
}

// gdn_chunked token by token on the column kernel where it applies (no per-row states, Dk of 64 or 128);
// false otherwise.
bool run_columns(const GdnArgs& a, Queue stream) {
  check_args(a);
  const int64_t T = a.q->rows;
  if (a.row_states != nullptr || (a.key_dim != 64 && a.key_dim != 128)) return false;
  if (T == 0) return true;
  const dim3 grid(static_cast<unsigned>(a.value_heads),
                  static_cast<unsigned>((a.value_dim + kColumnsPerWarp * kColumnWarps - 1) /
                                        (kColumnsPerWarp * kColumnWarps)));
  auto run = [&](auto kernel) {
    launch(kernel, grid, 32 * kColumnWarps, 0, stream, a.q->data, a.k->data, a.v->data, a.g->data,
           a.beta->data, a.state->data, a.out->data, T, a.key_heads, a.value_heads, a.value_dim);
  };
  if (a.key_dim == 128)
    run(gdn_columns_kernel<128>);
  else
    run(gdn_columns_kernel<64>);
  check_launch("gdn_columns");
  return true;
}

}  // namespace
}  // namespace cuda

void CudaBackend::gdn_prepare(const GdnPrepareArgs& a) {
  const int64_t T = a.qkv->rows, C = a.qkv->cols, key_dim = a.q->cols, value_dim = a.v->cols;
  const int64_t K = a.conv_weight->cols;
  const int Dk = a.key_head_dim, Hv = static_cast<int>(a.g->cols);
  // Few rows only: a block walks its rows one by one, which would serialise a long prefill.
  const bool fused = T >= 1 && T <= 8 && Dk % 32 == 0 && Dk <= 1024 && key_dim % Dk == 0 &&
                     value_dim % Dk == 0 && C == 2 * key_dim + value_dim && K >= 2 && K <= 5;
  if (!fused) {
    Backend::gdn_prepare(a);
    return;
  }
  if (!(a.conv_weight->rows == C && a.conv_state->rows == K - 1 && a.conv_state->cols == C &&
        a.q->rows == T && a.k->rows == T && a.k->cols == key_dim && a.v->rows == T && a.a->rows == T &&
        a.a->cols == Hv && a.b->numel() == a.a->numel() && a.g->numel() == a.a->numel() &&
        a.beta->numel() == a.a->numel() && a.a_log->numel() == Hv && a.dt_bias->numel() == Hv &&
        (a.conv_rows == nullptr || (a.conv_rows->rows <= T && a.conv_rows->cols == (K - 1) * C))))
    fail("internal error: cuda backend: gdn_prepare shapes");
  const auto blocks = static_cast<unsigned>(C / Dk + 1);
  auto run = [&](auto kernel) {
    cuda::launch(kernel, blocks, Dk, 0, ctx_->queue(), a.qkv->data, a.conv_weight->data, a.conv_state->data,
                 a.conv_rows != nullptr ? a.conv_rows->data : nullptr,
                 a.conv_rows != nullptr ? a.conv_rows->rows : int64_t{0}, a.a->data, a.b->data, a.a_log->data,
                 a.dt_bias->data, a.q->data, a.k->data, a.v->data, a.g->data, a.beta->data, T, C, key_dim,
                 value_dim, Hv, 1.0f / std::sqrt(static_cast<float>(Dk)));
  };
  switch (K) {
    case 2:
      run(cuda::gdn_prepare_kernel<2>);
      break;
    case 3:
      run(cuda::gdn_prepare_kernel<3>);
      break;
    case 4:
      run(cuda::gdn_prepare_kernel<4>);
      break;
    default:
      run(cuda::gdn_prepare_kernel<5>);
      break;
  }
  cuda::check_launch("gdn_prepare");
}

void CudaBackend::gdn_recurrent(const GdnArgs& args) {
  cuda::run_recurrent(args, ctx_->queue());
}

void CudaBackend::gdn_chunked(const GdnArgs& args) {
  cuda::check_args(args);
  if (ctx_->gdn_chunks && args.q->rows >= ctx_->gdn_chunks_from && cuda::gdn_chunks(args, ctx_->queue()))
    return;
  if (!ctx_->gdn_columns || !cuda::run_columns(args, ctx_->queue())) cuda::run_recurrent(args, ctx_->queue());
}

void CudaBackend::set_gdn_chunks(bool on, int64_t from_rows) {
  ctx_->gdn_chunks = on;
  ctx_->gdn_chunks_from = from_rows;
}

void CudaBackend::set_gdn_columns(bool on) {
  ctx_->gdn_columns = on;
}

}  // namespace mtplx

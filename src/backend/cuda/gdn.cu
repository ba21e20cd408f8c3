// Gated delta rule on the GPU, token by token, per value head hv (key head hv / (Hv / Hk)):
//   S_t = exp(g_t) S_{t-1};  S_t += k_t (beta_t (v_t - S_t^T k_t))^T;  o_t = S_t^T q_t
// with S [Dk, Dv] in fp32. A block owns 32 value columns of one head and keeps that slice of S in
// registers for all T rows: lane = column, each of the 4 warps holds a quarter of the Dk rows. The two
// column sums per token (S^T k and S^T q) are reduced over the warps through shared memory.
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/device_util.cuh"

namespace mtplx {
namespace cuda {
namespace {

constexpr int kGdnWarps = 4;

template <int R>  // rows of S per thread: Dk <= 4 * R
__global__ void __launch_bounds__(kGdnWarps * 32)
    gdn_recurrent_kernel(const float* q, const float* k, const float* v, const float* g, const float* beta,
                         float* state, float* out, float* row_states, int64_t T, int Hk, int Hv, int Dk,
                         int Dv) {
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
    if (row_states != nullptr && column) {
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

void check_args(const GdnArgs& a) {
  const int64_t T = a.q->rows;
  const bool ok =
      a.key_heads > 0 && a.value_heads % a.key_heads == 0 && a.q->cols == int64_t{a.key_heads} * a.key_dim &&
      a.k->cols == a.q->cols && a.k->rows == T && a.v->rows == T &&
      a.v->cols == int64_t{a.value_heads} * a.value_dim && a.g->rows == T && a.g->cols == a.value_heads &&
      a.beta->rows == T && a.state->numel() == int64_t{a.value_heads} * a.key_dim * a.value_dim &&
      a.out->rows == T && a.out->cols == a.v->cols &&
      (a.row_states == nullptr || (a.row_states->rows == T && a.row_states->cols == a.state->numel()));
  if (!ok) fail("internal error: cuda backend: gdn argument shapes");
}

void run_recurrent(const GdnArgs& a, cudaStream_t stream) {
  check_args(a);
  const int64_t T = a.q->rows;
  if (T == 0) return;
  const dim3 grid(static_cast<unsigned>(a.value_heads), static_cast<unsigned>((a.value_dim + 31) / 32));
  const size_t shared = 2 * sizeof(float) * static_cast<size_t>(a.key_dim);
  auto launch = [&](auto kernel) {
    kernel<<<grid, kGdnWarps * 32, shared, stream>>>(
        a.q->data, a.k->data, a.v->data, a.g->data, a.beta->data, a.state->data, a.out->data,
        a.row_states ? a.row_states->data : nullptr, T, a.key_heads, a.value_heads, a.key_dim, a.value_dim);
  };
  const int rows = (a.key_dim + kGdnWarps - 1) / kGdnWarps;
  if (rows <= 4)
    launch(gdn_recurrent_kernel<4>);
  else if (rows <= 8)
    launch(gdn_recurrent_kernel<8>);
  else if (rows <= 16)
    launch(gdn_recurrent_kernel<16>);
  else if (rows <= 32)
    launch(gdn_recurrent_kernel<32>);
  else if (rows <= 64)
    launch(gdn_recurrent_kernel<64>);
  else
    fail(str("GDN key head dim ", a.key_dim, " is not supported by the CUDA backend (at most 256)"),
         "cuda backend", "use --device cpu for this model");
  check_launch("gdn_recurrent");
}

}  // namespace
}  // namespace cuda

void CudaBackend::gdn_recurrent(const GdnArgs& args) {
  cuda::run_recurrent(args, ctx_->stream);
}

void CudaBackend::gdn_chunked(const GdnArgs& args) {
  cuda::run_recurrent(args, ctx_->stream);
}

}  // namespace mtplx

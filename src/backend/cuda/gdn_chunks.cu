// Gated DeltaNet prefill in chunks of 64 tokens (the CPU backend's gdn_chunked, cpu/gdn.cpp, has the same
// WY form): per value head, with G the cumulative log-decay within a chunk,
//   A[i,j] = beta_i (k_i . k_j) exp(G_i - G_j) (j < i),  (I + A) U = beta V,  (I + A) W = beta exp(G) K,
//   V' = U - W S,  O = (exp(G) Q) S + tril[(Q K^T) exp(G_i - G_j)] V',
//   S <- exp(G_last) S + (exp(G_last - G) K)^T V'.
// Only V' and the new S depend on the previous chunk, so three kernels share the work:
//   - chunk_prepare_kernel, a block per (chunk, head), every chunk at once: A, the triangular solves for U
//     and W (a thread per column runs the substitution down its column, no barrier), the decayed
//     query-key products, G.
//   - chunk_state_kernel, a block per 32 value columns of a head, walking the chunks in order with its
//     slice of S in registers (4 lanes a column, each a quarter of the Dk rows): V' is 16 row sums at a
//     time and the new S one update per register over the chunk's rows, with no sum over the rows of S per
//     token (the token-by-token recurrence needs two, each a chain of dependent FMAs and shuffles); the next
//     chunk's W, K and U stream in by cp.async meanwhile. It leaves V' and S as each chunk found it.
//   - chunk_output_kernel, a block per (chunk, head), every chunk at once: O from those.
// All in fp32 on the CUDA cores, as the CPU reference. Long prompts go through in windows of 2,048 tokens,
// which bounds the scratch memory (~190 MB for Qwen3.5-4B's 32 heads of 128 x 128).
#include <algorithm>
#include <cmath>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/gdn_chunks.h"
#include "backend/cuda/mma_util.cuh"

namespace mtplx::cuda {
namespace {

constexpr int kChunk = 64;
constexpr int kPrepareThreads = 256;  // one per column of [U | W]: Dv + Dk <= 256
constexpr int kParts = 4;             // lanes per value column in chunk_state_kernel
constexpr int kColumnsPerWarp = 32 / kParts;
constexpr int kStateWarps = 4;
constexpr int kBlockColumns = kColumnsPerWarp * kStateWarps;
constexpr int kSolveRows = 16;  // rows per block of chunk_prepare_kernel's triangular solve
constexpr int kRowGroup = 16;   // chunk rows whose column sums are in flight together

// Scratch per (head, chunk), floats: U [kChunk][Dv], W [kChunk][Dk], QK [kChunk][kChunk] (the decayed
// query-key products, zero above the diagonal), G [kChunk] (past the chunk's end: its last value).
struct ChunkScratch {
  int64_t u, w, qk, g, total;
  __host__ __device__ ChunkScratch(int Dk, int Dv)
      : u(0),
        w(int64_t{kChunk} * Dv),
        qk(w + int64_t{kChunk} * Dk),
        g(qk + kChunk * kChunk),
        total(g + kChunk) {}
};

template <int DK>
constexpr size_t prepare_shared_bytes(int Dv) {
  return sizeof(float) * (2 * kChunk * (DK + 4) + kChunk * (kChunk + 1) + 2 * kChunk + kChunk * (Dv + DK));
}

// Rows [0, L) of a chunk into shared memory by cp.async (`pitch` floats apart, `cols` a multiple of 4),
// zeros after them; the caller waits.
__device__ __forceinline__ void stage_rows(float* shared, int pitch, const float* global, int64_t stride,
                                           int cols, int L) {
  for (int e = threadIdx.x; e < kChunk * cols / 4; e += blockDim.x) {
    const int i = e / (cols / 4), c = e % (cols / 4) * 4;
    if (i < L)
      copy_async16(shared + i * pitch + c, global + i * stride + c);
    else
      *reinterpret_cast<float4*>(shared + i * pitch + c) = make_float4(0, 0, 0, 0);
  }
}

template <int DK>
__global__ void __launch_bounds__(kPrepareThreads)
    chunk_prepare_kernel(const float* __restrict__ q, const float* __restrict__ k,
                         const float* __restrict__ v, const float* __restrict__ g,
                         const float* __restrict__ beta, float* __restrict__ scratch, int64_t T, int Hk,
                         int Hv, int Dv) {
  constexpr int kPitch = DK + 4;  // adjacent rows start 4 banks apart: 8 lanes' float4 rows, no conflict
  extern __shared__ __align__(16) float shared[];
  float* sq = shared;                      // [kChunk][kPitch]
  float* sk = sq + kChunk * kPitch;        // [kChunk][kPitch]
  float* sa = sk + kChunk * kPitch;        // [kChunk][kChunk + 1]: A, strictly lower
  float* sg = sa + kChunk * (kChunk + 1);  // [kChunk]: g, then G
  float* sbeta = sg + kChunk;              // [kChunk]
  float* sx = sbeta + kChunk;              // [kChunk][Dv + DK]: right-hand sides, then U | W
  begin_dependent();
  const int chunk = blockIdx.x, hv = blockIdx.y, kh = hv / (Hv / Hk);
  const int64_t t0 = int64_t{chunk} * kChunk;
  const int L = static_cast<int>(std::min<int64_t>(kChunk, T - t0));
  const int64_t qk_cols = int64_t{Hk} * DK, v_cols = int64_t{Hv} * Dv;
  const int width = Dv + DK;
  stage_rows(sq, kPitch, q + t0 * qk_cols + int64_t{kh} * DK, qk_cols, DK, L);
  stage_rows(sk, kPitch, k + t0 * qk_cols + int64_t{kh} * DK, qk_cols, DK, L);
  stage_rows(sx, width, v + t0 * v_cols + int64_t{hv} * Dv, v_cols, Dv, L);
  commit_async();
  if (threadIdx.x < kChunk) {
    const bool row = threadIdx.x < L;
    sbeta[threadIdx.x] = row ? beta[(t0 + threadIdx.x) * Hv + hv] : 0.0f;
    sg[threadIdx.x] = row ? g[(t0 + threadIdx.x) * Hv + hv] : 0.0f;
  }
  wait_async<0>();
  __syncthreads();
  if (threadIdx.x == 0) {  // in order, as the CPU sums them
    float cumulative = 0;
    for (int i = 0; i < kChunk; ++i) sg[i] = cumulative += sg[i];
  }
  __syncthreads();
  const ChunkScratch layout(DK, Dv);
  float* out = scratch + (int64_t{hv} * gridDim.x + chunk) * layout.total;
  // A (strictly lower) and the decayed query-key products (lower, diagonal included): a thread per 4 x 4
  // pairs (i, j) = (ti + 16 a, tj + 16 b).
  {
    const int ti = threadIdx.x / 16, tj = threadIdx.x % 16;
    float kk[4][4] = {}, qk[4][4] = {};
#pragma unroll 2
    for (int d = 0; d < DK; d += 4) {
      float4 ki[4], qi[4], kj[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        ki[r] = *reinterpret_cast<const float4*>(sk + (ti + 16 * r) * kPitch + d);
        qi[r] = *reinterpret_cast<const float4*>(sq + (ti + 16 * r) * kPitch + d);
        kj[r] = *reinterpret_cast<const float4*>(sk + (tj + 16 * r) * kPitch + d);
      }
#pragma unroll
      for (int a = 0; a < 4; ++a) {
#pragma unroll
        for (int b = 0; b < 4; ++b) {
          kk[a][b] = fmaf(ki[a].x, kj[b].x, kk[a][b]);
          kk[a][b] = fmaf(ki[a].y, kj[b].y, kk[a][b]);
          kk[a][b] = fmaf(ki[a].z, kj[b].z, kk[a][b]);
          kk[a][b] = fmaf(ki[a].w, kj[b].w, kk[a][b]);
          qk[a][b] = fmaf(qi[a].x, kj[b].x, qk[a][b]);
          qk[a][b] = fmaf(qi[a].y, kj[b].y, qk[a][b]);
          qk[a][b] = fmaf(qi[a].z, kj[b].z, qk[a][b]);
          qk[a][b] = fmaf(qi[a].w, kj[b].w, qk[a][b]);
        }
      }
    }
#pragma unroll
    for (int a = 0; a < 4; ++a) {
#pragma unroll
      for (int b = 0; b < 4; ++b) {
        const int i = ti + 16 * a, j = tj + 16 * b;
        const float decay = j <= i ? expf(sg[i] - sg[j]) : 0.0f;
        sa[i * (kChunk + 1) + j] = j < i ? sbeta[i] * kk[a][b] * decay : 0.0f;
        out[layout.qk + i * kChunk + j] = qk[a][b] * decay;
      }
    }
  }
  // Right-hand sides: beta v (columns of U, in place), beta exp(G) k (columns of W).
  for (int e = threadIdx.x; e < kChunk * width; e += kPrepareThreads) {
    const int i = e / width, c = e % width;
    sx[e] = c < Dv ? sbeta[i] * sx[e] : sbeta[i] * expf(sg[i]) * sk[i * kPitch + c - Dv];
  }
  __syncthreads();
  // (I + A) X = B down each column, a thread per column, in blocks of 16 rows: the rows above a block come
  // off it as 16 independent sums, then the block's own triangle runs in registers. (Row by row, each step
  // would wait on one chain of loads and FMAs.)
  const int col = threadIdx.x;
  if (col < width) {
    const bool is_u = col < Dv;
#pragma unroll 1
    for (int i0 = 0; i0 < kChunk; i0 += kSolveRows) {
      float x[kSolveRows];
#pragma unroll
      for (int r = 0; r < kSolveRows; ++r) x[r] = sx[(i0 + r) * width + col];
      for (int j = 0; j < i0; ++j) {
        const float xj = sx[j * width + col];
#pragma unroll
        for (int r = 0; r < kSolveRows; ++r) x[r] = fmaf(-sa[(i0 + r) * (kChunk + 1) + j], xj, x[r]);
      }
#pragma unroll
      for (int r = 1; r < kSolveRows; ++r)
#pragma unroll
        for (int m = 0; m < r; ++m) x[r] = fmaf(-sa[(i0 + r) * (kChunk + 1) + i0 + m], x[m], x[r]);
#pragma unroll
      for (int r = 0; r < kSolveRows; ++r) {
        const int i = i0 + r;
        sx[i * width + col] = x[r];
        out[is_u ? layout.u + int64_t{i} * Dv + col : layout.w + int64_t{i} * DK + col - Dv] = x[r];
      }
    }
  }
  if (threadIdx.x < kChunk) out[layout.g + threadIdx.x] = sg[threadIdx.x];
}

// Per stage of chunk_state_kernel, floats: W [kChunk][DK], K [kChunk][DK], U then V' [kChunk][kBlockColumns],
// G [kChunk].
template <int DK>
constexpr int state_stage_floats() {
  return 2 * kChunk * DK + kChunk * kBlockColumns + kChunk;
}
template <int DK>
constexpr size_t state_shared_bytes() {  // two stages
  return sizeof(float) * 2 * state_stage_floats<DK>();
}

// Column sums over the 4 parts of a column (lanes 8 apart).
__device__ __forceinline__ float part_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, kColumnsPerWarp);
  return x + __shfl_xor_sync(0xffffffffu, x, 2 * kColumnsPerWarp);
}

template <int DK>
__global__ void __launch_bounds__(kStateWarps * 32)
    chunk_state_kernel(const float* __restrict__ k, const float* __restrict__ prep, float* __restrict__ state,
                       float* __restrict__ starts, float* __restrict__ vprime, int64_t T, int chunks, int Hk,
                       int Hv, int Dv) {
  constexpr int kRows = DK / kParts;  // rows of S per lane
  constexpr int kStage = state_stage_floats<DK>();
  extern __shared__ __align__(16) float shared[];
  begin_dependent();
  const int hv = blockIdx.x, kh = hv / (Hv / Hk), lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int part = lane / kColumnsPerWarp, d0 = part * kRows;
  const int local = warp * kColumnsPerWarp + lane % kColumnsPerWarp;  // column within the block
  const int j0 = blockIdx.y * kBlockColumns, j = j0 + local;
  const int64_t head_state = int64_t{hv} * DK * Dv;
  const int64_t qk_cols = int64_t{Hk} * DK, v_cols = int64_t{Hv} * Dv;
  const ChunkScratch layout(DK, Dv);
  const auto load_chunk = [&](int chunk) {
    float* stage = shared + (chunk % 2) * kStage;
    const float* in = prep + (int64_t{hv} * chunks + chunk) * layout.total;
    const int64_t t0 = int64_t{chunk} * kChunk;
    for (int e = threadIdx.x; e < kChunk * DK / 4; e += kStateWarps * 32) {
      const int i = e / (DK / 4), d = e % (DK / 4) * 4;
      copy_async16(stage + i * DK + d, in + layout.w + i * DK + d);
      // Rows past T: any finite values (row T - 1 again), as V' is zero there.
      const int64_t t = std::min<int64_t>(t0 + i, T - 1);
      copy_async16(stage + kChunk * DK + i * DK + d, k + t * qk_cols + int64_t{kh} * DK + d);
    }
    for (int e = threadIdx.x; e < kChunk * kBlockColumns / 4; e += kStateWarps * 32) {
      const int i = e / (kBlockColumns / 4), c = e % (kBlockColumns / 4) * 4;
      copy_async16(stage + 2 * kChunk * DK + i * kBlockColumns + c, in + layout.u + int64_t{i} * Dv + j0 + c);
    }
    if (threadIdx.x < kChunk / 4)
      copy_async16(stage + 2 * kChunk * DK + kChunk * kBlockColumns + 4 * threadIdx.x,
                   in + layout.g + 4 * threadIdx.x);
    commit_async();
  };
  float S[kRows];
#pragma unroll
  for (int d = 0; d < kRows; ++d) S[d] = state[head_state + int64_t{d0 + d} * Dv + j];
  load_chunk(0);
  for (int chunk = 0; chunk < chunks; ++chunk) {
    if (chunk + 1 < chunks)
      load_chunk(chunk + 1);
    else
      commit_async();  // an empty group: the wait below then always means this chunk
    const int64_t t0 = int64_t{chunk} * kChunk;
    const int L = static_cast<int>(std::min<int64_t>(kChunk, T - t0));
    // S as this chunk finds it, for chunk_output_kernel.
    float* start = starts + (int64_t{hv} * chunks + chunk) * DK * Dv;
#pragma unroll
    for (int d = 0; d < kRows; ++d) start[int64_t{d0 + d} * Dv + j] = S[d];
    wait_async<1>();
    __syncthreads();
    float* sw = shared + (chunk % 2) * kStage;
    const float* sk = sw + kChunk * DK;
    float* su = sw + 2 * kChunk * DK;
    const float* sg = su + kChunk * kBlockColumns;
    // V' = U - W S, a group of rows at a time; the part that owns row i % 4 writes it.
    for (int i0 = 0; i0 < kChunk; i0 += kRowGroup) {
      float acc[kRowGroup] = {};
#pragma unroll
      for (int d = 0; d < kRows; d += 4) {
#pragma unroll
        for (int r = 0; r < kRowGroup; ++r) {
          const float4 w = *reinterpret_cast<const float4*>(sw + (i0 + r) * DK + d0 + d);
          acc[r] = fmaf(w.x, S[d], acc[r]);
          acc[r] = fmaf(w.y, S[d + 1], acc[r]);
          acc[r] = fmaf(w.z, S[d + 2], acc[r]);
          acc[r] = fmaf(w.w, S[d + 3], acc[r]);
        }
      }
#pragma unroll
      for (int r = 0; r < kRowGroup; ++r) {
        const float sum = part_sum(acc[r]);
        const int i = i0 + r;
        if (r % kParts != part) continue;
        const float x = su[i * kBlockColumns + local] - sum;
        su[i * kBlockColumns + local] = x;
        if (i < L) vprime[(t0 + i) * v_cols + int64_t{hv} * Dv + j] = x;
      }
    }
    __syncwarp();  // V' of the warp's columns is complete (only the warp reads them)
    // S <- exp(G_last) S + K^T (exp(G_last - G) V').
    const float g_last = sg[L - 1], decay = expf(g_last);
#pragma unroll
    for (int d = 0; d < kRows; ++d) S[d] *= decay;
    for (int i = 0; i < L; ++i) {
      const float vi = expf(g_last - sg[i]) * su[i * kBlockColumns + local];
#pragma unroll
      for (int d = 0; d < kRows; d += 4) {
        const float4 x = *reinterpret_cast<const float4*>(sk + i * DK + d0 + d);
        S[d] = fmaf(x.x, vi, S[d]);
        S[d + 1] = fmaf(x.y, vi, S[d + 1]);
        S[d + 2] = fmaf(x.z, vi, S[d + 2]);
        S[d + 3] = fmaf(x.w, vi, S[d + 3]);
      }
    }
    __syncthreads();  // this stage is used up before the next iteration refills it
  }
#pragma unroll
  for (int d = 0; d < kRows; ++d) state[head_state + int64_t{d0 + d} * Dv + j] = S[d];
}

constexpr int kOutputThreads = 256;
constexpr int kOutputColumns = 128;                                    // Dv <= 128
constexpr int kOutputRows = kChunk * kOutputColumns / kOutputThreads;  // rows per thread

template <int DK>
constexpr size_t output_shared_bytes(int Dv) {
  return sizeof(float) * (kChunk * DK + DK * Dv + kChunk * kChunk + kChunk * Dv);
}

// O = exp(G) (Q S) + tril(QK) V' for one chunk of one head: a thread per (column, every other row).
template <int DK>
__global__ void __launch_bounds__(kOutputThreads)
    chunk_output_kernel(const float* __restrict__ q, const float* __restrict__ prep,
                        const float* __restrict__ starts, const float* __restrict__ vprime,
                        float* __restrict__ out, int64_t T, int Hk, int Hv, int Dv) {
  extern __shared__ __align__(16) float shared[];
  float* sq = shared;                 // [kChunk][DK]: Q
  float* ss = sq + kChunk * DK;       // [DK][Dv]: S as the chunk found it
  float* sqk = ss + DK * Dv;          // [kChunk][kChunk]
  float* sv = sqk + kChunk * kChunk;  // [kChunk][Dv]: V'
  begin_dependent();
  const int chunk = blockIdx.x, chunks = gridDim.x, hv = blockIdx.y, kh = hv / (Hv / Hk);
  const int64_t t0 = int64_t{chunk} * kChunk;
  const int L = static_cast<int>(std::min<int64_t>(kChunk, T - t0));
  const int64_t qk_cols = int64_t{Hk} * DK, v_cols = int64_t{Hv} * Dv;
  const ChunkScratch layout(DK, Dv);
  const float* in = prep + (int64_t{hv} * chunks + chunk) * layout.total;
  const float* start = starts + (int64_t{hv} * chunks + chunk) * DK * Dv;
  stage_rows(sq, DK, q + t0 * qk_cols + int64_t{kh} * DK, qk_cols, DK, L);
  stage_rows(sv, Dv, vprime + t0 * v_cols + int64_t{hv} * Dv, v_cols, Dv, L);
  for (int e = threadIdx.x; e < DK * Dv / 4; e += kOutputThreads) copy_async16(ss + 4 * e, start + 4 * e);
  for (int e = threadIdx.x; e < kChunk * kChunk / 4; e += kOutputThreads)
    copy_async16(sqk + 4 * e, in + layout.qk + 4 * e);
  commit_async();
  wait_async<0>();
  __syncthreads();
  const int j = threadIdx.x % kOutputColumns, first = threadIdx.x / kOutputColumns;
  constexpr int kStride = kOutputThreads / kOutputColumns;  // rows first, first + kStride, ...
  if (j >= Dv) return;
  float acc[kOutputRows] = {};
  for (int d = 0; d < DK; d += 4) {
    const float s0 = ss[d * Dv + j], s1 = ss[(d + 1) * Dv + j], s2 = ss[(d + 2) * Dv + j],
                s3 = ss[(d + 3) * Dv + j];
#pragma unroll
    for (int r = 0; r < kOutputRows; ++r) {
      const float4 x = *reinterpret_cast<const float4*>(sq + (first + kStride * r) * DK + d);
      acc[r] = fmaf(x.x, s0, acc[r]);
      acc[r] = fmaf(x.y, s1, acc[r]);
      acc[r] = fmaf(x.z, s2, acc[r]);
      acc[r] = fmaf(x.w, s3, acc[r]);
    }
  }
#pragma unroll
  for (int r = 0; r < kOutputRows; ++r) {
    const int i = first + kStride * r;
    if (i >= L) continue;
    float o = expf(in[layout.g + i]) * acc[r];
    for (int m = 0; m <= i; ++m) o = fmaf(sqk[i * kChunk + m], sv[m * Dv + j], o);
    out[(t0 + i) * v_cols + int64_t{hv} * Dv + j] = o;
  }
}

constexpr int64_t kWindow = 2048;  // tokens per pass of the three kernels

template <int DK>
void run(const GdnArgs& a, Queue queue) {
  const int64_t T = a.q->rows, Dv = a.value_dim, Hv = a.value_heads;
  const int64_t window_chunks = (std::min(T, kWindow) + kChunk - 1) / kChunk;
  const ChunkScratch layout(DK, a.value_dim);
  const auto prep_floats = static_cast<size_t>(layout.total * window_chunks * Hv);
  const auto start_floats = static_cast<size_t>(window_chunks * Hv * DK * Dv);
  const auto vprime_floats = static_cast<size_t>(window_chunks * kChunk * Hv * Dv);
  const auto scratch = queue.context->scratch(sizeof(float) * (prep_floats + start_floats + vprime_floats));
  float* prep = static_cast<float*>(scratch.get());
  float* starts = prep + prep_floats;
  float* vprime = starts + start_floats;
  const size_t prepare_bytes = prepare_shared_bytes<DK>(a.value_dim);  // at most the limits set below
  constexpr size_t kStateBytes = state_shared_bytes<DK>();
  const size_t output_bytes = output_shared_bytes<DK>(a.value_dim);
  check(cudaFuncSetAttribute(chunk_prepare_kernel<DK>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(prepare_shared_bytes<DK>(kOutputColumns))),
        "cudaFuncSetAttribute", "gdn chunk_prepare");
  check(cudaFuncSetAttribute(chunk_state_kernel<DK>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(kStateBytes)),
        "cudaFuncSetAttribute", "gdn chunk_state");
  check(cudaFuncSetAttribute(chunk_output_kernel<DK>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(output_shared_bytes<DK>(kOutputColumns))),
        "cudaFuncSetAttribute", "gdn chunk_output");
  const int64_t qk_cols = a.q->cols, v_cols = a.v->cols;
  for (int64_t w0 = 0; w0 < T; w0 += kWindow) {
    const int64_t rows = std::min(kWindow, T - w0);
    const auto chunks = static_cast<unsigned>((rows + kChunk - 1) / kChunk);
    const float* q = a.q->data + w0 * qk_cols;
    const float* k = a.k->data + w0 * qk_cols;
    launch(chunk_prepare_kernel<DK>, dim3(chunks, static_cast<unsigned>(Hv)), kPrepareThreads, prepare_bytes,
           queue, q, k, a.v->data + w0 * v_cols, a.g->data + w0 * Hv, a.beta->data + w0 * Hv, prep, rows,
           a.key_heads, a.value_heads, a.value_dim);
    check_launch("gdn chunk_prepare");
    launch(chunk_state_kernel<DK>, dim3(static_cast<unsigned>(Hv), static_cast<unsigned>(Dv / kBlockColumns)),
           kStateWarps * 32, kStateBytes, queue, k, static_cast<const float*>(prep), a.state->data, starts,
           vprime, rows, static_cast<int>(chunks), a.key_heads, a.value_heads, a.value_dim);
    check_launch("gdn chunk_state");
    launch(chunk_output_kernel<DK>, dim3(chunks, static_cast<unsigned>(Hv)), kOutputThreads, output_bytes,
           queue, q, static_cast<const float*>(prep), static_cast<const float*>(starts),
           static_cast<const float*>(vprime), a.out->data + w0 * v_cols, rows, a.key_heads, a.value_heads,
           a.value_dim);
    check_launch("gdn chunk_output");
  }
}

// The most dynamic shared memory the three kernels take for Dk = DK (at Dv = 128).
template <int DK>
constexpr size_t most_shared_bytes() {
  return std::max({prepare_shared_bytes<DK>(kOutputColumns), state_shared_bytes<DK>(),
                   output_shared_bytes<DK>(kOutputColumns)});
}

}  // namespace

bool gdn_chunks(const GdnArgs& a, Queue queue) {
  const size_t shared = a.key_dim == 128 ? most_shared_bytes<128>() : most_shared_bytes<64>();
  if (a.row_states != nullptr || (a.key_dim != 64 && a.key_dim != 128) || a.value_dim > kOutputColumns ||
      a.value_dim % kBlockColumns != 0 || a.q->rows < kChunk ||
      shared > static_cast<size_t>(queue.context->shared_per_block))
    return false;
  if (a.key_dim == 128)
    run<128>(a, queue);
  else
    run<64>(a, queue);
  return true;
}

}  // namespace mtplx::cuda

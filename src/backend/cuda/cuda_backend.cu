// CudaBackend: memory ops and the element-wise, normalisation, RoPE, embedding and GDN-side small ops.
// matmul, attention and the GDN recurrence live in matmul.cu, attention.cu and gdn.cu.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/device_util.cuh"

namespace mtplx {
namespace cuda {
namespace {

void expect(bool ok, const char* what) {
  if (!ok) fail(str("internal error: cuda backend: ", what));
}

__global__ void fill_kernel(float* dst, int64_t n, float value) {
  begin_dependent();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    dst[i] = value;
}

__global__ void copy_columns_kernel(const float* src, int64_t src_cols, int64_t src_col, int64_t src_stride,
                                    float* dst, int64_t dst_cols, int64_t dst_col, int64_t dst_stride,
                                    int64_t width, int64_t count, int64_t rows) {
  begin_dependent();
  const int64_t per_row = width * count;
  const int64_t n = rows * per_row;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / per_row, rest = i % per_row, block = rest / width, j = rest % width;
    dst[r * dst_cols + dst_col + block * dst_stride + j] =
        src[r * src_cols + src_col + block * src_stride + j];
  }
}

// Up to this many blocks per copy_blocks launch, passed by value (a kernel parameter, no upload).
constexpr int kMaxBlockCopies = 64;
struct BlockCopies {
  BlockCopy at[kMaxBlockCopies];
};

// blockIdx.y picks the block to copy; the x blocks stride over it, float4 by float4 when `vectors` (every
// address 16-byte aligned and every count a multiple of 4), else float by float.
__global__ void copy_blocks_kernel(BlockCopies blocks, bool vectors) {
  begin_dependent();
  const BlockCopy b = blocks.at[blockIdx.y];
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t first = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (vectors) {
    const auto* src = reinterpret_cast<const float4*>(b.src);
    auto* dst = reinterpret_cast<float4*>(b.dst);
    for (int64_t i = first; i < b.count / 4; i += stride) dst[i] = src[i];
  } else {
    for (int64_t i = first; i < b.count; i += stride) b.dst[i] = b.src[i];
  }
}

// Up to this many token ids travel as a kernel argument (no upload, no host sync).
constexpr int kInlineTokens = 64;
struct InlineTokens {
  int32_t ids[kInlineTokens];
};

__global__ void embed_kernel(WeightView table, InlineTokens inline_ids, const int32_t* ids, float* out) {
  begin_dependent();
  const int64_t t = blockIdx.y;
  const int32_t token = ids != nullptr ? ids[t] : inline_ids.ids[t];
  for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < table.cols;
       c += int64_t{gridDim.x} * blockDim.x)
    out[t * table.cols + c] = table.at(token, c);
}

// One block per group of `group` values: y = x * rsqrt(mean(x^2) + eps) * gain. In place allowed.
__global__ void rms_norm_kernel(const float* x, const float* gain, int64_t group, float eps, float* y) {
  begin_dependent();
  __shared__ float shared[32];
  const float* in = x + blockIdx.x * group;
  float* o = y + blockIdx.x * group;
  float sum = 0;
  for (int64_t i = threadIdx.x; i < group; i += blockDim.x) sum += in[i] * in[i];
  sum = block_sum(sum, shared);
  const float inv = 1.0f / sqrtf(sum / static_cast<float>(group) + eps);
  for (int64_t i = threadIdx.x; i < group; i += blockDim.x) o[i] = in[i] * inv * gain[i];
}

// sum = a + b; normed = sum * rsqrt(mean(sum^2) + eps) * gain, one block per group.
__global__ void add_rms_norm_kernel(const float* a, const float* b, const float* gain, int64_t group,
                                    float eps, float* sum_out, float* normed) {
  begin_dependent();
  __shared__ float shared[32];
  const int64_t base = blockIdx.x * group;
  float sum = 0;
  for (int64_t i = threadIdx.x; i < group; i += blockDim.x) {
    const float v = a[base + i] + b[base + i];
    sum_out[base + i] = v;
    sum += v * v;
  }
  sum = block_sum(sum, shared);
  const float inv = 1.0f / sqrtf(sum / static_cast<float>(group) + eps);
  for (int64_t i = threadIdx.x; i < group; i += blockDim.x)
    normed[base + i] = (a[base + i] + b[base + i]) * inv * gain[i];
}

// The same two norms for rows of n4 float4s, up to kNormVec per thread held in registers: every load of a
// row is issued before the first use (one memory latency instead of one per loop step: the loops above
// cannot overlap their loads, since the outputs may alias the inputs, and they read a and b twice), and
// the gain, a weight, before the wait for the previous kernel. About 11 us -> a few us per call for a
// 2560-wide row (ncu, H100); an AR step of Qwen3.5-4B calls add_rms_norm 64 times.
constexpr int kNormVec = 4;

__device__ __forceinline__ float4 add4(float4 a, float4 b) {
  return {a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w};
}
__device__ __forceinline__ float squares(float4 v) {
  return v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
}
__device__ __forceinline__ float4 scale4(float4 v, float inv, float4 g) {
  return {v.x * inv * g.x, v.y * inv * g.y, v.z * inv * g.z, v.w * inv * g.w};
}

// kAdd: v = a + b, stored to sum_out; else v = a. normed = v * rsqrt(mean(v^2) + eps) * gain.
template <bool kAdd>
__global__ void __launch_bounds__(1024)
    norm_vec_kernel(const float4* a, const float4* b, const float4* gain, int64_t n4, float eps,
                    float4* sum_out, float4* normed) {
  __shared__ float shared[32];
  float4 g[kNormVec], v[kNormVec];
#pragma unroll
  for (int k = 0; k < kNormVec; ++k)
    if (threadIdx.x + k * blockDim.x < n4) g[k] = gain[threadIdx.x + k * blockDim.x];
  begin_dependent();
  const int64_t base = blockIdx.x * n4;
  float sum = 0;
#pragma unroll
  for (int k = 0; k < kNormVec; ++k) {
    const int64_t i = base + threadIdx.x + k * blockDim.x;
    if (threadIdx.x + k * blockDim.x < n4) v[k] = kAdd ? add4(a[i], b[i]) : a[i];
  }
#pragma unroll
  for (int k = 0; k < kNormVec; ++k)
    if (threadIdx.x + k * blockDim.x < n4) {
      if constexpr (kAdd) sum_out[base + threadIdx.x + k * blockDim.x] = v[k];
      sum += squares(v[k]);
    }
  sum = block_sum(sum, shared);
  const float inv = 1.0f / sqrtf(sum / static_cast<float>(4 * n4) + eps);
#pragma unroll
  for (int k = 0; k < kNormVec; ++k)
    if (threadIdx.x + k * blockDim.x < n4)
      normed[base + threadIdx.x + k * blockDim.x] = scale4(v[k], inv, g[k]);
}

// out = (gain * x * rsqrt(mean(x^2) + eps)) * silu(z). In place allowed.
__global__ void gated_rms_norm_kernel(const float* x, const float* z, const float* gain, int64_t group,
                                      float eps, float* out) {
  begin_dependent();
  __shared__ float shared[32];
  const int64_t base = blockIdx.x * group;
  float sum = 0;
  for (int64_t i = threadIdx.x; i < group; i += blockDim.x) sum += x[base + i] * x[base + i];
  sum = block_sum(sum, shared);
  const float inv = 1.0f / sqrtf(sum / static_cast<float>(group) + eps);
  for (int64_t i = threadIdx.x; i < group; i += blockDim.x)
    out[base + i] = gain[i] * (x[base + i] * inv) * silu(z[base + i]);
}

// x = x * scale * rsqrt(sum(x^2) + 1e-6) per group. In place.
__global__ void l2_norm_kernel(float* x, int64_t group, float scale) {
  begin_dependent();
  __shared__ float shared[32];
  float* v = x + blockIdx.x * group;
  float sum = 0;
  for (int64_t i = threadIdx.x; i < group; i += blockDim.x) sum += v[i] * v[i];
  sum = block_sum(sum, shared);
  const float factor = scale / sqrtf(sum + 1e-6f);
  for (int64_t i = threadIdx.x; i < group; i += blockDim.x) v[i] *= factor;
}

__global__ void add_kernel(const float* a, const float* b, float* out, int64_t n) {
  begin_dependent();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    out[i] = a[i] + b[i];
}

__global__ void silu_mul_kernel(const float* gate, const float* up, float* out, int64_t n) {
  begin_dependent();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    out[i] = silu(gate[i]) * up[i];
}

__global__ void sigmoid_mul_kernel(float* x, const float* gate, int64_t n) {
  begin_dependent();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    x[i] *= sigmoid(gate[i]);
}

// NeoX rotation; angles in double as the CPU reference computes them.
__global__ void rope_kernel(float* x, int64_t rows, int64_t cols, int heads, int head_dim, int rot_dim,
                            double theta, Position position) {
  begin_dependent();
  const int64_t pos0 = position.get();
  const int half = rot_dim / 2;
  const int64_t n = rows * heads * half;
  for (int64_t item = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; item < n;
       item += int64_t{gridDim.x} * blockDim.x) {
    const int i = static_cast<int>(item % half);
    const int h = static_cast<int>((item / half) % heads);
    const int64_t t = item / (int64_t{half} * heads);
    const double inv_freq = pow(theta, -2.0 * i / rot_dim);
    const double angle = static_cast<double>(pos0 + t) * inv_freq;
    const float c = static_cast<float>(cos(angle)), s = static_cast<float>(sin(angle));
    float* v = x + t * cols + int64_t{h} * head_dim;
    const float a = v[i], b = v[i + half];
    v[i] = a * c - b * s;
    v[i + half] = b * c + a * s;
  }
}

// out[t, c] = silu(sum_j w[c, j] * input(t + j, c)) over the extended input [state ; x], and the state
// after each row into row_states.
__global__ void conv1d_kernel(const float* x, const float* weight, const float* state, float* out,
                              float* row_states, int64_t captured, int64_t T, int64_t C, int K) {
  begin_dependent();
  const int64_t n = T * C;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = i / C, c = i % C;
    auto input = [&](int64_t r) { return r < K - 1 ? state[r * C + c] : x[(r - (K - 1)) * C + c]; };
    float sum = 0;
    for (int j = 0; j < K; ++j) sum += weight[c * K + j] * input(t + j);
    out[i] = silu(sum);
    if (t < captured)
      for (int j = 0; j < K - 1; ++j) row_states[(t * (K - 1) + j) * C + c] = input(t + 1 + j);
  }
}

// state row j <- input(T + j): one thread per channel walks j upwards, so a row is read (as row T + j')
// before it is overwritten.
__global__ void conv_state_kernel(const float* x, float* state, int64_t T, int64_t C, int K) {
  begin_dependent();
  const int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (c >= C) return;
  for (int j = 0; j < K - 1; ++j) {
    const int64_t r = T + j;
    state[j * C + c] = r < K - 1 ? state[r * C + c] : x[(r - (K - 1)) * C + c];
  }
}

__global__ void gdn_gates_kernel(const float* a, const float* b, const float* a_log, const float* dt_bias,
                                 float* g, float* beta, int64_t n, int64_t H) {
  begin_dependent();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t h = i % H;
    const float v = a[i] + dt_bias[h];
    const float softplus = v > 20.0f ? v : log1pf(expf(v));
    g[i] = -expf(a_log[h]) * softplus;
    beta[i] = sigmoid(b[i]);
  }
}

int grid_for(int64_t n, int threads) {
  return static_cast<int>(std::clamp<int64_t>((n + threads - 1) / threads, 1, 65535));
}

int norm_threads(int64_t group) {
  return group >= 512 ? 256 : group >= 128 ? 128 : 32;
}

// Threads for the float4 norm kernels when they take rows of `group` floats at these addresses, else 0.
int norm_vec_threads(int64_t group, std::initializer_list<const void*> pointers) {
  for (const void* p : pointers)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return 0;
  const int64_t n4 = group / 4, threads = (n4 + kNormVec - 1) / kNormVec;
  if (group % 4 != 0 || threads > 1024) return 0;
  return static_cast<int>(std::max<int64_t>(32, (threads + 31) / 32 * 32));
}

}  // namespace

WeightView weight_view(const WeightMatrix& w) {
  return WeightView{
      w.data, w.scales,     w.biases, w.rows,       w.cols, w.quantized() ? w.words_per_row() : 0,
      w.bits, w.group_size, w.dtype,  w.scale_dtype};
}

}  // namespace cuda

using cuda::check_launch;
using cuda::expect;
using cuda::grid_for;

CudaBackend::CudaBackend(int device) : ctx_(std::make_unique<cuda::Context>(device)) {}
CudaBackend::~CudaBackend() = default;

void CudaBackend::synchronize() {
  MTPLX_CUDA_CHECK(cudaStreamSynchronize(ctx_->stream));
}
size_t CudaBackend::weight_bytes() const {
  return ctx_->weight_bytes;
}
size_t CudaBackend::pool_bytes() const {
  return ctx_->pool->held_bytes();
}
void* CudaBackend::stream() const {
  return ctx_->stream;
}

Tensor CudaBackend::alloc(int64_t rows, int64_t cols) {
  expect(rows >= 0 && cols >= 0, "negative tensor size");
  const size_t count = static_cast<size_t>(std::max<int64_t>(1, rows * cols));
  std::shared_ptr<void> storage = ctx_->scratch(count * sizeof(float));
  return Tensor{storage, static_cast<float*>(storage.get()), rows, cols};
}

Tensor CudaBackend::upload(std::span<const float> host, int64_t rows, int64_t cols) {
  expect(static_cast<int64_t>(host.size()) == rows * cols, "upload size mismatch");
  Tensor t = alloc(rows, cols);
  if (!host.empty()) {
    MTPLX_CUDA_CHECK(
        cudaMemcpyAsync(t.data, host.data(), host.size_bytes(), cudaMemcpyHostToDevice, ctx_->stream));
    MTPLX_CUDA_CHECK(cudaStreamSynchronize(ctx_->stream));  // the host span may go right after we return
  }
  return t;
}

// Large downloads (a logits row every decode step) go through page-locked staging memory in chunks: the
// copy engine writes chunk i + 1 while the host copies chunk i out. Straight into pageable memory the driver
// stages the copy itself, which measured slower (docs/benchmarks.md).
void CudaBackend::download(const Tensor& src, std::span<float> host) {
  expect(static_cast<int64_t>(host.size()) == src.numel(), "download size mismatch");
  if (host.empty()) return;
  const size_t bytes = host.size_bytes();
  constexpr size_t kSmall = size_t{64} << 10;
  if (!ctx_->pinned_downloads || bytes < kSmall) {
    MTPLX_CUDA_CHECK(cudaMemcpyAsync(host.data(), src.data, bytes, cudaMemcpyDeviceToHost, ctx_->stream));
    MTPLX_CUDA_CHECK(cudaStreamSynchronize(ctx_->stream));
    return;
  }
  auto* stage = static_cast<char*>(ctx_->staging_for(bytes));
  const auto* from = reinterpret_cast<const char*>(src.data);
  auto* to = reinterpret_cast<char*>(host.data());
  const size_t parts = ctx_->download_events.size();
  const size_t chunk = std::max(kSmall, (bytes + parts - 1) / parts);
  for (size_t i = 0, off = 0; off < bytes; ++i, off += chunk) {
    MTPLX_CUDA_CHECK(cudaMemcpyAsync(stage + off, from + off, std::min(chunk, bytes - off),
                                     cudaMemcpyDeviceToHost, ctx_->stream));
    MTPLX_CUDA_CHECK(cudaEventRecord(ctx_->download_events[i], ctx_->stream));
  }
  for (size_t i = 0, off = 0; off < bytes; ++i, off += chunk) {
    MTPLX_CUDA_CHECK(cudaEventSynchronize(ctx_->download_events[i]));
    std::memcpy(to + off, stage + off, std::min(chunk, bytes - off));
  }
}

void CudaBackend::set_pinned_downloads(bool on) {
  ctx_->pinned_downloads = on;
}

void CudaBackend::fill(Tensor& dst, float value) {
  if (dst.numel() == 0) return;
  cuda::launch(cuda::fill_kernel, grid_for(dst.numel(), 256), 256, 0, ctx_->queue(), dst.data, dst.numel(),
               value);
  check_launch("fill");
}

void CudaBackend::copy_rows(const Tensor& src, Tensor& dst, int64_t dst_row) {
  expect(src.cols == dst.cols && dst_row >= 0 && dst_row + src.rows <= dst.rows, "copy_rows out of range");
  if (src.numel() == 0 || src.data == dst.data + dst_row * dst.cols) return;
  MTPLX_CUDA_CHECK(cudaMemcpyAsync(dst.data + dst_row * dst.cols, src.data, sizeof(float) * src.numel(),
                                   cudaMemcpyDeviceToDevice, ctx_->stream));
}

void CudaBackend::copy_blocks(std::span<const BlockCopy> blocks) {
  for (size_t done = 0; done < blocks.size(); done += cuda::kMaxBlockCopies) {
    const size_t n = std::min<size_t>(cuda::kMaxBlockCopies, blocks.size() - done);
    cuda::BlockCopies batch{};
    int64_t longest = 0;
    bool vectors = true;
    for (size_t i = 0; i < n; ++i) {
      const BlockCopy& b = blocks[done + i];
      batch.at[i] = b;
      longest = std::max(longest, b.count);
      vectors = vectors && b.count % 4 == 0 && reinterpret_cast<uintptr_t>(b.src) % 16 == 0 &&
                reinterpret_cast<uintptr_t>(b.dst) % 16 == 0;
    }
    if (longest == 0) continue;
    // Enough x blocks for the longest copy at one float4 (or float) per thread, capped: the grid's rows
    // already multiply it.
    const int64_t per_thread = vectors ? 4 : 1;
    const auto x = static_cast<unsigned>(std::min<int64_t>(64, (longest / per_thread + 255) / 256));
    cuda::launch(cuda::copy_blocks_kernel, dim3(std::max(1u, x), static_cast<unsigned>(n)), 256, 0,
                 ctx_->queue(), batch, vectors);
    check_launch("copy_blocks");
  }
}

void CudaBackend::copy_columns(const Tensor& src, int64_t src_col, int64_t src_stride, Tensor& dst,
                               int64_t dst_col, int64_t dst_stride, int64_t width, int64_t count) {
  expect(src.rows == dst.rows, "copy_columns row mismatch");
  expect(src_col + (count - 1) * src_stride + width <= src.cols, "copy_columns source out of range");
  expect(dst_col + (count - 1) * dst_stride + width <= dst.cols, "copy_columns destination out of range");
  const int64_t n = src.rows * width * count;
  if (n == 0) return;
  cuda::launch(cuda::copy_columns_kernel, grid_for(n, 256), 256, 0, ctx_->queue(), src.data, src.cols,
               src_col, src_stride, dst.data, dst.cols, dst_col, dst_stride, width, count, src.rows);
  check_launch("copy_columns");
}

WeightMatrix CudaBackend::prepare_weight(const WeightMatrix& host) {
  WeightMatrix w = host;
  if (host.data == nullptr) return w;
  if (!host.quantized()) {
    w.data =
        ctx_->keep_upload(host.data, static_cast<size_t>(host.rows * host.cols) * dtype_size(host.dtype));
    return w;
  }
  require(host.group_size > 0 && host.cols % host.group_size == 0 && host.cols * host.bits % 32 == 0,
          str("quantized matrix [", host.rows, ", ", host.cols, "] has a bad group size ", host.group_size),
          "cuda backend");
  w.data = ctx_->keep_upload(host.data, static_cast<size_t>(host.rows * host.words_per_row()) * 4);
  const size_t scale_bytes =
      static_cast<size_t>(host.rows * (host.cols / host.group_size)) * dtype_size(host.scale_dtype);
  w.scales = ctx_->keep_upload(host.scales, scale_bytes);
  w.biases = ctx_->keep_upload(host.biases, scale_bytes);
  return w;
}

void CudaBackend::embed(const WeightMatrix& table, std::span<const int32_t> tokens, Tensor& out) {
  expect(out.rows == static_cast<int64_t>(tokens.size()) && out.cols == table.cols, "embed shape");
  if (tokens.empty()) return;
  for (int32_t token : tokens)
    require(token >= 0 && token < table.rows,
            str("token id ", token, " is outside the vocabulary (0..", table.rows - 1, ")"));
  cuda::InlineTokens inline_ids{};
  std::shared_ptr<void> uploaded;
  const int32_t* ids = nullptr;
  const auto& capture = ctx_->capture;
  if (capture && tokens.data() == capture->tokens.data() && tokens.size() == capture->tokens.size()) {
    // The step's own ids: a replay reads the ones it is given.
    ids = static_cast<const cuda::StepParams*>(capture->params.get())->tokens;
  } else if (tokens.size() <= static_cast<size_t>(cuda::kInlineTokens)) {
    std::copy(tokens.begin(), tokens.end(), inline_ids.ids);
  } else {
    uploaded = ctx_->scratch(tokens.size_bytes());
    MTPLX_CUDA_CHECK(cudaMemcpyAsync(uploaded.get(), tokens.data(), tokens.size_bytes(),
                                     cudaMemcpyHostToDevice, ctx_->stream));
    MTPLX_CUDA_CHECK(cudaStreamSynchronize(ctx_->stream));  // the host span may go right after we return
    ids = static_cast<const int32_t*>(uploaded.get());
  }
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>((table.cols + 255) / 256, 64)),
                  static_cast<unsigned>(tokens.size()));
  cuda::launch(cuda::embed_kernel, grid, 256, 0, ctx_->queue(), cuda::weight_view(table), inline_ids, ids,
               out.data);
  check_launch("embed");
}

void CudaBackend::rms_norm(const Tensor& x, const Tensor& gain, float eps, Tensor& y) {
  const int64_t group = gain.numel();
  expect(x.numel() == y.numel() && group > 0 && x.numel() % group == 0, "rms_norm shape");
  const int64_t groups = x.numel() / group;
  if (groups == 0) return;
  if (const int threads = ctx_->vector_norms ? cuda::norm_vec_threads(group, {x.data, gain.data, y.data}) : 0;
      threads > 0)
    cuda::launch(cuda::norm_vec_kernel<false>, static_cast<unsigned>(groups), threads, 0, ctx_->queue(),
                 reinterpret_cast<const float4*>(x.data), static_cast<const float4*>(nullptr),
                 reinterpret_cast<const float4*>(gain.data), group / 4, eps, static_cast<float4*>(nullptr),
                 reinterpret_cast<float4*>(y.data));
  else
    cuda::launch(cuda::rms_norm_kernel, static_cast<unsigned>(groups), cuda::norm_threads(group), 0,
                 ctx_->queue(), x.data, gain.data, group, eps, y.data);
  check_launch("rms_norm");
}

void CudaBackend::add_rms_norm(const Tensor& a, const Tensor& b, const Tensor& gain, float eps, Tensor& sum,
                               Tensor& normed) {
  const int64_t group = gain.numel();
  expect(a.numel() == b.numel() && a.numel() == sum.numel() && a.numel() == normed.numel() && group > 0 &&
             a.numel() % group == 0,
         "add_rms_norm shape");
  const int64_t groups = a.numel() / group;
  if (groups == 0) return;
  if (const int threads = ctx_->vector_norms ? cuda::norm_vec_threads(
                                                   group, {a.data, b.data, gain.data, sum.data, normed.data})
                                             : 0;
      threads > 0)
    cuda::launch(cuda::norm_vec_kernel<true>, static_cast<unsigned>(groups), threads, 0, ctx_->queue(),
                 reinterpret_cast<const float4*>(a.data), reinterpret_cast<const float4*>(b.data),
                 reinterpret_cast<const float4*>(gain.data), group / 4, eps,
                 reinterpret_cast<float4*>(sum.data), reinterpret_cast<float4*>(normed.data));
  else
    cuda::launch(cuda::add_rms_norm_kernel, static_cast<unsigned>(groups), cuda::norm_threads(group), 0,
                 ctx_->queue(), a.data, b.data, gain.data, group, eps, sum.data, normed.data);
  check_launch("add_rms_norm");
}

void CudaBackend::gated_rms_norm(const Tensor& x, const Tensor& z, const Tensor& gain, float eps,
                                 Tensor& out) {
  const int64_t group = gain.numel();
  expect(x.numel() == z.numel() && x.numel() == out.numel() && group > 0 && x.numel() % group == 0,
         "gated_rms_norm shape");
  const int64_t groups = x.numel() / group;
  if (groups == 0) return;
  cuda::launch(cuda::gated_rms_norm_kernel, static_cast<unsigned>(groups), cuda::norm_threads(group), 0,
               ctx_->queue(), x.data, z.data, gain.data, group, eps, out.data);
  check_launch("gated_rms_norm");
}

void CudaBackend::l2_norm(Tensor& x, int64_t group, float scale) {
  expect(group > 0 && x.numel() % group == 0, "l2_norm shape");
  const int64_t groups = x.numel() / group;
  if (groups == 0) return;
  cuda::launch(cuda::l2_norm_kernel, static_cast<unsigned>(groups), cuda::norm_threads(group), 0,
               ctx_->queue(), x.data, group, scale);
  check_launch("l2_norm");
}

void CudaBackend::add(const Tensor& a, const Tensor& b, Tensor& out) {
  expect(a.numel() == b.numel() && a.numel() == out.numel(), "add shape");
  if (a.numel() == 0) return;
  cuda::launch(cuda::add_kernel, grid_for(a.numel(), 256), 256, 0, ctx_->queue(), a.data, b.data, out.data,
               a.numel());
  check_launch("add");
}

void CudaBackend::silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
  expect(gate.numel() == up.numel() && gate.numel() == out.numel(), "silu_mul shape");
  if (gate.numel() == 0) return;
  cuda::launch(cuda::silu_mul_kernel, grid_for(gate.numel(), 256), 256, 0, ctx_->queue(), gate.data, up.data,
               out.data, gate.numel());
  check_launch("silu_mul");
}

void CudaBackend::sigmoid_mul(Tensor& x, const Tensor& gate) {
  expect(x.numel() == gate.numel(), "sigmoid_mul shape");
  if (x.numel() == 0) return;
  cuda::launch(cuda::sigmoid_mul_kernel, grid_for(x.numel(), 256), 256, 0, ctx_->queue(), x.data, gate.data,
               x.numel());
  check_launch("sigmoid_mul");
}

void CudaBackend::rope(Tensor& x, int heads, int head_dim, int rot_dim, double theta, int64_t pos0) {
  expect(x.cols == int64_t{heads} * head_dim && rot_dim % 2 == 0 && rot_dim <= head_dim, "rope shape");
  const int64_t n = x.rows * heads * (rot_dim / 2);
  if (n == 0) return;
  cuda::launch(cuda::rope_kernel, grid_for(n, 128), 128, 0, ctx_->queue(), x.data, x.rows, x.cols, heads,
               head_dim, rot_dim, theta, ctx_->position(pos0));
  check_launch("rope");
}

void CudaBackend::conv1d_silu(const Tensor& x, const Tensor& weight, Tensor& state, Tensor& out,
                              Tensor* row_states) {
  const int64_t C = x.cols, K = weight.cols, T = x.rows;
  expect(weight.rows == C && state.rows == K - 1 && state.cols == C && out.rows == T && out.cols == C,
         "conv1d shape");
  expect(row_states == nullptr || (row_states->rows <= T && row_states->cols == (K - 1) * C),
         "conv1d row_states");
  if (T == 0) return;
  cuda::launch(cuda::conv1d_kernel, grid_for(T * C, 256), 256, 0, ctx_->queue(), x.data, weight.data,
               state.data, out.data, row_states ? row_states->data : nullptr,
               row_states ? row_states->rows : int64_t{0}, T, C, static_cast<int>(K));
  check_launch("conv1d_silu");
  cuda::launch(cuda::conv_state_kernel, cuda::blocks_for(C, 256), 256, 0, ctx_->queue(), x.data, state.data,
               T, C, static_cast<int>(K));
  check_launch("conv1d_state");
}

void CudaBackend::gdn_gates(const Tensor& a, const Tensor& b, const Tensor& a_log, const Tensor& dt_bias,
                            Tensor& g, Tensor& beta) {
  const int64_t H = a.cols;
  expect(b.cols == H && a_log.numel() == H && dt_bias.numel() == H && g.numel() == a.numel() &&
             beta.numel() == a.numel(),
         "gdn_gates shape");
  if (a.numel() == 0) return;
  cuda::launch(cuda::gdn_gates_kernel, grid_for(a.numel(), 256), 256, 0, ctx_->queue(), a.data, b.data,
               a_log.data, dt_bias.data, g.data, beta.data, a.numel(), H);
  check_launch("gdn_gates");
}

}  // namespace mtplx

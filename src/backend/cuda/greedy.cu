// CudaBackend::greedy_tokens: the argmax of each logits row on the device, so a greedy decode step moves
// 4 bytes per row to the host instead of the whole row (a 248k vocabulary is 1 MB) and skips the host scan.
//
// Two kernels: the first splits every row into chunks of kChunk values, one block per (chunk, row), so a
// single row still spreads over the GPU's SMs; the second reduces each row's chunk winners. Both are
// ordinary stream-ordered launches; the only host sync is the download of the ids.
#include <cstring>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/device_util.cuh"

namespace mtplx {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = 2048;  // 8 values per thread: a 248,320-value row makes 122 blocks

// A candidate: its value and index, index -1 for "none yet" (every value so far NaN).
struct Best {
  float value;
  int32_t index;
};

// Whether a is preferred to b: any candidate beats none; then the larger value, then the lower index. NaN
// never becomes a candidate, so values compare totally here (-0 == +0 is a tie, as on the host).
__device__ __forceinline__ bool better(Best a, Best b) {
  if (a.index < 0) return false;
  if (b.index < 0) return true;
  return a.value > b.value || (a.value == b.value && a.index < b.index);
}

__device__ __forceinline__ Best warp_best(Best b) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const Best other{__shfl_xor_sync(0xffffffffu, b.value, o), __shfl_xor_sync(0xffffffffu, b.index, o)};
    if (better(other, b)) b = other;
  }
  return b;
}

// The block's best candidate (blockDim.x a multiple of 32), valid in thread 0.
__device__ Best block_best(Best b) {
  __shared__ float values[32];
  __shared__ int32_t indices[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  b = warp_best(b);
  if (lane == 0) {
    values[warp] = b.value;
    indices[warp] = b.index;
  }
  __syncthreads();
  if (warp == 0) {
    const bool live = lane < static_cast<int>(blockDim.x >> 5);
    b = warp_best(Best{live ? values[lane] : 0.0f, live ? indices[lane] : -1});
  }
  return b;
}

// Block (chunk, row): the best of logits[row, chunk * kChunk ...) into partial[row, chunk].
__global__ void greedy_chunks_kernel(const float* logits, int64_t cols, int chunks, float* partial_values,
                                     int32_t* partial_indices) {
  begin_dependent();
  const int64_t row = blockIdx.y, begin = blockIdx.x * kChunk;
  const int64_t end = begin + kChunk < cols ? begin + kChunk : cols;
  const float* x = logits + row * cols;
  // Each thread walks its values in ascending order, so a strict > keeps the lowest index of a tie.
  Best b{0.0f, -1};
  for (int64_t j = begin + threadIdx.x; j < end; j += kThreads) {
    const float v = x[j];
    if (!isnan(v) && (b.index < 0 || v > b.value)) b = Best{v, static_cast<int32_t>(j)};
  }
  b = block_best(b);
  if (threadIdx.x == 0) {
    partial_values[row * chunks + blockIdx.x] = b.value;
    partial_indices[row * chunks + blockIdx.x] = b.index;
  }
}

// Block row: the best of the row's chunk winners; -1 when the row has no comparable value.
__global__ void greedy_rows_kernel(const float* partial_values, const int32_t* partial_indices, int chunks,
                                   int32_t* ids) {
  begin_dependent();
  const int64_t row = blockIdx.x;
  Best b{0.0f, -1};
  for (int k = threadIdx.x; k < chunks; k += kThreads) {
    const Best c{partial_values[row * chunks + k], partial_indices[row * chunks + k]};
    if (better(c, b)) b = c;
  }
  b = block_best(b);
  if (threadIdx.x == 0) ids[row] = b.index;
}

}  // namespace
}  // namespace cuda

std::vector<int32_t> CudaBackend::greedy_tokens(const Tensor& logits) {
  const int64_t rows = logits.rows, cols = logits.cols;
  std::vector<int32_t> ids(static_cast<size_t>(rows), -1);
  if (rows > 0 && cols > 0) {
    require(rows <= 65535, "internal error: greedy_tokens takes at most 65535 rows");
    const int chunks = static_cast<int>((cols + cuda::kChunk - 1) / cuda::kChunk);
    // One scratch block: the chunk winners' values, their indices, then the row ids (all 4-byte words).
    const size_t partials = static_cast<size_t>(rows) * chunks;
    const std::shared_ptr<void> scratch = ctx_->scratch((2 * partials + rows) * sizeof(float));
    auto* values = static_cast<float*>(scratch.get());
    auto* indices = reinterpret_cast<int32_t*>(values + partials);
    int32_t* device_ids = indices + partials;
    cuda::launch(cuda::greedy_chunks_kernel, dim3(chunks, static_cast<unsigned>(rows)), cuda::kThreads, 0,
                 ctx_->queue(), logits.data, cols, chunks, values, indices);
    cuda::check_launch("greedy_chunks");
    cuda::launch(cuda::greedy_rows_kernel, dim3(static_cast<unsigned>(rows)), cuda::kThreads, 0,
                 ctx_->queue(), values, indices, chunks, device_ids);
    cuda::check_launch("greedy_rows");
    const size_t bytes = ids.size() * sizeof(int32_t);
    std::memcpy(ids.data(), ctx_->read_back(device_ids, bytes), bytes);
  }
  for (const int32_t id : ids)
    require(id >= 0, "argmax of a row with no comparable entry (empty or all NaN)", "greedy_tokens");
  return ids;
}

}  // namespace mtplx

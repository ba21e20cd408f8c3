// CudaBackend::top_k: each logits row's k best entries on the device, so a sampled decode step under a
// top-k cut moves k (id, value) pairs per row to the host instead of the row (a 248k vocabulary is 1 MB)
// and skips the host's selection pass.
//
// An entry is ranked by one 64-bit key: the order-preserving bits of its value above the complement of its
// index, so the largest key is the largest value and, among equal values, the lowest index (row_pick.h's
// rule); NaN gets key 0, which never wins. Two kernels: the first selects the k best of each chunk of a
// row (one block per chunk and row, so one row spreads over the SMs), the second the k best of a row's
// chunk winners. A block selects by k rounds of "block maximum, then its owner drops it", each round one
// barrier; the keys stay in registers, and each thread keeps its own maximum, which only the round's owner
// recomputes (ncu, H100: recomputing it in every thread every round made a round ~1,500 cycles, the two
// kernels 19 + 27 µs for a top-20 of 248,320 values).
#include <cstring>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/device_util.cuh"

namespace mtplx {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMergePer = 16;                         // keys per thread of the merge kernel
constexpr int64_t kMergeKeys = kMergePer * kThreads;  // chunk winners a row can have: chunks * k <= 4096

__device__ __forceinline__ uint64_t rank_key(float value, int64_t index) {
  if (isnan(value)) return 0;
  uint32_t bits = __float_as_uint(value == 0.0f ? 0.0f : value);  // -0 ranks as +0: the index decides
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (uint64_t{bits} << 32) | (0xffffffffu - static_cast<uint32_t>(index));
}

__device__ __forceinline__ int32_t key_index(uint64_t key) {
  return key == 0 ? -1 : static_cast<int32_t>(0xffffffffu - static_cast<uint32_t>(key));
}

__device__ __forceinline__ uint64_t max_key(uint64_t a, uint64_t b) {
  return a > b ? a : b;
}

// The largest of keys[first, first + N) (N a power of two), by a tree: log2(N) dependent steps instead of
// N. A template recursion, so every index is a constant and the keys stay in registers.
template <int N, int kPer>
__device__ __forceinline__ uint64_t tree_max(const uint64_t (&keys)[kPer], int first = 0) {
  if constexpr (N == 1)
    return keys[first];
  else
    return max_key(tree_max<N / 2>(keys, first), tree_max<N / 2>(keys, first + N / 2));
}

// The k largest keys held by the block (kPer per thread, a power of two; 0 = none), largest first: thread 0
// calls emit(i, key) for i = 0..k-1, with key 0 once the block has none left. All threads must call it.
template <int kPer, class Emit>
__device__ void block_select(uint64_t (&keys)[kPer], int k, Emit emit) {
  // Two slots, used by alternate rounds: a warp writing round i + 2's winner has passed round i + 1's
  // barrier, which every thread reaches only after reading round i's winners.
  __shared__ uint64_t winners[2][kThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  uint64_t head = tree_max<kPer>(keys);  // this thread's largest key left
  for (int i = 0; i < k; ++i) {
    uint64_t mine = head;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mine = max_key(mine, __shfl_xor_sync(0xffffffffu, mine, o));
    if (lane == 0) winners[i & 1][warp] = mine;
    __syncthreads();
    uint64_t best = 0;
#pragma unroll
    for (int w = 0; w < kThreads / 32; ++w) best = max_key(best, winners[i & 1][w]);
    if (best == 0) {  // the same for every thread: the rest are empty
      if (threadIdx.x == 0)
        for (; i < k; ++i) emit(i, uint64_t{0});
      return;
    }
    if (head == best) {  // keys are unique (the index is part of them): one owner
#pragma unroll
      for (int j = 0; j < kPer; ++j)
        if (keys[j] == best) keys[j] = 0;
      head = tree_max<kPer>(keys);
    }
    if (threadIdx.x == 0) emit(i, best);
  }
}

// Block (chunk, row): the k best keys of logits[row, chunk * kPer * kThreads ...) into
// winners[row, chunk, 0..k).
template <int kPer>
__global__ void __launch_bounds__(kThreads)
    top_k_chunks_kernel(const float* logits, int64_t cols, int k, uint64_t* winners) {
  begin_dependent();
  const int64_t row = blockIdx.y;
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * kPer * kThreads;
  const float* x = logits + row * cols;
  uint64_t keys[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int64_t c = begin + j * kThreads + threadIdx.x;
    keys[j] = c < cols ? rank_key(x[c], c) : 0;
  }
  uint64_t* out = winners + (row * gridDim.x + blockIdx.x) * k;
  block_select(keys, k, [out](int i, uint64_t key) { out[i] = key; });
}

// Block row: the k best of the row's n chunk winners, as ids and the logits they index.
__global__ void __launch_bounds__(kThreads)
    top_k_rows_kernel(const uint64_t* winners, int n, int k, const float* logits, int64_t cols, int32_t* ids,
                      float* values) {
  begin_dependent();
  const int64_t row = blockIdx.x;
  uint64_t keys[kMergePer];
#pragma unroll
  for (int j = 0; j < kMergePer; ++j) {
    const int c = j * kThreads + threadIdx.x;
    keys[j] = c < n ? winners[row * n + c] : 0;
  }
  const float* x = logits + row * cols;
  block_select(keys, k, [&](int i, uint64_t key) {
    const int32_t id = key_index(key);
    ids[row * k + i] = id;
    values[row * k + i] = id >= 0 ? x[id] : 0.0f;
  });
}

}  // namespace
}  // namespace cuda

void CudaBackend::top_k(const Tensor& logits, int k, std::vector<ScoredToken>& out) {
  const int64_t rows = logits.rows, cols = logits.cols;
  require(k >= 0, str("top_k needs k >= 0, got ", k), "Backend::top_k");
  // Chunks of 2,048 keep a 248k row on 122 blocks; a larger k needs fewer, larger chunks so that a row's
  // chunk winners fit the merge block. Past that (k > 132 at that vocabulary) the host selects.
  const auto chunks_of = [&](int64_t chunk) { return (cols + chunk - 1) / chunk; };
  const int64_t small = 8 * cuda::kThreads, large = 32 * cuda::kThreads;
  const bool fits_small = chunks_of(small) * k <= cuda::kMergeKeys;
  const bool fits_large = chunks_of(large) * k <= cuda::kMergeKeys;
  if (rows == 0 || cols == 0 || k == 0 || rows > 65535 || cols > INT32_MAX || !(fits_small || fits_large)) {
    Backend::top_k(logits, k, out);
    return;
  }
  const int64_t chunks = chunks_of(fits_small ? small : large);
  const size_t count = static_cast<size_t>(rows) * k;  // candidates out
  const size_t winner_count = static_cast<size_t>(rows * chunks) * k;
  // One scratch block: the chunk winners (8-byte keys), then the ids and values that come to the host.
  const std::shared_ptr<void> scratch = ctx_->scratch(winner_count * sizeof(uint64_t) + count * 8);
  auto* winners = static_cast<uint64_t*>(scratch.get());
  auto* ids = reinterpret_cast<int32_t*>(winners + winner_count);
  auto* values = reinterpret_cast<float*>(ids + count);
  const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(rows));
  if (fits_small)
    cuda::launch(cuda::top_k_chunks_kernel<8>, grid, cuda::kThreads, 0, ctx_->queue(), logits.data, cols, k,
                 winners);
  else
    cuda::launch(cuda::top_k_chunks_kernel<32>, grid, cuda::kThreads, 0, ctx_->queue(), logits.data, cols, k,
                 winners);
  cuda::check_launch("top_k_chunks");
  cuda::launch(cuda::top_k_rows_kernel, dim3(static_cast<unsigned>(rows)), cuda::kThreads, 0, ctx_->queue(),
               winners, static_cast<int>(chunks * k), k, logits.data, cols, ids, values);
  cuda::check_launch("top_k_rows");
  const size_t bytes = count * 8;
  auto* stage = static_cast<std::byte*>(ctx_->staging_for(bytes));
  MTPLX_CUDA_CHECK(cudaMemcpyAsync(stage, ids, bytes, cudaMemcpyDeviceToHost, ctx_->stream));
  MTPLX_CUDA_CHECK(cudaStreamSynchronize(ctx_->stream));
  out.resize(count);
  for (size_t i = 0; i < count; ++i) {
    std::memcpy(&out[i].id, stage + i * sizeof(int32_t), sizeof(int32_t));
    std::memcpy(&out[i].value, stage + (count + i) * sizeof(float), sizeof(float));
  }
}

}  // namespace mtplx

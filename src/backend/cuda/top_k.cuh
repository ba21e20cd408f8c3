// Internal to the CUDA backend: the top-k selection of each logits row on the device (CudaBackend::top_k,
// and the device sampler, which runs its filter and acceptance in the same launch as the selection's last
// kernel through an epilogue).
//
// An entry is ranked by one 64-bit key: the order-preserving bits of its value above the complement of its
// index, so the largest key is the largest value and, among equal values, the lowest index (row_pick.h's
// rule); NaN gets key 0, which never wins. Two kernels: the first selects the k best of each chunk of a
// row (one block per chunk and row, so one row spreads over the SMs), the second the k best of a row's
// chunk winners. A block selects by k rounds of "block maximum, then its owner drops it", each round one
// barrier; the keys stay in registers, and each thread keeps its own maximum, which only the round's owner
// recomputes (ncu, H100: recomputing it in every thread every round made a round ~1,500 cycles, the two
// kernels 19 + 27 µs for a top-20 of 248,320 values).
#pragma once

#include <cstdint>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/device_util.cuh"
#include "base/error.h"

namespace mtplx::cuda {
// Internal linkage: each .cu that includes this gets its own kernels (no -rdc, so no shared device symbols).
namespace {
namespace top_k_detail {

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

// The largest key of the warp, on every lane: the largest high word, then the largest low word among the
// lanes that hold it, each one redux.sync (sm_80+) instead of a five-step chain of 64-bit shuffles.
__device__ __forceinline__ uint64_t warp_max_key(uint64_t key) {
  const auto high = static_cast<uint32_t>(key >> 32);
  const uint32_t top = __reduce_max_sync(0xffffffffu, high);
  const uint32_t low = __reduce_max_sync(0xffffffffu, high == top ? static_cast<uint32_t>(key) : 0u);
  return (uint64_t{top} << 32) | low;
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
    const uint64_t mine = warp_max_key(head);
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

// No work after the selection (CudaBackend::top_k).
struct NoEpilogue {
  __device__ void operator()(const int32_t*, const float*) const {}
};

// Block row: the k best of the row's n chunk winners, as ids and the logits they index; then, with every
// thread of the block and the row's candidates written, epilogue(ids, values) (all rows' arrays).
template <class Epilogue>
__global__ void __launch_bounds__(kThreads)
    top_k_rows_kernel(const uint64_t* winners, int n, int k, const float* logits, int64_t cols, int32_t* ids,
                      float* values, Epilogue epilogue) {
  begin_dependent();
  const int64_t row = blockIdx.x;
  uint64_t keys[kMergePer];
#pragma unroll
  for (int j = 0; j < kMergePer; ++j) {
    const int c = j * kThreads + threadIdx.x;
    keys[j] = c < n ? winners[row * n + c] : 0;
  }
  block_select(keys, k, [&](int i, uint64_t key) { ids[row * k + i] = key_index(key); });
  // The logits behind the ids, read by k threads at once after the rounds: read by thread 0 within each
  // round, every round's barrier waited out a dependent load (ncu, H200, a top-20 of 248,320 values: this
  // kernel 19.2 us that way, 15.6 us this way; 2026-11-30).
  __syncthreads();
  const float* x = logits + row * cols;
  for (int i = threadIdx.x; i < k; i += blockDim.x) {
    const int32_t id = ids[row * k + i];
    values[row * k + i] = id >= 0 ? x[id] : 0.0f;
  }
  if (threadIdx.x < k) __threadfence();  // before an epilogue's own fence and count (AcceptStep)
  __syncthreads();
  epilogue(ids, values);
}

// Chunks of 2,048 keep a 248k row on 122 blocks; a larger k needs fewer, larger chunks so that a row's
// chunk winners fit the merge block. The chunk size (kSmallChunk or kLargeChunk), or 0 when even the larger
// does not fit (k > 132 at that vocabulary).
constexpr int64_t kSmallChunk = 8 * kThreads, kLargeChunk = 32 * kThreads;
int64_t chunk_for(int64_t cols, int k) {
  for (const int64_t chunk : {kSmallChunk, kLargeChunk})
    if ((cols + chunk - 1) / chunk * k <= kMergeKeys) return chunk;
  return 0;
}

}  // namespace top_k_detail

// Whether queue_top_k takes these sizes (k * chunks of a row must fit the merge block: k <= 132 for a 248k
// vocabulary).
bool top_k_fits(int64_t rows, int64_t cols, int k) {
  return rows > 0 && cols > 0 && k > 0 && rows <= 65535 && cols <= INT32_MAX &&
         top_k_detail::chunk_for(cols, k) > 0;
}

// The k best entries of each row of logits [rows, cols] (row_pick.h's rank), best first, into ids and
// values [rows, k] in device memory; a row with fewer than k comparable entries ends with id -1. Queued on
// ctx's stream. The epilogue runs in each row's block of the last kernel, with `epilogue_shared` bytes of
// dynamic shared memory (see top_k_rows_kernel; past 48 KB the caller must have raised the kernel's limit).
template <class Epilogue = top_k_detail::NoEpilogue>
void queue_top_k(const Context& ctx, const float* logits, int64_t rows, int64_t cols, int k, int32_t* ids,
                 float* values, const Epilogue& epilogue = {}, size_t epilogue_shared = 0) {
  using namespace top_k_detail;
  require(top_k_fits(rows, cols, k), "internal error: queue_top_k past its limits");
  const int64_t chunk = chunk_for(cols, k);
  const int64_t chunks = (cols + chunk - 1) / chunk;
  // The chunk winners (8-byte keys): scratch that later ops on the stream may reuse once these have run.
  const std::shared_ptr<void> scratch =
      ctx.scratch(static_cast<size_t>(rows * chunks) * k * sizeof(uint64_t));
  auto* winners = static_cast<uint64_t*>(scratch.get());
  const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(rows));
  if (chunk == kSmallChunk)
    launch(top_k_chunks_kernel<8>, grid, kThreads, 0, ctx.queue(), logits, cols, k, winners);
  else
    launch(top_k_chunks_kernel<32>, grid, kThreads, 0, ctx.queue(), logits, cols, k, winners);
  check_launch("top_k_chunks");
  launch(top_k_rows_kernel<Epilogue>, dim3(static_cast<unsigned>(rows)), kThreads, epilogue_shared,
         ctx.queue(), winners, static_cast<int>(chunks * k), k, logits, cols, ids, values, epilogue);
  check_launch("top_k_rows");
}

}  // namespace
}  // namespace mtplx::cuda

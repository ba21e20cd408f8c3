// CudaBackend::greedy_tokens: the argmax of each logits row on the device, so a greedy decode step moves
// 4 bytes per row to the host instead of the whole row (a 248k vocabulary is 1 MB) and skips the host scan.
//
// Two kernels: the first splits every row into chunks of kChunk values, one block per (chunk, row), so a
// single row still spreads over the GPU's SMs; the second reduces each row's chunk winners. Both are
// ordinary stream-ordered launches; the only host sync is the download of the ids. greedy_pick leaves the
// ids in token slots instead (device memory, mapped through a trimmed draft head's ids on the way), where
// the next step graph reads them (graph.cu) and TokenSlots::read fetches a cycle's worth at once.
#include <algorithm>
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

// Block row: the best of the row's chunk winners, through `map` when given; -1 when the row has no
// comparable value.
__global__ void greedy_rows_kernel(const float* partial_values, const int32_t* partial_indices, int chunks,
                                   const int32_t* map, int32_t* ids) {
  begin_dependent();
  const int64_t row = blockIdx.x;
  Best b{0.0f, -1};
  for (int k = threadIdx.x; k < chunks; k += kThreads) {
    const Best c{partial_values[row * chunks + k], partial_indices[row * chunks + k]};
    if (better(c, b)) b = c;
  }
  b = block_best(b);
  if (threadIdx.x == 0) ids[row] = b.index >= 0 && map != nullptr ? map[b.index] : b.index;
}

// Queues the picks of every row of `logits` into ids[0, rows) (device memory), mapped when `map` is given.
void queue_greedy(Context& ctx, const Tensor& logits, const int32_t* map, int32_t* ids) {
  const int64_t rows = logits.rows, cols = logits.cols;
  require(rows <= 65535, "internal error: greedy_tokens takes at most 65535 rows");
  const int chunks = static_cast<int>((cols + kChunk - 1) / kChunk);
  // One scratch block: the chunk winners' values, then their indices (4-byte words).
  const size_t partials = static_cast<size_t>(rows) * chunks;
  const std::shared_ptr<void> scratch = ctx.scratch(2 * partials * sizeof(float));
  auto* values = static_cast<float*>(scratch.get());
  auto* indices = reinterpret_cast<int32_t*>(values + partials);
  launch(greedy_chunks_kernel, dim3(chunks, static_cast<unsigned>(rows)), kThreads, 0, ctx.queue(),
         logits.data, cols, chunks, values, indices);
  check_launch("greedy_chunks");
  launch(greedy_rows_kernel, dim3(static_cast<unsigned>(rows)), kThreads, 0, ctx.queue(), values, indices,
         chunks, map, ids);
  check_launch("greedy_rows");
}

void require_picked(std::span<const int32_t> ids) {
  for (const int32_t id : ids)
    require(id >= 0, "argmax of a row with no comparable entry (empty or all NaN)", "greedy_tokens");
}

// Token slots in device memory: picks stay there for the next step's ids (graph.cu reads them at replay);
// read() brings a range to the host through the staging buffer.
class CudaTokenSlots final : public TokenSlots {
 public:
  CudaTokenSlots(Context& ctx, int count, std::span<const int32_t> id_map)
      : ctx_(ctx), count_(count), map_size_(static_cast<int64_t>(id_map.size())), host_(count) {
    ids_ = Pool::get(ctx.pool, static_cast<size_t>(std::max(count, 1)) * sizeof(int32_t));
    MTPLX_CUDA_CHECK(cudaMemsetAsync(ids_.get(), 0, static_cast<size_t>(std::max(count, 1)) * 4, ctx.stream));
    if (!id_map.empty()) {
      map_ = Pool::get(ctx.pool, id_map.size_bytes());
      MTPLX_CUDA_CHECK(cudaMemcpyAsync(map_.get(), id_map.data(), id_map.size_bytes(), cudaMemcpyHostToDevice,
                                       ctx.stream));
      MTPLX_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));  // the host span may go when we return
    }
  }
  int size() const override { return count_; }
  std::span<const int32_t> read(int first, int count) override {
    check_range(first, count);
    const size_t bytes = static_cast<size_t>(count) * sizeof(int32_t);
    if (count > 0) std::memcpy(host_.data(), ctx_.read_back(at(first), bytes), bytes);
    const std::span<const int32_t> ids(host_.data(), static_cast<size_t>(count));
    require_picked(ids);
    return ids;
  }
  int32_t* at(int slot) const { return static_cast<int32_t*>(ids_.get()) + slot; }
  const int32_t* map() const { return static_cast<const int32_t*>(map_.get()); }
  int64_t map_size() const { return map_size_; }

 private:
  Context& ctx_;
  int count_;
  int64_t map_size_;
  std::shared_ptr<void> ids_, map_;
  std::vector<int32_t> host_;
};

CudaTokenSlots& device_slots(TokenSlots& slots) {
  auto* device = dynamic_cast<CudaTokenSlots*>(&slots);
  require(device != nullptr, "internal error: token slots of another backend given to the cuda backend");
  return *device;
}

}  // namespace

int32_t* slot_ids(TokenSlots& slots, int first, int count) {
  CudaTokenSlots& device = device_slots(slots);
  device.check_range(first, count);
  return device.at(first);
}

const int32_t* slot_id_map(TokenSlots& slots, int64_t size) {
  const CudaTokenSlots& device = device_slots(slots);
  require(device.map_size() == size,
          str("internal error: token slots map ", device.map_size(), " ids where ", size, " are expected"));
  return device.map();
}

}  // namespace cuda

std::vector<int32_t> CudaBackend::greedy_tokens(const Tensor& logits) {
  std::vector<int32_t> ids(static_cast<size_t>(logits.rows), -1);
  if (logits.rows > 0 && logits.cols > 0) {
    const size_t bytes = ids.size() * sizeof(int32_t);
    const std::shared_ptr<void> device_ids = ctx_->scratch(bytes);
    cuda::queue_greedy(*ctx_, logits, nullptr, static_cast<int32_t*>(device_ids.get()));
    std::memcpy(ids.data(), ctx_->read_back(device_ids.get(), bytes), bytes);
  }
  cuda::require_picked(ids);
  return ids;
}

std::unique_ptr<TokenSlots> CudaBackend::token_slots(int count, std::span<const int32_t> id_map) {
  require(count >= 0, "internal error: negative token slot count");
  return std::make_unique<cuda::CudaTokenSlots>(*ctx_, count, id_map);
}

void CudaBackend::greedy_pick(const Tensor& logits, TokenSlots& slots, int first, bool mapped) {
  cuda::CudaTokenSlots& device = cuda::device_slots(slots);
  device.check_range(first, static_cast<int>(logits.rows));
  const int32_t* map = mapped ? device.map() : nullptr;
  require(map == nullptr || device.map_size() == logits.cols,
          str("internal error: greedy_pick over ", logits.cols, " columns with an id map of ",
              device.map_size()));
  require(logits.cols > 0, "argmax of a row with no comparable entry (empty or all NaN)", "greedy_pick");
  if (logits.rows > 0) cuda::queue_greedy(*ctx_, logits, map, device.at(first));
}

}  // namespace mtplx

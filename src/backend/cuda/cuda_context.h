// Internal to the CUDA backend: error checks, the caching pool and the per-backend context.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "backend/weight.h"
#include "base/error.h"

namespace mtplx {
class TokenSlots;  // backend/backend.h
}

namespace mtplx::cuda {

// Throws mtplx::Error naming the CUDA call that failed and where.
void check(cudaError_t status, const char* what, const char* where);
// After a kernel launch: launch-configuration errors surface here, asynchronous faults at the next sync.
void check_launch(const char* kernel);

// Which fused GEMV serves T <= 8 rows; benchmarks switch to compare (CudaBackend::set_gemv).
struct GemvOptions {
  bool classic = false;  // matmul.cu's kernel (one chunk per row and iteration)
  int batch = 0;         // matmul_gemv.cu: units per lane and row loaded before use (1, 2, 4, 8); 0: by shape
                         // (matmul_imma.cu: 4 or 8 slices in flight per warp instead of 2)
  int warps = 0;         // matmul_gemv.cu: warps per row group (1, 2, 4); 0: by shape
  int words = 0;         // matmul_gemv.cu: 32-bit words per unit for 8-bit codes (2, 4); 0: by shape
                         // (matmul_imma.cu: 1 reads its activations from global memory, not shared)
  // Where a GEMV's first weights are loaded: 0 (the default) or 1 before griddepcontrol.wait (they stream in
  // while the previous kernel runs), -1 after it (the classic kernel's default before 2026-11-27).
  // CudaBackend::set_gemv_early.
  int early = 0;
  int wide8_from = 2;  // fewest rows at which 8-bit codes take the interleaved kernel (set_gemv_wide8_from)
  int wide4_from = 1;  // the same for 4-bit codes (set_gemv_wide4_from; 2 before 2026-11-27)
  // The classic kernel issues a lane's next chunk before this chunk's math (set_gemv_pipelined).
  bool pipelined = true;
  int mma_from = 0;  // fewest rows at which 8/4-bit codes take the tensor-core GEMV; 0: never
  // The same for large matrices only (5,120 rows and columns or more, as measured; set_gemv_mma_large_from),
  // 0: never. H200, 2026-11-28, one process: a Qwen3.6-27B-shaped verify of 3 / 4 / 5 rows took 18.2 / 18.5
  // / 18.7 ms with it against 19.1 / 21.9 / 24.8 without; Qwen3.5-4B's matrices (2,560 columns or rows)
  // run slower on it at these widths.
  int mma_large_from = 3;
  bool paired_mlp = true;  // T = 1: the MLP's gate, up and silu in one GEMV (CudaBackend::matmul_silu_mul)
  bool grouped = true;  // T = 1: matmul_many's matrices in one GEMV grid (CudaBackend::set_grouped_matmuls)
  // T >= 2: the interleaved GEMV compiled for more blocks an SM (fewer registers): 0 = the compiler's count,
  // 1 or 2 (matmul_gemv.cu's min_blocks; CudaBackend::set_gemv_register_bound).
  int register_bound = 1;
};

struct Context;

// Where kernels go: the backend's stream, and launch options (benchmarks switch them to compare).
struct Queue {
  cudaStream_t stream;
  bool pdl;  // programmatic dependent launch (below)
  GemvOptions gemv;
  bool mma_gemm;           // T > 8: tensor-core GEMM where it applies (matmul_mma.cu), else the fp32 tiles
  int mma_tile_rows;       // T rows per block of that GEMM: 64 or 128
  bool wgmma_gemm;         // 8/4-bit codes on the warpgroup GEMM instead (matmul_wgmma.cu) where it runs
  const Context* context;  // scratch memory for ops that need it (on this stream only)
};

// Launches `kernel` on `queue.stream` with programmatic dependent launch allowed (when queue.pdl): the kernel
// may be scheduled while its predecessor on the stream still runs, so launch latency and the predecessor's
// tail overlap. Every kernel launched this way calls wait_for_inputs() (device_util.cuh) before it touches
// memory that an earlier op writes or reads (only immutable weights may be read before it).
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared, Queue queue, Args&&... args) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared;
  config.stream = queue.stream;
  config.attrs = &attribute;
  config.numAttrs = queue.pdl ? 1 : 0;
  check(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...), "cudaLaunchKernelEx",
        "cuda backend");
}

#define MTPLX_CUDA_CHECK(call) ::mtplx::cuda::check((call), #call, __FILE__ ":" MTPLX_CUDA_LINE(__LINE__))
#define MTPLX_CUDA_LINE(x) MTPLX_CUDA_LINE2(x)
#define MTPLX_CUDA_LINE2(x) #x

// A size-bucketed free list of device blocks. Blocks are only ever handed back to cudaFree when the pool
// (and every tensor that still holds a block) is gone. Blocks freed by the host while the device may still
// use them are safe because every user runs on the same stream, in order.
class Pool {
 public:
  Pool() = default;
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // A block of at least `bytes`; the returned storage gives it back to this pool when released.
  // `self` must be the shared_ptr that owns this pool (the storage keeps the pool alive).
  static std::shared_ptr<void> get(const std::shared_ptr<Pool>& self, size_t bytes);
  size_t held_bytes() const;

 private:
  static size_t bucket(size_t bytes);
  void put(void* block, size_t size);

  mutable std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t held_ = 0;
};

// Device memory owned by one object (weights), freed with it.
struct DeviceFree {
  void operator()(void* p) const { cudaFree(p); }
};
using DeviceBuffer = std::unique_ptr<void, DeviceFree>;
struct HostFree {
  void operator()(void* p) const { cudaFreeHost(p); }
};
using PinnedBuffer = std::unique_ptr<void, HostFree>;

// What a step graph reads at replay: the base position and the token ids (graph.cu writes them before
// each replay).
constexpr int kGraphTokens = 64;
struct StepParams {
  int64_t position;
  int32_t tokens[kGraphTokens];
};

// A position as kernels take it: *base + offset where base is a step graph's StepParams::position, or the
// plain offset outside a capture.
struct Position {
  const int64_t* base;
  int64_t offset;
#ifdef __CUDACC__
  __device__ __forceinline__ int64_t get() const {
    return base != nullptr ? *base + offset : offset;
  }
#endif
};

// Device address of token slots [first, first + count) made by CudaBackend::token_slots (greedy.cu); throws
// for another backend's slots or a range outside them.
int32_t* slot_ids(TokenSlots& slots, int first, int count);
// Device address of those slots' id map (null when made without one); throws unless it holds `size` ids.
const int32_t* slot_id_map(TokenSlots& slots, int64_t size);

// The capture in progress (CudaBackend::begin_capture .. end_capture).
struct Capture {
  std::span<const int32_t> tokens;  // the host ids the step was written with
  int64_t base = 0;                 // the base position it was written at
  std::shared_ptr<Pool> pool;       // the graph's own memory: every tensor allocated while capturing
  std::shared_ptr<void> params;     // StepParams in device memory
};

struct Context {
  explicit Context(int device);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // A device copy of `bytes` host bytes, kept until the backend goes.
  const void* keep_upload(const void* host, size_t bytes);
  // Scratch device memory for one op (token ids, partial results): released when the shared_ptr goes.
  // While a capture is open it comes from the graph's pool, so no later op reuses a block the graph uses.
  std::shared_ptr<void> scratch(size_t bytes) const {
    return Pool::get(capture ? capture->pool : pool, bytes);
  }
  // `position` for a kernel: relative to the step's base position while capturing.
  Position position(int64_t p) const {
    if (!capture) return {nullptr, p};
    return {&static_cast<const StepParams*>(capture->params.get())->position, p - capture->base};
  }

  int device = 0;
  int sm_count = 0;
  int shared_per_block = 0;  // the most dynamic shared memory a block may opt in to
  bool wgmma_code =
      false;  // the sm_90a code of matmul_wgmma.cu runs here (compute capability 9.0, no PTX JIT)
  cudaStream_t stream = nullptr;
  // Streams that run independent matmuls beside `stream` (matmul_many), forked from it and joined back
  // through `events` (events[0] the fork, events[1 + i] side[i]'s join).
  std::array<cudaStream_t, 3> side{};
  std::array<cudaEvent_t, 4> events{};
  bool concurrent_matmuls = true;
  std::shared_ptr<Pool> pool = std::make_shared<Pool>();
  std::vector<DeviceBuffer> weights;
  size_t weight_bytes = 0;
  bool graphs_enabled = true;
  bool pdl = true;
  GemvOptions gemv;
  bool attention_splits = true;  // split-K attention over long caches (attention.cu)
  bool vector_norms = true;      // float4 row kernels for rms_norm / add_rms_norm (cuda_backend.cu)
  // download() through page-locked memory (cuda_backend.cu): the staging buffer, grown on demand, and one
  // event per chunk in flight.
  bool pinned_downloads = true;
  bool graph_input_in_params = true;  // CudaBackend::set_graph_input_in_params
  PinnedBuffer staging;
  size_t staging_bytes = 0;
  std::array<cudaEvent_t, 8> download_events{};
  void* staging_for(size_t bytes);
  // `bytes` of device memory copied through the staging buffer once the stream's work is done (a wait for
  // the device): the host copy, valid until the staging buffer is used again.
  const void* read_back(const void* device, size_t bytes);
  bool mma_gemm = true;  // CudaBackend::set_mma_gemm
  int mma_tile_rows = 64;
  bool wgmma_gemm = true;   // CudaBackend::set_wgmma_gemm
  bool gdn_columns = true;  // CudaBackend::set_gdn_columns
  bool gdn_chunks = true;   // CudaBackend::set_gdn_chunks
  int64_t gdn_chunks_from = 1024;
  bool attention_tiles = true;  // CudaBackend::set_attention_tiles
  bool attention_mma = true;    // CudaBackend::set_attention_mma
  Queue queue() const { return {stream, pdl, gemv, mma_gemm, mma_tile_rows, wgmma_gemm, this}; }
  std::optional<Capture> capture;
};

// y = x W^T for T rows on `stream` (matmul.cu); x [T, w.cols], y [T, w.rows], device pointers.
void matmul(const WeightMatrix& w, const float* x, float* y, int64_t T, Queue queue);
// y = silu(x gate^T) * (x up^T) in one pass (matmul.cu), where it applies: T = 1, gate and up of one
// fused-GEMV format and shape, each on the classic kernel alone, GemvOptions::paired_mlp. False otherwise
// (nothing queued).
bool matmul_silu_mul(const WeightMatrix& gate, const WeightMatrix& up, const float* x, float* y, int64_t T,
                     Queue queue);
// ys[i] = x ws[i]^T for 2..kMaxGroupedMatmuls matrices of one fused-GEMV format and width in one classic
// GEMV grid (matmul.cu), where it applies: T = 1, GemvOptions::grouped, each matrix on the classic kernel
// alone. False otherwise (nothing queued).
constexpr size_t kMaxGroupedMatmuls = 4;
bool matmul_grouped(std::span<const WeightMatrix* const> ws, const float* x, std::span<float* const> ys,
                    int64_t T, Queue queue);

}  // namespace mtplx::cuda

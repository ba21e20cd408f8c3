// Step graphs: the ops of one decode / verify / draft step recorded once with stream capture and replayed
// as one cudaGraphLaunch, so the host no longer queues hundreds of kernels per step. What changes from
// step to step (token ids, base position) lives in a StepParams block in device memory that the recorded
// kernels read; replay() rewrites it with one tiny kernel, queued on the same stream just before the graph
// (no host sync, no allocation), which also copies the step's input rows into the graph's input tensor.
#include <algorithm>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/matmul_mma.h"

namespace mtplx {
namespace cuda {
namespace {

// Ids of rows [first, first + count) of a step read from token slots in device memory.
struct SlotSource {
  const int32_t* ids = nullptr;
  int first = 0;
  int count = 0;
};

// Sets a step graph's ids and base position, and copies n floats of its input (src -> dst) if any.
// A slot holding -1 (a pick or draw from a row without comparable values) enters as id 0 so the step stays
// in bounds; the cycle's read of the slots (TokenSlots::read, or the device sampler's acceptance) reports
// the -1 before any token is emitted.
__global__ void set_params_kernel(StepParams* params, StepParams values, int count, SlotSource slots,
                                  const float* src, float* dst, int64_t n) {
  if (threadIdx.x == 0) params->position = values.position;
  for (int i = threadIdx.x; i < count; i += blockDim.x) {
    const int from_slot = i - slots.first;
    params->tokens[i] =
        from_slot >= 0 && from_slot < slots.count ? max(slots.ids[from_slot], 0) : values.tokens[i];
  }
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}

// cache rows [position, position + rows) = src.
__global__ void write_cache_kernel(const float* src, float* cache, int64_t rows, int64_t cols,
                                   Position position) {
  begin_dependent();
  const int64_t n = rows * cols;
  float* dst = cache + position.get() * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    dst[i] = src[i];
}

struct CudaGraph final : Backend::Graph {
  ~CudaGraph() override {
    if (exec != nullptr) cudaGraphExecDestroy(exec);
  }
  cudaGraphExec_t exec = nullptr;
  std::shared_ptr<Pool> pool;    // the memory its kernels use
  std::shared_ptr<void> params;  // its StepParams
  size_t tokens = 0;
};

}  // namespace
}  // namespace cuda

void CudaBackend::set_graphs(bool on) {
  ctx_->graphs_enabled = on;
}

void CudaBackend::set_pdl(bool on) {
  ctx_->pdl = on;
}

void CudaBackend::set_gemv(bool classic, int batch, int warps, int words) {
  ctx_->gemv.classic = classic;
  ctx_->gemv.batch = batch;
  ctx_->gemv.warps = warps;
  ctx_->gemv.words = words;
}

void CudaBackend::set_gemv_wide8_from(int rows) {
  ctx_->gemv.wide8_from = rows;
}

void CudaBackend::set_gemv_wide4_from(int rows) {
  ctx_->gemv.wide4_from = rows;
}

void CudaBackend::set_gemv_pipelined(bool on) {
  ctx_->gemv.pipelined = on;
}

void CudaBackend::set_gemv_mma_from(int rows) {
  ctx_->gemv.mma_from = rows;
}

void CudaBackend::set_gemv_mma_large_from(int rows) {
  ctx_->gemv.mma_large_from = rows;
}

void CudaBackend::set_paired_mlp(bool on) {
  ctx_->gemv.paired_mlp = on;
}

void CudaBackend::set_grouped_matmuls(bool on) {
  ctx_->gemv.grouped = on;
}

void CudaBackend::set_gemv_register_bound(int bound) {
  require(bound >= 0 && bound <= 2, "internal error: GEMV register bound is 0, 1 or 2");
  ctx_->gemv.register_bound = bound;
}

void CudaBackend::set_gemv_early(int mode) {
  ctx_->gemv.early = mode;
}

void CudaBackend::set_graph_input_in_params(bool on) {
  ctx_->graph_input_in_params = on;
}

void CudaBackend::set_mma_gemm(bool on, int tile_rows) {
  ctx_->mma_gemm = on;
  ctx_->mma_tile_rows = tile_rows == 128 ? 128 : 64;
}

void CudaBackend::set_wgmma_gemm(bool on) {
  ctx_->wgmma_gemm = on;
}

bool CudaBackend::runs_wgmma_gemm(const WeightMatrix& w, int64_t T) const {
  return cuda::gemm_wgmma_supported(w, T, *ctx_);
}

void CudaBackend::set_attention_tiles(bool on) {
  ctx_->attention_tiles = on;
}

void CudaBackend::set_attention_mma(bool on) {
  ctx_->attention_mma = on;
}

void CudaBackend::set_vector_norms(bool on) {
  ctx_->vector_norms = on;
}

void CudaBackend::set_attention_splits(bool on) {
  ctx_->attention_splits = on;
}

void CudaBackend::set_concurrent_matmuls(bool on) {
  ctx_->concurrent_matmuls = on;
}

bool CudaBackend::graphs() const {
  return ctx_->graphs_enabled;
}

void CudaBackend::begin_capture(std::span<const int32_t> tokens, int64_t base_position) {
  if (ctx_->capture) fail("internal error: cuda backend: nested step-graph capture");
  require(tokens.size() <= static_cast<size_t>(cuda::kGraphTokens),
          "internal error: cuda backend: too many tokens for a step graph");
  cuda::Capture capture;
  capture.tokens = tokens;
  capture.base = base_position;
  capture.pool = std::make_shared<cuda::Pool>();
  capture.params = cuda::Pool::get(capture.pool, sizeof(cuda::StepParams));
  // Relaxed: the graph's pool may cudaMalloc a block while the capture is open.
  MTPLX_CUDA_CHECK(cudaStreamBeginCapture(ctx_->stream, cudaStreamCaptureModeRelaxed));
  ctx_->capture = std::move(capture);
}

std::unique_ptr<Backend::Graph> CudaBackend::end_capture() {
  if (!ctx_->capture) fail("internal error: cuda backend: end_capture without a capture");
  auto graph = std::make_unique<cuda::CudaGraph>();
  graph->pool = ctx_->capture->pool;
  graph->params = ctx_->capture->params;
  graph->tokens = ctx_->capture->tokens.size();
  ctx_->capture.reset();
  cudaGraph_t recorded = nullptr;
  MTPLX_CUDA_CHECK(cudaStreamEndCapture(ctx_->stream, &recorded));
  const cudaError_t status = cudaGraphInstantiate(&graph->exec, recorded, 0);
  cudaGraphDestroy(recorded);
  MTPLX_CUDA_CHECK(status);
  return graph;
}

void CudaBackend::replay(Graph& graph, std::span<const int32_t> tokens, int64_t base_position,
                         const Tensor* input, Tensor* graph_input, const SlotRows* slot_rows) {
  auto& g = static_cast<cuda::CudaGraph&>(graph);
  if (tokens.size() != g.tokens) fail("internal error: cuda backend: step graph replayed with another width");
  if (input != nullptr &&
      (graph_input == nullptr || input->rows != graph_input->rows || input->cols != graph_input->cols))
    fail("internal error: cuda backend: step graph input of another shape");
  const bool in_params = input != nullptr && ctx_->graph_input_in_params;
  if (input != nullptr && !in_params) copy_rows(*input, *graph_input, 0);
  cuda::StepParams values{};
  values.position = base_position;
  std::copy(tokens.begin(), tokens.end(), values.tokens);
  cuda::SlotSource slots;
  if (slot_rows != nullptr && slot_rows->count > 0) {
    require(
        slot_rows->first_row >= 0 && slot_rows->first_row + slot_rows->count <= static_cast<int>(g.tokens),
        "internal error: cuda backend: slot rows outside the step");
    slots = {cuda::slot_ids(*slot_rows->slots, slot_rows->first_slot, slot_rows->count), slot_rows->first_row,
             slot_rows->count};
  }
  cuda::set_params_kernel<<<1, in_params ? 256 : 32, 0, ctx_->stream>>>(
      static_cast<cuda::StepParams*>(g.params.get()), values, static_cast<int>(tokens.size()), slots,
      in_params ? input->data : nullptr, in_params ? graph_input->data : nullptr,
      in_params ? input->numel() : 0);
  cuda::check_launch("set_params");
  MTPLX_CUDA_CHECK(cudaGraphLaunch(g.exec, ctx_->stream));
}

void CudaBackend::write_cache(const Tensor& src, Tensor& cache, int64_t position) {
  if (!ctx_->capture) {
    copy_rows(src, cache, position);
    return;
  }
  if (!(src.cols == cache.cols && position >= 0 && position + src.rows <= cache.rows))
    fail("internal error: cuda backend: write_cache out of range");
  if (src.numel() == 0) return;
  cuda::launch(cuda::write_cache_kernel, cuda::blocks_for(src.numel(), 256), 256, 0, ctx_->queue(), src.data,
               cache.data, src.rows, src.cols, ctx_->position(position));
  cuda::check_launch("write_cache");
}

}  // namespace mtplx

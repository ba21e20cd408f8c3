// The CUDA backend: fp32 activations in device memory, weights uploaded once (prepare_weight), every op a
// kernel on one stream. Numerics follow the CPU backend (fp32 arithmetic and accumulation, dequantized
// weights), so the two agree to float rounding.
//
// Memory: activations come from a caching pool (no cudaMalloc per op); a Tensor's storage returns its
// block to the pool when the last reference goes. All work is ordered on the backend's stream, so a block
// reused by the next op is safe without a host sync. download() is the only op that waits for the device.
//
// Decode speed (graph.cu): steps of a few rows are recorded as CUDA graphs and replayed (Backend::Graph);
// kernels read token ids and the base position from device memory, so one graph serves every step, and
// memory allocated while recording belongs to the graph. Every kernel is launched with programmatic
// dependent launch, so the next kernel's launch overlaps the previous one's tail.
//
// This header includes no CUDA headers: the CLI and tests use it from plain C++.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"

namespace mtplx {

namespace cuda {
struct Context;  // stream, pool, uploaded weights (cuda_context.h)
}

// Whether a CUDA device can be used from this process (driver present, at least one device).
bool cuda_device_present();
// "NVIDIA H100 80GB HBM3, 132 SMs, 79.1 GiB" or the reason there is none.
std::string cuda_device_description();

// Device-to-device copy bandwidth (bytes read + bytes written per second): a grid-stride 16-byte copy
// kernel over `bytes` (larger than L2), best of `passes`, timed with CUDA events. The roofline for
// memory-bound decode.
double cuda_copy_bandwidth(size_t bytes, int passes);

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device = 0);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string_view name() const override { return "cuda"; }
  // Waits until every queued op has finished (benchmarks; tests).
  void synchronize();
  // Bytes held by uploaded weights and by the activation pool.
  size_t weight_bytes() const;
  size_t pool_bytes() const;
  // The raw stream (cudaStream_t) for benchmark kernels queued beside the backend's ops.
  void* stream() const;

  Tensor alloc(int64_t rows, int64_t cols) override;
  Tensor upload(std::span<const float> host, int64_t rows, int64_t cols) override;
  void download(const Tensor& src, std::span<float> host) override;
  void fill(Tensor& dst, float value) override;
  void copy_rows(const Tensor& src, Tensor& dst, int64_t dst_row) override;
  void copy_blocks(std::span<const BlockCopy> blocks) override;
  void copy_columns(const Tensor& src, int64_t src_col, int64_t src_stride, Tensor& dst, int64_t dst_col,
                    int64_t dst_stride, int64_t width, int64_t count) override;
  WeightMatrix prepare_weight(const WeightMatrix& host) override;

  void embed(const WeightMatrix& table, std::span<const int32_t> tokens, Tensor& out) override;
  void matmul(const WeightMatrix& w, const Tensor& x, Tensor& y) override;
  void matmul_many(std::span<const WeightMatrix* const> ws, const Tensor& x,
                   std::span<Tensor* const> ys) override;
  void rms_norm(const Tensor& x, const Tensor& gain, float eps, Tensor& y) override;
  void add(const Tensor& a, const Tensor& b, Tensor& out) override;
  void add_rms_norm(const Tensor& a, const Tensor& b, const Tensor& gain, float eps, Tensor& sum,
                    Tensor& normed) override;
  void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override;
  // One row: gate, up and silu in one GEMV pass (the paired classic kernel) where the classic kernel serves
  // those codes (8-bit, BF16); else the default.
  void matmul_silu_mul(const WeightMatrix& gate, const WeightMatrix& up, const Tensor& x,
                       Tensor& out) override;

  void rope(Tensor& x, int heads, int head_dim, int rot_dim, double theta, int64_t pos0) override;
  void attention(const AttentionArgs& args) override;
  void attention_prepare(const AttentionPrepareArgs& args) override;
  void sigmoid_mul(Tensor& x, const Tensor& gate) override;

  void conv1d_silu(const Tensor& x, const Tensor& weight, Tensor& state, Tensor& out,
                   Tensor* row_states) override;
  void gdn_gates(const Tensor& a, const Tensor& b, const Tensor& a_log, const Tensor& dt_bias, Tensor& g,
                 Tensor& beta) override;
  void l2_norm(Tensor& x, int64_t group, float scale) override;
  void gdn_prepare(const GdnPrepareArgs& args) override;
  void gdn_recurrent(const GdnArgs& args) override;
  // Runs the token-by-token recurrence over all T rows (the same function), with a warp per 32 value
  // columns holding all Dk state rows (gdn.cu); a chunked tensor-core form is future work.
  void gdn_chunked(const GdnArgs& args) override;
  void gated_rms_norm(const Tensor& x, const Tensor& z, const Tensor& gain, float eps, Tensor& out) override;

  void write_cache(const Tensor& src, Tensor& cache, int64_t position) override;
  // The argmax of each logits row on the device (greedy.cu); only the ids come back.
  std::vector<int32_t> greedy_tokens(const Tensor& logits) override;
  // Slots in device memory; greedy_pick queues the same kernels as greedy_tokens, writing the ids there.
  std::unique_ptr<TokenSlots> token_slots(int count, std::span<const int32_t> id_map) override;
  void greedy_pick(const Tensor& logits, TokenSlots& slots, int first, bool mapped) override;
  // Each row's k best entries on the device (top_k.cu); only they come back. Falls back to the host
  // selection when k is too large for the merge block (k * chunks > 4096: k > 132 for a 248k vocabulary).
  void top_k(const Tensor& logits, int k, std::vector<ScoredToken>& out) override;
  // Draws and acceptance on the device (sampler.cu), in the top-k selection's last kernel: a warp per row
  // filters, one thread draws and accepts; only the tokens and the accepted count come back. Null where a
  // filter's k is past the top-k kernels' limit for its row width (k > 132 for a 248k vocabulary): the host
  // path serves those.
  std::unique_ptr<DeviceSampler> device_sampler(const TopKFilter& target, const TopKFilter* draft,
                                                std::span<const int32_t> draft_ids, int max_drafts) override;
  // Step graphs (graph.cu). On by default; off makes every op queue from the host (benchmarks compare).
  void set_graphs(bool on);
  // Programmatic dependent launch of every kernel (on by default). Benchmarks compare.
  void set_pdl(bool on);
  // The fused GEMV for T <= 8 rows: the word-interleaved kernel (matmul_gemv.cu, the default) or the
  // classic one (matmul.cu); batch, warps and words force the interleaved kernel's units per lane and
  // batch (1, 2, 4, 8), warps per row group (1, 2, 4) and words per unit of 8-bit codes (2, 4); 0 = chosen
  // by shape (with classic, warps forces the classic kernel's warps per row group). Benchmarks and tests
  // compare.
  void set_gemv(bool classic, int batch = 0, int warps = 0, int words = 0);
  // Where either GEMV loads its first weights: before the wait on the previous kernel (PDL; 0, the default,
  // or 1), or after it (-1). Benchmarks and tests compare.
  void set_gemv_early(int mode);
  // The interleaved GEMV at 2-8 rows as compiled for more blocks an SM (fewer registers): bound 1 (the
  // default: 5 blocks from 4 rows on), 2 (8 blocks at 2-3 rows, 6 at 4, 5 past) or 0 (the compiler's
  // choice, as before 2026-11-29). Benchmarks and tests compare.
  void set_gemv_register_bound(int bound);
  // The fewest rows (T) at which 8-bit codes take the interleaved kernel by default: 2 (5 before
  // 2026-11-26, when 8-bit T = 2..4 stayed on the classic kernel). Benchmarks compare.
  void set_gemv_wide8_from(int rows);
  // The same for 4-bit codes: 1 (2 before 2026-11-27, when a 4-bit matrix at one row took the classic
  // kernel). Benchmarks compare.
  void set_gemv_wide4_from(int rows);
  // Whether the classic GEMV issues a lane's next chunk before this chunk's math (on by default).
  // Benchmarks and tests compare.
  void set_gemv_pipelined(bool on);
  // The fewest rows (T) at which 8- and 4-bit codes take the tensor-core kernel (matmul_imma.cu) instead
  // of the fp32 GEMVs; 0 = never. Benchmarks and tests compare.
  void set_gemv_mma_from(int rows);
  // The same for matrices of at least 5,120 rows and columns: 3 by default, 0 = never. Benchmarks compare.
  void set_gemv_mma_large_from(int rows);
  // matmul_silu_mul of one row as one paired GEMV (on by default) or as matmul_many + silu_mul. Benchmarks
  // and tests compare.
  void set_paired_mlp(bool on);
  // matmul_many of one row in one classic-GEMV grid when its matrices share a format and width (on by
  // default), else as before (parallel streams, or one after another). Benchmarks and tests compare.
  void set_grouped_matmuls(bool on);
  // Split-K attention for decode widths over long caches, and matmul_many's matmuls on parallel streams
  // (both on by default; benchmarks compare).
  void set_attention_splits(bool on);
  void set_concurrent_matmuls(bool on);
  // Matmuls of more than 8 rows (prefill) on tensor cores (matmul_mma.cu: 8-bit and 4-bit codes, BF16; on
  // by default) or all on the fp32 tiled GEMM of matmul.cu; tile_rows: T rows per block of the tensor-core
  // GEMM, 64 (two blocks per SM, the default) or 128 (one; BF16 weights always), for the mma.sync GEMM only
  // (see set_wgmma_gemm). Benchmarks and tests compare.
  void set_mma_gemm(bool on, int tile_rows = 64);
  // Under set_mma_gemm(true): 8/4-bit codes on the warpgroup-MMA GEMM (matmul_wgmma.cu; the same arithmetic
  // on sm_90a's wgmma; on by default) where the device runs it (compute capability 9.0), else on the
  // mma.sync GEMM. Benchmarks and tests compare.
  void set_wgmma_gemm(bool on);
  // Whether the warpgroup GEMM can serve a matmul of T > 8 rows of `w` on this device (whatever the
  // set_* switches say).
  bool runs_wgmma_gemm(const WeightMatrix& w, int64_t T) const;
  // gdn_chunked token by token (below set_gdn_chunks' threshold, or with it off) on the warp-per-columns
  // kernel (on by default) or the block kernel of gdn_recurrent. Benchmarks and tests compare.
  void set_gdn_columns(bool on);
  // gdn_chunked in chunks of 64 tokens with matrix products (gdn_chunks.cu; on by default) from `from_rows`
  // rows (and never below 64), or token by token on the kernel set_gdn_columns picks. Benchmarks and tests
  // compare.
  void set_gdn_chunks(bool on, int64_t from_rows = 1024);
  // attention over more than 8 rows with a block per 64 query vectors of one KV head, K/V tiles in shared
  // memory (attention_mma.cu or attention_prefill.cu, below; on by default), or a block per row and head as
  // for decode.
  void set_attention_tiles(bool on);
  // Those tiles on tensor cores (attention_mma.cu: fp16 hi/lo halves, fp32 sums; on by default) or in fp32
  // on the CUDA cores (attention_prefill.cu). Benchmarks and tests compare.
  void set_attention_mma(bool on);
  // rms_norm / add_rms_norm rows held in registers as float4 (on by default) or the earlier loop kernels.
  void set_vector_norms(bool on);
  // download() of 64 KiB and more through page-locked staging memory (on by default) or straight into the
  // caller's pageable memory. Benchmarks and tests compare.
  void set_pinned_downloads(bool on);
  bool graphs() const override;
  void begin_capture(std::span<const int32_t> tokens, int64_t base_position) override;
  std::unique_ptr<Graph> end_capture() override;
  // Ids in token slots are copied into the graph's ids by the kernel that sets them (no host sync).
  void replay(Graph& graph, std::span<const int32_t> tokens, int64_t base_position, const Tensor* input,
              Tensor* graph_input, const SlotRows* slot_rows = nullptr) override;
  // Whether replay copies a graph's input rows in the kernel that sets the ids (on by default) or with a
  // copy_rows before it (as before 2026-11-27). Benchmarks and tests compare.
  void set_graph_input_in_params(bool on);

 private:
  std::unique_ptr<cuda::Context> ctx_;
};

}  // namespace mtplx

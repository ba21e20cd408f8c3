// The CPU backend: fp32 activations, multi-threaded, the numerical reference for the other backends.
#pragma once

#include <memory>

#include "backend/backend.h"
#include "backend/cpu/matmul.h"
#include "base/huge_pages.h"
#include "base/thread_pool.h"

namespace mtplx {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads = 0);

  std::string_view name() const override { return "cpu"; }
  ThreadPool& pool() { return pool_; }
  // Instruction-set path of the matrix kernels (Auto: the widest this CPU runs); benchmarks compare paths.
  // Throws mtplx::Error when `isa` is not available here.
  void set_matmul_isa(cpu::Isa isa);
  // How decode and verify multiply 4/8-bit weights (cpu::QuantDot; Exact unless set). Int8 needs the
  // weights' int8 tiles, which prepare_weight builds while Int8 is set: set it before loading a model.
  void set_quant_dot(cpu::QuantDot dot) { matmul_.dot = dot; }
  // Both at once (a path from cpu::parse_matmul_path); throws like set_matmul_isa.
  void set_matmul_options(const cpu::MatmulOptions& options);
  const cpu::MatmulOptions& matmul_options() const { return matmul_; }

  Tensor alloc(int64_t rows, int64_t cols) override;
  Tensor upload(std::span<const float> host, int64_t rows, int64_t cols) override;
  void download(const Tensor& src, std::span<float> host) override;
  // Selects in place: the rows are already host memory.
  void top_k(const Tensor& logits, int k, std::vector<ScoredToken>& out) override;
  void fill(Tensor& dst, float value) override;
  void copy_rows(const Tensor& src, Tensor& dst, int64_t dst_row) override;
  void copy_blocks(std::span<const BlockCopy> blocks) override;
  void copy_columns(const Tensor& src, int64_t src_col, int64_t src_stride, Tensor& dst, int64_t dst_col,
                    int64_t dst_stride, int64_t width, int64_t count) override;
  // The mmapped weight as it is; with QuantDot::Int8 on a CPU that runs it, 4/8-bit matrices also get their
  // int8 tiles (cpu::with_int8_tiles: a second copy of those weights in memory).
  WeightMatrix prepare_weight(const WeightMatrix& host) override;
  WeightMatrix prepare_table(const WeightMatrix& host) override { return host; }

  void embed(const WeightMatrix& table, std::span<const int32_t> tokens, Tensor& out) override;
  void matmul(const WeightMatrix& w, const Tensor& x, Tensor& y) override;
  void matmul_many(std::span<const WeightMatrix* const> ws, const Tensor& x,
                   std::span<Tensor* const> ys) override;
  void rms_norm(const Tensor& x, const Tensor& gain, float eps, Tensor& y) override;
  void add(const Tensor& a, const Tensor& b, Tensor& out) override;
  void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override;

  void rope(Tensor& x, int heads, int head_dim, int rot_dim, double theta, int64_t pos0) override;
  void attention(const AttentionArgs& args) override;
  void sigmoid_mul(Tensor& x, const Tensor& gate) override;

  void conv1d_silu(const Tensor& x, const Tensor& weight, Tensor& state, Tensor& out,
                   Tensor* row_states) override;
  void gdn_gates(const Tensor& a, const Tensor& b, const Tensor& a_log, const Tensor& dt_bias, Tensor& g,
                 Tensor& beta) override;
  void l2_norm(Tensor& x, int64_t group, float scale) override;
  void gdn_recurrent(const GdnArgs& args) override;
  void gdn_chunked(const GdnArgs& args) override;
  void gated_rms_norm(const Tensor& x, const Tensor& z, const Tensor& gain, float eps, Tensor& out) override;

 private:
  ThreadPool pool_;
  cpu::MatmulOptions matmul_;
  HugePageArena tile_arena_;  // the int8 tiles, in the order the weights are prepared
};

}  // namespace mtplx

// A Backend that forwards every op to another one and adds up the wall time of each kind of op, waiting
// for the device before and after each (so an op's time is its own; the waits cost a few microseconds an
// op, which is why only long runs such as a prefill are worth splitting this way). Benchmarks only.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>

#include "backend/backend.h"
#include "base/timing.h"

namespace mtplx::bench {

class OpTimer final : public Backend {
 public:
  OpTimer(Backend& inner, std::function<void()> wait) : inner_(inner), wait_(std::move(wait)) {}

  // Seconds per op name since the last clear().
  const std::map<std::string, double>& seconds() const { return seconds_; }
  void clear() { seconds_.clear(); }

  std::string_view name() const override { return inner_.name(); }
  Tensor alloc(int64_t rows, int64_t cols) override { return inner_.alloc(rows, cols); }
  Tensor upload(std::span<const float> host, int64_t rows, int64_t cols) override {
    return inner_.upload(host, rows, cols);
  }
  void download(const Tensor& src, std::span<float> host) override {
    timed("download", [&] { inner_.download(src, host); });
  }
  void fill(Tensor& dst, float value) override {
    timed("fill", [&] { inner_.fill(dst, value); });
  }
  void copy_rows(const Tensor& src, Tensor& dst, int64_t dst_row) override {
    timed("copy_rows", [&] { inner_.copy_rows(src, dst, dst_row); });
  }
  void copy_blocks(std::span<const BlockCopy> blocks) override {
    timed("copy_blocks", [&] { inner_.copy_blocks(blocks); });
  }
  void copy_columns(const Tensor& src, int64_t src_col, int64_t src_stride, Tensor& dst, int64_t dst_col,
                    int64_t dst_stride, int64_t width, int64_t count) override {
    timed("copy_columns",
          [&] { inner_.copy_columns(src, src_col, src_stride, dst, dst_col, dst_stride, width, count); });
  }
  WeightMatrix prepare_weight(const WeightMatrix& host) override { return inner_.prepare_weight(host); }
  WeightMatrix prepare_table(const WeightMatrix& host) override { return inner_.prepare_table(host); }
  void embed(const WeightMatrix& table, std::span<const int32_t> tokens, Tensor& out) override {
    timed("embed", [&] { inner_.embed(table, tokens, out); });
  }
  void matmul(const WeightMatrix& w, const Tensor& x, Tensor& y) override {
    timed("matmul", [&] { inner_.matmul(w, x, y); });
  }
  void matmul_many(std::span<const WeightMatrix* const> ws, const Tensor& x,
                   std::span<Tensor* const> ys) override {
    timed("matmul", [&] { inner_.matmul_many(ws, x, ys); });
  }
  void rms_norm(const Tensor& x, const Tensor& gain, float eps, Tensor& y) override {
    timed("rms_norm", [&] { inner_.rms_norm(x, gain, eps, y); });
  }
  void add(const Tensor& a, const Tensor& b, Tensor& out) override {
    timed("add", [&] { inner_.add(a, b, out); });
  }
  void add_rms_norm(const Tensor& a, const Tensor& b, const Tensor& gain, float eps, Tensor& sum,
                    Tensor& normed) override {
    timed("add_rms_norm", [&] { inner_.add_rms_norm(a, b, gain, eps, sum, normed); });
  }
  void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override {
    timed("silu_mul", [&] { inner_.silu_mul(gate, up, out); });
  }
  void rope(Tensor& x, int heads, int head_dim, int rot_dim, double theta, int64_t pos0) override {
    timed("rope", [&] { inner_.rope(x, heads, head_dim, rot_dim, theta, pos0); });
  }
  void attention(const AttentionArgs& args) override {
    timed("attention", [&] { inner_.attention(args); });
  }
  void attention_prepare(const AttentionPrepareArgs& args) override {
    timed("attention_prepare", [&] { inner_.attention_prepare(args); });
  }
  void sigmoid_mul(Tensor& x, const Tensor& gate) override {
    timed("sigmoid_mul", [&] { inner_.sigmoid_mul(x, gate); });
  }
  void conv1d_silu(const Tensor& x, const Tensor& weight, Tensor& state, Tensor& out,
                   Tensor* row_states) override {
    timed("conv1d_silu", [&] { inner_.conv1d_silu(x, weight, state, out, row_states); });
  }
  void gdn_gates(const Tensor& a, const Tensor& b, const Tensor& a_log, const Tensor& dt_bias, Tensor& g,
                 Tensor& beta) override {
    timed("gdn_gates", [&] { inner_.gdn_gates(a, b, a_log, dt_bias, g, beta); });
  }
  void l2_norm(Tensor& x, int64_t group, float scale) override {
    timed("l2_norm", [&] { inner_.l2_norm(x, group, scale); });
  }
  void gdn_prepare(const GdnPrepareArgs& args) override {
    timed("gdn_prepare", [&] { inner_.gdn_prepare(args); });
  }
  void gdn_recurrent(const GdnArgs& args) override {
    timed("gdn_recurrent", [&] { inner_.gdn_recurrent(args); });
  }
  void gdn_chunked(const GdnArgs& args) override {
    timed("gdn_chunked", [&] { inner_.gdn_chunked(args); });
  }
  void gated_rms_norm(const Tensor& x, const Tensor& z, const Tensor& gain, float eps, Tensor& out) override {
    timed("gated_rms_norm", [&] { inner_.gated_rms_norm(x, z, gain, eps, out); });
  }
  void write_cache(const Tensor& src, Tensor& cache, int64_t position) override {
    timed("write_cache", [&] { inner_.write_cache(src, cache, position); });
  }
  std::vector<int32_t> greedy_tokens(const Tensor& logits) override {
    std::vector<int32_t> ids;
    timed("greedy_tokens", [&] { ids = inner_.greedy_tokens(logits); });
    return ids;
  }

 private:
  template <typename Op>
  void timed(const char* what, Op&& op) {
    wait_();
    Stopwatch clock;
    op();
    wait_();
    seconds_[what] += clock.seconds();
  }

  Backend& inner_;
  std::function<void()> wait_;
  std::map<std::string, double> seconds_;
};

}  // namespace mtplx::bench

// Default implementations of the optional Backend ops: fused ops run as their parts; a backend without step
// graphs refuses them.
#include "backend/backend.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/row_pick.h"
#include "base/error.h"

namespace mtplx {

void pick_top_k(std::span<const float> rows, int64_t row_count, int64_t cols, int k,
                std::vector<ScoredToken>& out) {
  const auto width = static_cast<size_t>(k);
  out.assign(static_cast<size_t>(row_count) * width, ScoredToken{0.0f, -1});
  std::vector<ScoredToken> best;
  best.reserve(width);
  for (int64_t r = 0; r < row_count; ++r) {
    select_top_k(rows.subspan(static_cast<size_t>(r * cols), static_cast<size_t>(cols)), width, best);
    std::copy(best.begin(), best.end(), out.begin() + static_cast<ptrdiff_t>(r * k));
  }
}

std::vector<int32_t> Backend::greedy_tokens(const Tensor& logits) {
  std::vector<float> host(static_cast<size_t>(logits.numel()));
  download(logits, host);
  std::vector<int32_t> ids(static_cast<size_t>(logits.rows));
  for (int64_t r = 0; r < logits.rows; ++r) {
    const int64_t id = first_max_index(std::span<const float>(host).subspan(
        static_cast<size_t>(r * logits.cols), static_cast<size_t>(logits.cols)));
    require(id >= 0, "argmax of a row with no comparable entry (empty or all NaN)", "greedy_tokens");
    ids[static_cast<size_t>(r)] = static_cast<int32_t>(id);
  }
  return ids;
}

void TokenSlots::check_range(int first, int count) const {
  require(first >= 0 && count >= 0 && first + count <= size(),
          str("internal error: token slots [", first, ", ", first + count, ") of ", size()));
}

namespace {

// Token slots in host memory: the default for backends whose picks come to the host anyway.
class HostTokenSlots final : public TokenSlots {
 public:
  HostTokenSlots(int count, std::span<const int32_t> id_map)
      : ids_(static_cast<size_t>(count), 0), map_(id_map.begin(), id_map.end()) {}
  int size() const override { return static_cast<int>(ids_.size()); }
  std::span<const int32_t> read(int first, int count) override {
    check_range(first, count);
    return std::span<const int32_t>(ids_).subspan(static_cast<size_t>(first), static_cast<size_t>(count));
  }
  void write(int first, std::span<const int32_t> picks, bool mapped) {
    check_range(first, static_cast<int>(picks.size()));
    for (size_t r = 0; r < picks.size(); ++r) {
      const auto pick = static_cast<size_t>(picks[r]);
      require(!mapped || map_.empty() || pick < map_.size(),
              "internal error: greedy pick outside the id map");
      ids_[static_cast<size_t>(first) + r] = mapped && !map_.empty() ? map_[pick] : picks[r];
    }
  }

 private:
  std::vector<int32_t> ids_;
  std::vector<int32_t> map_;
};

}  // namespace

std::unique_ptr<TokenSlots> Backend::token_slots(int count, std::span<const int32_t> id_map) {
  require(count >= 0, "internal error: negative token slot count");
  return std::make_unique<HostTokenSlots>(count, id_map);
}

void Backend::greedy_pick(const Tensor& logits, TokenSlots& slots, int first, bool mapped) {
  auto* host = dynamic_cast<HostTokenSlots*>(&slots);
  require(host != nullptr, str("internal error: token slots of another backend given to ", name()));
  host->write(first, greedy_tokens(logits), mapped);
}

void Backend::top_k(const Tensor& logits, int k, std::vector<ScoredToken>& out) {
  require(k >= 0, str("top_k needs k >= 0, got ", k), "Backend::top_k");
  std::vector<float> host(static_cast<size_t>(logits.numel()));
  download(logits, host);
  pick_top_k(host, logits.rows, logits.cols, k, out);
}

std::unique_ptr<DeviceSampler> Backend::device_sampler(const TopKFilter&, const TopKFilter*,
                                                       std::span<const int32_t>, int) {
  return nullptr;
}

void Backend::matmul_many(std::span<const WeightMatrix* const> ws, const Tensor& x,
                          std::span<Tensor* const> ys) {
  require(ws.size() == ys.size(), "internal error: matmul_many needs one output per weight");
  for (size_t i = 0; i < ws.size(); ++i) matmul(*ws[i], x, *ys[i]);
}

void Backend::matmul_silu_mul(const WeightMatrix& gate, const WeightMatrix& up, const Tensor& x,
                              Tensor& out) {
  Tensor up_rows = alloc(x.rows, up.rows);
  const WeightMatrix* ws[] = {&gate, &up};
  Tensor* ys[] = {&out, &up_rows};
  matmul_many(ws, x, ys);
  silu_mul(out, up_rows, out);
}

void Backend::add_rms_norm(const Tensor& a, const Tensor& b, const Tensor& gain, float eps, Tensor& sum,
                           Tensor& normed) {
  add(a, b, sum);
  rms_norm(sum, gain, eps, normed);
}

void Backend::gdn_prepare(const GdnPrepareArgs& a) {
  const int64_t T = a.qkv->rows;
  const int64_t key_dim = a.q->cols, value_dim = a.v->cols;
  Tensor conv = alloc(T, a.qkv->cols);
  conv1d_silu(*a.qkv, *a.conv_weight, *a.conv_state, conv, a.conv_rows);
  copy_columns(conv, 0, 0, *a.q, 0, 0, key_dim, 1);
  copy_columns(conv, key_dim, 0, *a.k, 0, 0, key_dim, 1);
  copy_columns(conv, 2 * key_dim, 0, *a.v, 0, 0, value_dim, 1);
  l2_norm(*a.q, a.key_head_dim, 1.0f / std::sqrt(static_cast<float>(a.key_head_dim)));
  l2_norm(*a.k, a.key_head_dim, 1.0f);
  gdn_gates(*a.a, *a.b, *a.a_log, *a.dt_bias, *a.g, *a.beta);
}

void Backend::attention_prepare(const AttentionPrepareArgs& a) {
  const int D = a.head_dim;
  copy_columns(*a.qg, 0, 2 * D, *a.q, 0, D, D, a.heads);
  copy_columns(*a.qg, D, 2 * D, *a.gate, 0, D, D, a.heads);
  rms_norm(*a.q, *a.q_norm, a.eps, *a.q);
  rms_norm(*a.k, *a.k_norm, a.eps, *a.k);
  rope(*a.q, a.heads, D, a.rot_dim, a.theta, a.pos0);
  rope(*a.k, a.kv_heads, D, a.rot_dim, a.theta, a.pos0);
  write_cache(*a.k, *a.k_cache, a.pos0);
  write_cache(*a.v, *a.v_cache, a.pos0);
}

void Backend::begin_capture(std::span<const int32_t>, int64_t) {
  fail(str("internal error: the ", name(), " backend has no step graphs"));
}

std::unique_ptr<Backend::Graph> Backend::end_capture() {
  fail(str("internal error: the ", name(), " backend has no step graphs"));
}

void Backend::replay(Graph&, std::span<const int32_t>, int64_t, const Tensor*, Tensor*, const SlotRows*) {
  fail(str("internal error: the ", name(), " backend has no step graphs"));
}

}  // namespace mtplx

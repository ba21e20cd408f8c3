// The backend-op interface. The model math (src/model/) is written once against these ops; each backend
// (cpu/, cuda/) implements them. The CPU backend is the numerical reference for the others.
//
// Conventions: activations are fp32 tensors [rows = tokens, cols = features], row-major. Weight matrices
// are WeightMatrix values returned by prepare_weight(). Ops write their outputs fully; in-place ops say so.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "backend/row_pick.h"
#include "backend/tensor.h"
#include "backend/weight.h"

namespace mtplx {

// Token ids kept where a backend picked them (Backend::token_slots): drafts picked (greedy_pick) or drawn
// (DeviceSampler::draw_draft_into) there feed the next draft step and the verify's rows without a host
// round trip each, so a cycle's drafts cost no wait of their own.
class TokenSlots {
 public:
  virtual ~TokenSlots() = default;
  virtual int size() const = 0;
  // The ids in slots [first, first + count), once the ops queued before have run (a wait for the device).
  // Valid until the next read.
  virtual std::span<const int32_t> read(int first, int count) = 0;
  // Throws unless slots [first, first + count) exist.
  void check_range(int first, int count) const;
};

// Rows [first_row, first_row + count) of a step whose ids are slots [first_slot, first_slot + count) of
// `slots` rather than the host span's entries there (placeholders, in range).
struct SlotRows {
  TokenSlots* slots = nullptr;
  int first_slot = 0;
  int first_row = 0;
  int count = 0;
};

// A sampler config whose distribution a top-k cut decides (decode/sampling.h's Sampler::candidates_needed
// > 0): logits / temperature -> the k best (row_pick.h's rank) -> top-p -> min-p -> renormalised, the same
// steps and fp32/fp64 arithmetic as Sampler::filter_top_k.
struct TopKFilter {
  int k = 0;              // > 0
  float temperature = 1;  // > 0
  float top_p = 1;
  float min_p = 0;
  int64_t columns = 0;  // entries per logits row: the vocabulary, or a draft head's rows
};

// Draws and speculative acceptance on the device (Backend::device_sampler). The rules are decode/accept.h's
// and decode/sampling.h's, computed in the same order, so the same uniforms give the same tokens as the
// host path (up to the last bit of an exp).
class DeviceSampler {
 public:
  virtual ~DeviceSampler() = default;
  // Draft `step` (0-based within a cycle) from a draft-head logits row [1, head rows]: its filtered
  // distribution q_step is kept on the device for accept(); the token is drawn with `uniform` in [0, 1) by
  // the categorical rule of decode/rng.h (ascending ids, fp64 running sum). Returns the token id.
  virtual int32_t draw_draft(const Tensor& head_logits, int step, float uniform) = 0;
  // The same draw left in token slots of this backend (Backend::token_slots, made with this sampler's
  // draft_ids as their id map) at `slot`, with no wait for the device: the next draft step and accept()
  // read it there.
  virtual void draw_draft_into(const Tensor& head_logits, int step, float uniform, TokenSlots& slots,
                               int slot) = 0;
  // Target rows `logits` [drafts.size() + 1, vocab] of a verify (or one row and no drafts: a plain draw):
  // draft i is tested with uniforms[i], the recovered or bonus token drawn with the next one (at most
  // drafts.size() + 1 are used). Drafts come from draw_draft or draw_draft_into in this cycle, or are greedy
  // when the sampler was made without a draft filter. Writes the emitted tokens (accepted drafts, then the
  // recovered or bonus token) to `tokens` [drafts.size() + 1] and returns the accepted count. With
  // `draft_slots`, the drafts' ids are its slots 0 .. drafts.size() - 1 (the span's entries are
  // placeholders).
  virtual int accept(const Tensor& logits, std::span<const int32_t> drafts, std::span<const float> uniforms,
                     std::span<int32_t> tokens, TokenSlots* draft_slots = nullptr) = 0;
};

// Arguments of the gated delta rule over T tokens (one sequence), per value head hv using key head
// hv / (Hv / Hk). All tensors fp32.
struct GdnArgs {
  const Tensor* q = nullptr;     // [T, Hk * Dk], already l2-normalised and scaled by Dk^-0.5
  const Tensor* k = nullptr;     // [T, Hk * Dk], already l2-normalised
  const Tensor* v = nullptr;     // [T, Hv * Dv]
  const Tensor* g = nullptr;     // [T, Hv] log-decay (<= 0)
  const Tensor* beta = nullptr;  // [T, Hv]
  Tensor* state = nullptr;       // [Hv, Dk * Dv] recurrent state S[d, v], updated in place
  Tensor* out = nullptr;         // [T, Hv * Dv]
  // Optional [R, Hv * Dk * Dv], R <= T: the state after each of rows 0..R-1 (speculative verify; the state
  // after the last row is `state` itself, so a verify captures T - 1 rows).
  Tensor* row_states = nullptr;
  int key_heads = 0;
  int value_heads = 0;
  int key_dim = 0;    // Dk
  int value_dim = 0;  // Dv
};

// The GDN layer's ops between its input projections and the recurrence, on T rows: conv1d_silu over qkv
// (conv_state updated; conv_rows, when given, gets the state after each row), the result split into
// q | k | v, q and k l2-normed per head of key_dim values (q also scaled by key_dim^-0.5), and gdn_gates.
struct GdnPrepareArgs {
  const Tensor* qkv = nullptr;          // [T, 2 * key_dim + value_dim] (the q_proj|k_proj|v_proj columns)
  const Tensor* conv_weight = nullptr;  // [C, K]
  Tensor* conv_state = nullptr;         // [K-1, C]
  Tensor* conv_rows = nullptr;          // optional [R <= T, (K-1) * C]: as conv1d_silu's row_states
  const Tensor* a = nullptr;            // [T, Hv]
  const Tensor* b = nullptr;            // [T, Hv]
  const Tensor* a_log = nullptr;        // [Hv]
  const Tensor* dt_bias = nullptr;      // [Hv]
  Tensor* q = nullptr;                  // [T, key_dim]
  Tensor* k = nullptr;                  // [T, key_dim]
  Tensor* v = nullptr;                  // [T, value_dim]
  Tensor* g = nullptr;                  // [T, Hv]
  Tensor* beta = nullptr;               // [T, Hv]
  int key_head_dim = 0;                 // Dk: the l2-norm group
};

// Causal softmax attention of T query rows at positions pos0..pos0+T-1 over the cache rows [0, pos0 + t].
struct AttentionArgs {
  const Tensor* q = nullptr;        // [T, Hq * D]
  const Tensor* k_cache = nullptr;  // [capacity, Hkv * D]
  const Tensor* v_cache = nullptr;  // [capacity, Hkv * D]
  Tensor* out = nullptr;            // [T, Hq * D]
  int64_t pos0 = 0;
  int heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  float scale = 0;
  const Tensor* gate = nullptr;  // [T, Hq * D] if set: out *= sigmoid(gate) (Qwen3.5's output gate)
};

// The attention layer's ops between its projections and the attention, on T rows at positions pos0..:
// the q_proj output split per head into query and gate, query and k RMS-normed per head (gains of
// head_dim values), NeoX RoPE of the first rot_dim dims of both, and k, v appended to the caches at pos0.
struct AttentionPrepareArgs {
  const Tensor* qg = nullptr;      // [T, heads * 2 * head_dim]: per head [query ; gate]
  Tensor* k = nullptr;             // [T, kv_heads * head_dim], normed and rotated in place
  const Tensor* v = nullptr;       // [T, kv_heads * head_dim]
  const Tensor* q_norm = nullptr;  // [head_dim]
  const Tensor* k_norm = nullptr;  // [head_dim]
  Tensor* q = nullptr;             // [T, heads * head_dim]
  Tensor* gate = nullptr;          // [T, heads * head_dim]
  Tensor* k_cache = nullptr;       // [capacity, kv_heads * head_dim]
  Tensor* v_cache = nullptr;
  float eps = 0;
  int heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int rot_dim = 0;
  double theta = 0;
  int64_t pos0 = 0;
};

// One contiguous block of `count` floats to copy (Backend::copy_blocks).
struct BlockCopy {
  const float* src;
  float* dst;
  int64_t count;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;

  // --- memory
  virtual Tensor alloc(int64_t rows, int64_t cols) = 0;  // contents undefined
  virtual Tensor upload(std::span<const float> host, int64_t rows, int64_t cols) = 0;
  virtual void download(const Tensor& src, std::span<float> host) = 0;
  virtual void fill(Tensor& dst, float value) = 0;
  // dst rows [dst_row, dst_row + src.rows) = src (same cols).
  virtual void copy_rows(const Tensor& src, Tensor& dst, int64_t dst_row) = 0;
  // Every block of this backend's memory copied (no block overlaps another's destination), in one launch
  // where the backend can: a rollback restores two state tensors per GDN layer at once.
  virtual void copy_blocks(std::span<const BlockCopy> blocks) = 0;
  // For every row r and i < count: dst[r, dst_col + i*dst_stride + j] = src[r, src_col + i*src_stride + j],
  // j < width. Splits and concatenations of column blocks (q/gate per head, q|k|v, [emb | hidden]).
  virtual void copy_columns(const Tensor& src, int64_t src_col, int64_t src_stride, Tensor& dst,
                            int64_t dst_col, int64_t dst_stride, int64_t width, int64_t count) = 0;
  // A weight in this backend's memory (CPU: the same mmapped bytes; CUDA: an uploaded copy).
  virtual WeightMatrix prepare_weight(const WeightMatrix& host) = 0;
  // A table only read row by row (embed(), never matmul): by default the same as prepare_weight; a backend
  // may skip what only products need (the CPU's int8 tiles).
  virtual WeightMatrix prepare_table(const WeightMatrix& host) { return prepare_weight(host); }

  // --- dense ops
  virtual void embed(const WeightMatrix& table, std::span<const int32_t> tokens, Tensor& out) = 0;
  virtual void matmul(const WeightMatrix& w, const Tensor& x, Tensor& y) = 0;  // y = x W^T
  // ys[i] = x ws[i]^T for several weights sharing one input (merged projections; a backend may run them as
  // one pass). The same results as one matmul per weight.
  virtual void matmul_many(std::span<const WeightMatrix* const> ws, const Tensor& x,
                           std::span<Tensor* const> ys);
  // y = x * rsqrt(mean(x^2) + eps) * gain over each group of gain.numel() consecutive values.
  virtual void rms_norm(const Tensor& x, const Tensor& gain, float eps, Tensor& y) = 0;
  virtual void add(const Tensor& a, const Tensor& b, Tensor& out) = 0;
  // sum = a + b, then normed = rms_norm(sum, gain, eps): a residual add and the next norm in one op. The
  // same results as add then rms_norm.
  virtual void add_rms_norm(const Tensor& a, const Tensor& b, const Tensor& gain, float eps, Tensor& sum,
                            Tensor& normed);
  virtual void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) = 0;  // silu(gate) * up
  // out = silu(x gate^T) * (x up^T): the MLP's first half. The default runs matmul_many and silu_mul; a
  // backend may fuse them (one pass over both matrices, no intermediate rows).
  virtual void matmul_silu_mul(const WeightMatrix& gate, const WeightMatrix& up, const Tensor& x,
                               Tensor& out);

  // --- gated full attention
  // NeoX rotation of the first rot_dim dims of each head, row t at position pos0 + t. In place.
  virtual void rope(Tensor& x, int heads, int head_dim, int rot_dim, double theta, int64_t pos0) = 0;
  virtual void attention(const AttentionArgs& args) = 0;
  // The copy_columns splits, rms_norms, ropes and write_caches of AttentionPrepareArgs as one op. The same
  // results as those ops in that order.
  virtual void attention_prepare(const AttentionPrepareArgs& args);
  virtual void sigmoid_mul(Tensor& x, const Tensor& gate) = 0;  // x *= sigmoid(gate), in place

  // --- gated DeltaNet
  // out = silu(causal depthwise conv over time), weight [C, K] (tap K-1 = current row), state [K-1, C] holds
  // the previous K-1 input rows and is updated. row_states (optional, [R, (K-1) * C], R <= T) receives the
  // state after each of rows 0..R-1.
  virtual void conv1d_silu(const Tensor& x, const Tensor& weight, Tensor& state, Tensor& out,
                           Tensor* row_states) = 0;
  // g = -exp(A_log) * softplus(a + dt_bias), beta = sigmoid(b); a, b [T, Hv].
  virtual void gdn_gates(const Tensor& a, const Tensor& b, const Tensor& a_log, const Tensor& dt_bias,
                         Tensor& g, Tensor& beta) = 0;
  // x = x * rsqrt(sum(x^2) + 1e-6) * scale over each group of `group` values. In place.
  virtual void l2_norm(Tensor& x, int64_t group, float scale) = 0;
  // conv1d_silu, the q | k | v split, both l2_norms and gdn_gates as one op (GdnPrepareArgs). The same
  // results as those ops in that order.
  virtual void gdn_prepare(const GdnPrepareArgs& args);
  // Token-by-token recurrence (decode, verify widths).
  virtual void gdn_recurrent(const GdnArgs& args) = 0;
  // Chunked form (prefill): the same function computed with matrix products over chunks of 64 tokens.
  virtual void gdn_chunked(const GdnArgs& args) = 0;
  // out = (gain * x * rsqrt(mean(x^2) + eps)) * silu(z) over each group of gain.numel() values.
  virtual void gated_rms_norm(const Tensor& x, const Tensor& z, const Tensor& gain, float eps,
                              Tensor& out) = 0;

  // --- position-carrying writes
  // cache rows [position, position + src.rows) = src: a KV-cache append. The same as copy_rows; a backend
  // with step graphs treats `position` as a step position (see below).
  virtual void write_cache(const Tensor& src, Tensor& cache, int64_t position) {
    copy_rows(src, cache, position);
  }

  // --- greedy pick
  // The index of the largest value of each row of `logits` [rows, vocab]: ties go to the lowest index, NaN
  // is never chosen, an all -inf row gives 0, and a row with no comparable value (all NaN, or empty) throws.
  // The same rule as decode/sampling.h's argmax, so a greedy decode loop can take the token without the
  // row crossing to the host. Default: download the rows, then pick on the host.
  virtual std::vector<int32_t> greedy_tokens(const Tensor& logits);
  // `count` token slots in this backend's memory; `id_map` (empty: the identity) maps the row indices a
  // mapped greedy_pick writes (a trimmed draft head's rows to token ids). Default: host memory.
  virtual std::unique_ptr<TokenSlots> token_slots(int count, std::span<const int32_t> id_map);
  // slots[first + r] = greedy_tokens' pick of row r of `logits`, through the slots' id map when `mapped`;
  // queued like any op, read with TokenSlots::read. `slots` must come from this backend's token_slots.
  virtual void greedy_pick(const Tensor& logits, TokenSlots& slots, int first, bool mapped);

  // --- top-k candidates
  // The k entries of each row of `logits` [rows, vocab] that rank first by backend/row_pick.h's rule (larger
  // value, then lower index, NaN never), best first: out[r * k + i] for row r. A row with fewer than k
  // comparable entries ends with {0, -1} entries. The same candidates in the same order as the sampler's
  // top-k filter, so a sampled decode step brings k values per row to the host instead of the row. `out`
  // is resized to rows * k (its capacity is reused). Default: download the rows, then select on the host.
  virtual void top_k(const Tensor& logits, int k, std::vector<ScoredToken>& out);

  // --- sampling and speculative acceptance where the logits are (optional)
  // A backend that offers it returns a DeviceSampler (below), so a sampled decode step under a top-k cut
  // moves only token ids and the accepted count to the host. Null (the default): the caller filters and
  // accepts on the host. `draft` null: drafts are greedy (q a point mass on the drafted token).
  // `draft_ids` maps draft-head rows to token ids (a trimmed head; empty = the identity). The sampler must
  // not outlive the backend.
  virtual std::unique_ptr<DeviceSampler> device_sampler(const TopKFilter& target, const TopKFilter* draft,
                                                        std::span<const int32_t> draft_ids, int max_drafts);

  // --- step graphs (optional)
  // A backend with graphs() true can record the ops queued between begin_capture and end_capture and replay
  // them later for other token ids and another base position, without the host queuing each op again.
  // While a capture is open the ops are recorded, not run. Ops that take the capture's `tokens` span (the
  // same pointer) read the ids given to replay(); the positions given to rope, attention and write_cache
  // are taken relative to `base_position`, so a replay at base B runs them at B + (position - base).
  // Everything else (weights, tensors, sizes) is fixed at capture: the caller replays only where those
  // are the same. Tensors allocated while a capture is open come from memory that belongs to the graph.
  class Graph {
   public:
    virtual ~Graph() = default;
  };
  virtual bool graphs() const { return false; }
  virtual void begin_capture(std::span<const int32_t> tokens, int64_t base_position);
  virtual std::unique_ptr<Graph> end_capture();
  // Queues the recorded ops with these ids (the captured count) at this base position. With `input`, its
  // rows are first copied into `graph_input` (a tensor of the same shape that the recorded ops read), in
  // the launch that sets the ids where the backend can (one queued op fewer than copy_rows before it).
  // With `slot_rows`, those rows' ids are read from token slots of this backend where they are.
  virtual void replay(Graph& graph, std::span<const int32_t> tokens, int64_t base_position,
                      const Tensor* input, Tensor* graph_input, const SlotRows* slot_rows = nullptr);
};

// Backend::top_k's contract over rows already on the host ([row_count, cols], row-major): the default
// implementation and host backends share it.
void pick_top_k(std::span<const float> rows, int64_t row_count, int64_t cols, int k,
                std::vector<ScoredToken>& out);

}  // namespace mtplx

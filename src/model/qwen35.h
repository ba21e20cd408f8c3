// Qwen3.5 / Qwen3.6 dense model: the trunk (GDN and gated full-attention layers, SwiGLU MLPs) and the
// native MTP head, written once against the Backend ops.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "model/state.h"
#include "model/weights.h"

namespace mtplx {

// How the GDN layers run a forward of T tokens.
enum class GdnMode { kAuto, kRecurrent, kChunked };

struct ForwardOptions {
  GdnMode gdn_mode = GdnMode::kAuto;  // kAuto: recurrent for T <= 8, chunked above
  // Keep the GDN states after every row so rollback() can keep any prefix without re-running the trunk
  // (speculative verify). Implies the recurrent form.
  bool capture_rows = false;
  // Rows whose ids are still in token slots (drafts picked or drawn where the logits are); the token span's
  // entries there are placeholders. A step graph reads them where they are; otherwise they are read first
  // (a wait for the device).
  const SlotRows* slot_rows = nullptr;
};

class Qwen35Model {
 public:
  Qwen35Model(const Checkpoint& ckpt, Backend& backend);

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  bool has_mtp() const { return weights_.mtp.has_value(); }
  Backend& backend() { return backend_; }

  // A fresh state for up to `capacity` tokens.
  ModelState new_state(int64_t capacity);

  // Runs the trunk over `tokens` at positions state.position.., commits them to the state, and returns the
  // post-final-norm hidden states [T, H] (the LM head's input, also the MTP head's hidden input).
  Tensor forward(std::span<const int32_t> tokens, ModelState& state, const ForwardOptions& options = {});

  // Keeps only the first `keep` rows of the last forward (which must have had capture_rows on): attention
  // caches are truncated by position, GDN states are set to the captured state after row keep - 1.
  void rollback(ModelState& state, int64_t keep);
  // Sizes the state's capture buffers for verify forwards of up to `rows` rows. forward does it on demand,
  // but growing them drops the state's step graphs (they write the old buffers), so a generation that
  // knows its depth reserves before its first step and records each graph once.
  void reserve_verify_rows(ModelState& state, int64_t rows);

  // logits [T, V] = hidden W_lm^T.
  Tensor logits(const Tensor& hidden);
  // hidden [T, H] times another head's rows (a draft LM head): [T, head.rows].
  Tensor project(const Tensor& hidden, const WeightMatrix& head);

  // Runs the MTP head over T slots at RoPE positions pos0..pos0+T-1: slot i pairs tokens[i] (the token after
  // the hidden's position) with hidden row i, and is written to row pos0 + i of the head's KV cache (rows
  // past it are dropped). Returns the post-mtp.norm states [T, H]; their logits predict the token after
  // tokens[i]. `slot_rows` as in ForwardOptions.
  Tensor mtp_forward(std::span<const int32_t> tokens, const Tensor& hidden, int64_t pos0, ModelState& state,
                     const SlotRows* slot_rows = nullptr);

 private:
  Tensor trunk(std::span<const int32_t> tokens, ModelState& state, const ForwardOptions& options);
  Tensor mtp_ops(std::span<const int32_t> tokens, const Tensor& hidden, int64_t pos0, ModelState& state);
  // Runs `ops` (one step's ops on an input, returning its output) through state's step graph `key`:
  // recorded on first use, replayed after with `tokens` at `base`. `input` (may be null) is copied into the
  // graph's own input buffer first. Returns a copy of the output (callers may keep it across steps).
  Tensor graphed(int key, std::span<const int32_t> tokens, int64_t base, ModelState& state,
                 const Tensor* input, const SlotRows* slot_rows,
                 const std::function<Tensor(const Tensor&)>& ops);
  // `tokens` with the ids of `slot_rows` read into a copy (`storage`) when there are any.
  static std::span<const int32_t> read_slot_rows(std::span<const int32_t> tokens, const SlotRows* slot_rows,
                                                 std::vector<int32_t>& storage);
  bool use_graph(int64_t rows) const;
  // Sizes the GDN capture buffers for `rows` captured rows; drops the state's graphs when a buffer moved.
  void reserve_capture_rows(ModelState& state, int64_t rows);
  // One decoder layer on the residual stream x and its input norm h: sets x to the layer's output and h to
  // that output normed with `next_norm` (the next layer's input norm, or the final norm).
  void decoder_layer(const LayerWeights& layer, Tensor& x, Tensor& h, const Tensor& next_norm,
                     LayerState& state, int64_t pos0, const ForwardOptions& options);
  Tensor attention(const AttentionWeights& w, const Tensor& h, KvCache& kv, int64_t pos0);
  Tensor gdn(const GdnWeights& w, const Tensor& h, LayerState& state, const ForwardOptions& options);
  Tensor mlp(const MlpWeights& w, const Tensor& h);
  KvCache new_kv_cache(int64_t capacity);
  bool ensure_rows(Tensor& buffer, int64_t rows, int64_t cols);

  ModelConfig config_;
  Backend& backend_;
  ModelWeights weights_;
};

}  // namespace mtplx

#include "model/qwen35.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"

namespace mtplx {

Qwen35Model::Qwen35Model(const Checkpoint& ckpt, Backend& backend)
    : config_(parse_model_config(ckpt.config, (ckpt.dir / "config.json").string())),
      backend_(backend),
      weights_(load_weights(ckpt, config_, backend)) {}

// Capture buffers grow to the widest verify seen and are reused (no allocation per cycle). Returns whether
// the buffer moved.
bool Qwen35Model::ensure_rows(Tensor& buffer, int64_t rows, int64_t cols) {
  if (!buffer.empty() && buffer.rows >= rows) return false;
  buffer = backend_.alloc(rows, cols);
  return true;
}

// Steps of up to this many rows (decode, verify, draft) run as step graphs where the backend has them.
constexpr int64_t kGraphRows = 8;

bool Qwen35Model::use_graph(int64_t rows) const {
  return rows <= kGraphRows && backend_.graphs();
}

void Qwen35Model::reserve_capture_rows(ModelState& state, int64_t rows) {
  bool moved = false;
  for (int i = 0; i < config_.num_hidden_layers; ++i) {
    if (!config_.is_linear(i)) continue;
    LayerState& layer = state.layers[i];
    moved |= ensure_rows(layer.conv_rows, rows, layer.conv.numel());
    moved |= ensure_rows(layer.recurrent_rows, rows, layer.recurrent.numel());
  }
  if (moved) state.graphs->clear();  // recorded graphs write the old buffers
}

void Qwen35Model::reserve_verify_rows(ModelState& state, int64_t rows) {
  if (rows > 1) reserve_capture_rows(state, rows - 1);
}

std::span<const int32_t> Qwen35Model::read_slot_rows(std::span<const int32_t> tokens,
                                                     const SlotRows* slot_rows,
                                                     std::vector<int32_t>& storage) {
  if (slot_rows == nullptr || slot_rows->count == 0) return tokens;
  require(slot_rows->first_row >= 0 && slot_rows->first_row + slot_rows->count <= std::ssize(tokens),
          "internal error: slot rows outside the step");
  storage.assign(tokens.begin(), tokens.end());
  const auto ids = slot_rows->slots->read(slot_rows->first_slot, slot_rows->count);
  std::copy(ids.begin(), ids.end(), storage.begin() + slot_rows->first_row);
  return storage;
}

Tensor Qwen35Model::graphed(int key, std::span<const int32_t> tokens, int64_t base, ModelState& state,
                            const Tensor* input, const SlotRows* slot_rows,
                            const std::function<Tensor(const Tensor&)>& ops) {
  auto it = state.graphs->find(key);
  if (it == state.graphs->end()) {
    StepGraph step;
    if (input != nullptr) step.input = backend_.alloc(input->rows, input->cols);
    backend_.begin_capture(tokens, base);
    try {
      step.output = ops(step.input);
    } catch (...) {
      try {
        backend_.end_capture();  // close the capture; the first error is the one to report
      } catch (...) {
      }
      throw;
    }
    step.graph = backend_.end_capture();
    it = state.graphs->emplace(key, std::move(step)).first;
  }
  StepGraph& step = it->second;
  backend_.replay(*step.graph, tokens, base, input, input != nullptr ? &step.input : nullptr, slot_rows);
  Tensor out = backend_.alloc(step.output.rows, step.output.cols);
  backend_.copy_rows(step.output, out, 0);
  return out;
}

KvCache Qwen35Model::new_kv_cache(int64_t capacity) {
  KvCache kv{backend_.alloc(capacity, config_.kv_dim()), backend_.alloc(capacity, config_.kv_dim())};
  backend_.fill(kv.k, 0.0f);
  backend_.fill(kv.v, 0.0f);
  return kv;
}

ModelState Qwen35Model::new_state(int64_t capacity) {
  require(capacity > 0, "context size must be positive");
  ModelState state;
  state.capacity = capacity;
  const int64_t taps = config_.linear_conv_kernel_dim - 1;
  for (int i = 0; i < config_.num_hidden_layers; ++i) {
    LayerState layer;
    if (config_.is_linear(i)) {
      layer.conv = backend_.alloc(taps, config_.conv_dim());
      layer.recurrent = backend_.alloc(config_.linear_num_value_heads,
                                       int64_t{config_.linear_key_head_dim} * config_.linear_value_head_dim);
      backend_.fill(layer.conv, 0.0f);
      backend_.fill(layer.recurrent, 0.0f);
    } else {
      layer.kv = new_kv_cache(capacity);
    }
    state.layers.push_back(std::move(layer));
  }
  if (has_mtp()) state.mtp_kv = new_kv_cache(capacity);
  return state;
}

Tensor Qwen35Model::forward(std::span<const int32_t> tokens, ModelState& state,
                            const ForwardOptions& options) {
  const auto T = static_cast<int64_t>(tokens.size());
  require(T > 0, "no tokens to run");
  require(
      state.position + T <= state.capacity,
      str("context full: ", state.position, " + ", T, " tokens exceed the context size of ", state.capacity),
      "", "start a new conversation or raise the context size");
  // The state after the last row is the state itself: rows 0..T-2 are captured.
  if (options.capture_rows) reserve_verify_rows(state, T);
  Tensor hidden;
  if (use_graph(T)) {
    const bool chunked = options.gdn_mode == GdnMode::kChunked;
    const int key = static_cast<int>(T) * 4 + (options.capture_rows ? 2 : 0) + (chunked ? 1 : 0);
    hidden = graphed(key, tokens, state.position, state, nullptr, options.slot_rows,
                     [&](const Tensor&) { return trunk(tokens, state, options); });
  } else {
    std::vector<int32_t> storage;
    hidden = trunk(read_slot_rows(tokens, options.slot_rows, storage), state, options);
  }
  state.captured_from = options.capture_rows ? state.position : -1;
  state.captured_rows = options.capture_rows ? T : 0;
  state.position += T;
  return hidden;
}

// The trunk's ops at positions state.position.. (state's host fields are left alone).
Tensor Qwen35Model::trunk(std::span<const int32_t> tokens, ModelState& state, const ForwardOptions& options) {
  const auto T = static_cast<int64_t>(tokens.size());
  Tensor x = backend_.alloc(T, config_.hidden_size);
  backend_.embed(weights_.embed, tokens, x);
  Tensor h = backend_.alloc(T, config_.hidden_size);
  backend_.rms_norm(x, weights_.layers[0].input_norm, config_.rms_norm_eps, h);
  const int layers = config_.num_hidden_layers;
  for (int i = 0; i < layers; ++i) {
    const Tensor& next_norm = i + 1 < layers ? weights_.layers[i + 1].input_norm : weights_.final_norm;
    decoder_layer(weights_.layers[i], x, h, next_norm, state.layers[i], state.position, options);
  }
  return h;  // the final norm of the last layer's output
}

void Qwen35Model::rollback(ModelState& state, int64_t keep) {
  require(state.captured_from >= 0 && keep >= 1 && keep <= state.captured_rows,
          "internal error: rollback without a captured forward");
  // Keeping every row keeps the states as they are; else each GDN layer gets back its states after row
  // keep - 1, all layers in one copy_blocks. Attention caches are truncated by the position below.
  std::vector<BlockCopy> copies;
  for (int i = 0; i < config_.num_hidden_layers && keep < state.captured_rows; ++i) {
    if (!config_.is_linear(i)) continue;
    LayerState& layer = state.layers[i];
    const int64_t conv = layer.conv.numel(), recurrent = layer.recurrent.numel();
    copies.push_back({layer.conv_rows.data + (keep - 1) * conv, layer.conv.data, conv});
    copies.push_back({layer.recurrent_rows.data + (keep - 1) * recurrent, layer.recurrent.data, recurrent});
  }
  if (!copies.empty()) backend_.copy_blocks(copies);
  state.position = state.captured_from + keep;
  state.captured_from = -1;
  state.captured_rows = 0;
}

Tensor Qwen35Model::logits(const Tensor& hidden) {
  return project(hidden, weights_.lm_head);
}

Tensor Qwen35Model::project(const Tensor& hidden, const WeightMatrix& head) {
  Tensor out = backend_.alloc(hidden.rows, head.rows);
  backend_.matmul(head, hidden, out);
  return out;
}

// Pre-norm residual block: x + mixer(norm(x)), then + mlp(norm(.)). Each residual add is fused with the norm
// that follows it.
void Qwen35Model::decoder_layer(const LayerWeights& layer, Tensor& x, Tensor& h, const Tensor& next_norm,
                                LayerState& state, int64_t pos0, const ForwardOptions& options) {
  const float eps = config_.rms_norm_eps;
  Tensor mixed = layer.kind == LayerKind::kFullAttention ? attention(layer.attn, h, state.kv, pos0)
                                                         : gdn(layer.gdn, h, state, options);
  Tensor residual = backend_.alloc(x.rows, x.cols);
  backend_.add_rms_norm(x, mixed, layer.post_norm, eps, residual, h);
  Tensor mlp_out = mlp(layer.mlp, h);
  x = backend_.alloc(x.rows, x.cols);
  h = backend_.alloc(x.rows, x.cols);
  backend_.add_rms_norm(residual, mlp_out, next_norm, eps, x, h);
}

Tensor Qwen35Model::mlp(const MlpWeights& w, const Tensor& h) {
  const int64_t T = h.rows;
  Tensor gate = backend_.alloc(T, config_.intermediate_size);
  backend_.matmul_silu_mul(w.gate_proj, w.up_proj, h, gate);
  Tensor out = backend_.alloc(T, config_.hidden_size);
  backend_.matmul(w.down_proj, gate, out);
  return out;
}

// Gated full attention: q_proj yields per head [query D ; gate D]; q/k RMS-normed per head, partial RoPE,
// causal GQA softmax over the KV cache, output gated by sigmoid(gate).
Tensor Qwen35Model::attention(const AttentionWeights& w, const Tensor& h, KvCache& kv, int64_t pos0) {
  const int64_t T = h.rows;
  const int heads = config_.num_attention_heads;
  const int D = config_.head_dim;
  Tensor qg = backend_.alloc(T, config_.q_proj_rows());  // [T, Hq * 2D]
  Tensor k = backend_.alloc(T, config_.kv_dim());        // [T, Hkv * D]
  Tensor v = backend_.alloc(T, config_.kv_dim());        // [T, Hkv * D]
  const WeightMatrix* ws[] = {&w.q_proj, &w.k_proj, &w.v_proj};
  Tensor* ys[] = {&qg, &k, &v};
  backend_.matmul_many(ws, h, ys);
  Tensor q = backend_.alloc(T, config_.attn_out_dim());     // [T, Hq * D]
  Tensor gate = backend_.alloc(T, config_.attn_out_dim());  // [T, Hq * D]
  AttentionPrepareArgs prepare;
  prepare.qg = &qg;
  prepare.k = &k;
  prepare.v = &v;
  prepare.q_norm = &w.q_norm;
  prepare.k_norm = &w.k_norm;
  prepare.q = &q;
  prepare.gate = &gate;
  prepare.k_cache = &kv.k;
  prepare.v_cache = &kv.v;
  prepare.eps = config_.rms_norm_eps;
  prepare.heads = heads;
  prepare.kv_heads = config_.num_key_value_heads;
  prepare.head_dim = D;
  prepare.rot_dim = config_.rotary_dim();
  prepare.theta = config_.rope_theta;
  prepare.pos0 = pos0;
  backend_.attention_prepare(prepare);
  Tensor o = backend_.alloc(T, config_.attn_out_dim());
  AttentionArgs args{&q,
                     &kv.k,
                     &kv.v,
                     &o,
                     pos0,
                     heads,
                     config_.num_key_value_heads,
                     D,
                     1.0f / std::sqrt(static_cast<float>(D)),
                     &gate};  // the output gate, applied by the attention op
  backend_.attention(args);
  Tensor out = backend_.alloc(T, config_.hidden_size);
  backend_.matmul(w.o_proj, o, out);
  return out;
}

// Gated DeltaNet: projections, causal conv + silu over q|k|v, l2-normed q/k, fp32 gates, the delta rule,
// gated RMSNorm with silu(z), output projection.
Tensor Qwen35Model::gdn(const GdnWeights& w, const Tensor& h, LayerState& state,
                        const ForwardOptions& options) {
  const int64_t T = h.rows;
  const int64_t key_dim = config_.key_dim(), value_dim = config_.value_dim();
  const int Hv = config_.linear_num_value_heads;
  Tensor qkv = backend_.alloc(T, config_.conv_dim());
  Tensor z = backend_.alloc(T, value_dim);
  Tensor b = backend_.alloc(T, Hv);
  Tensor a = backend_.alloc(T, Hv);
  const WeightMatrix* ws[] = {&w.in_proj_qkv, &w.in_proj_z, &w.in_proj_b, &w.in_proj_a};
  Tensor* ys[] = {&qkv, &z, &b, &a};
  backend_.matmul_many(ws, h, ys);
  Tensor conv_rows_view, recurrent_rows_view;
  Tensor* conv_rows = nullptr;
  Tensor* recurrent_rows = nullptr;
  if (options.capture_rows && T > 1) {  // rows 0..T-2, in buffers sized by forward (reserve_capture_rows)
    conv_rows_view = state.conv_rows.row_view(0, T - 1);
    recurrent_rows_view = state.recurrent_rows.row_view(0, T - 1);
    conv_rows = &conv_rows_view;
    recurrent_rows = &recurrent_rows_view;
  }
  Tensor q = backend_.alloc(T, key_dim), k = backend_.alloc(T, key_dim), v = backend_.alloc(T, value_dim);
  Tensor g = backend_.alloc(T, Hv), beta = backend_.alloc(T, Hv);
  const int Dk = config_.linear_key_head_dim;
  GdnPrepareArgs prepare;
  prepare.qkv = &qkv;
  prepare.conv_weight = &w.conv1d;
  prepare.conv_state = &state.conv;
  prepare.conv_rows = conv_rows;
  prepare.a = &a;
  prepare.b = &b;
  prepare.a_log = &w.a_log;
  prepare.dt_bias = &w.dt_bias;
  prepare.q = &q;
  prepare.k = &k;
  prepare.v = &v;
  prepare.g = &g;
  prepare.beta = &beta;
  prepare.key_head_dim = Dk;
  backend_.gdn_prepare(prepare);
  Tensor o = backend_.alloc(T, value_dim);
  GdnArgs args{&q,
               &k,
               &v,
               &g,
               &beta,
               &state.recurrent,
               &o,
               recurrent_rows,
               config_.linear_num_key_heads,
               Hv,
               Dk,
               config_.linear_value_head_dim};
  const bool chunked = !options.capture_rows && (options.gdn_mode == GdnMode::kChunked ||
                                                 (options.gdn_mode == GdnMode::kAuto && T > 8));
  if (chunked) {
    backend_.gdn_chunked(args);
  } else {
    backend_.gdn_recurrent(args);
  }
  backend_.gated_rms_norm(o, z, w.norm, config_.rms_norm_eps, o);
  Tensor out = backend_.alloc(T, config_.hidden_size);
  backend_.matmul(w.out_proj, o, out);
  return out;
}

Tensor Qwen35Model::mtp_forward(std::span<const int32_t> tokens, const Tensor& hidden, int64_t pos0,
                                ModelState& state, const SlotRows* slot_rows) {
  require(has_mtp(), "this checkpoint has no MTP head", "",
          "use a checkpoint with mtp.* weights or an MTPLX artifact");
  const auto T = static_cast<int64_t>(tokens.size());
  require(hidden.rows == T && hidden.cols == config_.hidden_size, "internal error: MTP hidden shape");
  require(pos0 >= 0 && pos0 <= state.mtp_length && pos0 + T <= state.capacity,
          "internal error: MTP position");
  std::vector<int32_t> storage;
  Tensor out = use_graph(T) ? graphed(1000 + static_cast<int>(T), tokens, pos0, state, &hidden, slot_rows,
                                      [&](const Tensor& in) { return mtp_ops(tokens, in, pos0, state); })
                            : mtp_ops(read_slot_rows(tokens, slot_rows, storage), hidden, pos0, state);
  state.mtp_length = pos0 + T;
  return out;
}

Tensor Qwen35Model::mtp_ops(std::span<const int32_t> tokens, const Tensor& hidden, int64_t pos0,
                            ModelState& state) {
  const auto T = static_cast<int64_t>(tokens.size());
  const MtpWeights& m = *weights_.mtp;
  const int64_t H = config_.hidden_size;
  Tensor e = backend_.alloc(T, H);
  backend_.embed(weights_.embed, tokens, e);
  Tensor u = backend_.alloc(T, 2 * H);  // [norm(embedding) ; norm(hidden)]
  if (T == 1) {  // the two halves of one row are two contiguous vectors: the norms write them in place
    const Tensor halves = u.reshaped(2, H);
    Tensor first = halves.row_view(0, 1), second = halves.row_view(1, 1);
    backend_.rms_norm(e, m.pre_fc_norm_embedding, config_.rms_norm_eps, first);
    backend_.rms_norm(hidden, m.pre_fc_norm_hidden, config_.rms_norm_eps, second);
  } else {
    Tensor normed = backend_.alloc(T, H);
    backend_.rms_norm(e, m.pre_fc_norm_embedding, config_.rms_norm_eps, normed);
    backend_.copy_columns(normed, 0, 0, u, 0, 0, H, 1);
    backend_.rms_norm(hidden, m.pre_fc_norm_hidden, config_.rms_norm_eps, normed);
    backend_.copy_columns(normed, 0, 0, u, H, 0, H, 1);
  }
  Tensor z = backend_.alloc(T, H);
  backend_.matmul(m.fc, u, z);
  LayerState layer_state;
  layer_state.kv = state.mtp_kv;
  Tensor h = backend_.alloc(T, H);
  backend_.rms_norm(z, m.layer.input_norm, config_.rms_norm_eps, h);
  decoder_layer(m.layer, z, h, m.norm, layer_state, pos0, {});
  return h;  // mtp.norm of the layer's output
}

}  // namespace mtplx

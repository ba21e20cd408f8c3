// The weights of a Qwen3.5/3.6 dense model, bound to a backend. Loading maps each checkpoint layout's
// names onto one set of modules (name_map), applies the norm convention once (HF stores zero-centred
// RMSNorm gains, MLX stores 1 + w, MTPLX sidecars say which in config.json), and keeps quantized matrices
// quantized.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "io/checkpoint.h"
#include "model/config.h"

namespace mtplx {

struct AttentionWeights {
  WeightMatrix q_proj, k_proj, v_proj, o_proj;  // q_proj rows: per head [query D ; gate D]
  Tensor q_norm, k_norm;                        // [1, D] effective gains
};

struct GdnWeights {
  WeightMatrix in_proj_qkv, in_proj_z, in_proj_b, in_proj_a, out_proj;
  Tensor conv1d;   // [C, K]
  Tensor a_log;    // [1, Hv]
  Tensor dt_bias;  // [1, Hv]
  Tensor norm;     // [1, Dv] plain gain
};

struct MlpWeights {
  WeightMatrix gate_proj, up_proj, down_proj;
};

struct LayerWeights {
  LayerKind kind = LayerKind::kLinearAttention;
  Tensor input_norm, post_norm;  // [1, H] effective gains
  AttentionWeights attn;         // full-attention layers
  GdnWeights gdn;                // linear-attention layers
  MlpWeights mlp;
};

// The matrices a layer's forward pass multiplies by: its kind's projections, then the MLP's.
inline std::vector<const WeightMatrix*> layer_matrices(const LayerWeights& l) {
  if (l.kind == LayerKind::kFullAttention)
    return {&l.attn.q_proj,   &l.attn.k_proj, &l.attn.v_proj,  &l.attn.o_proj,
            &l.mlp.gate_proj, &l.mlp.up_proj, &l.mlp.down_proj};
  return {&l.gdn.in_proj_qkv, &l.gdn.in_proj_z, &l.gdn.in_proj_b, &l.gdn.in_proj_a,
          &l.gdn.out_proj,    &l.mlp.gate_proj, &l.mlp.up_proj,   &l.mlp.down_proj};
}

struct MtpWeights {
  WeightMatrix fc;  // [H, 2H] over [norm(embedding) ; norm(hidden)]
  Tensor pre_fc_norm_embedding, pre_fc_norm_hidden, norm;
  LayerWeights layer;  // one full-attention decoder layer
};

// How a file stores the (1 + w) RMSNorm gains.
enum class NormEncoding { kDelta, kShifted };

struct ModelWeights {
  WeightMatrix embed;         // [V, H]
  WeightMatrix lm_head;       // [V, H]; the embedding when tied
  WeightMatrix lm_head_host;  // the same in host memory (the mapped file), for building draft heads
  Tensor final_norm;
  std::vector<LayerWeights> layers;
  std::optional<MtpWeights> mtp;
  NormEncoding mtp_norm_encoding = NormEncoding::kDelta;
  std::string mtp_norm_encoding_source;  // "config", "detected", "hf"
  size_t weight_bytes = 0;               // bytes of all matrices and vectors as stored
  int64_t parameter_count = 0;           // logical parameters
};

ModelWeights load_weights(const Checkpoint& ckpt, const ModelConfig& config, Backend& backend);

}  // namespace mtplx

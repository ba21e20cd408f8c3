// Text hyper-parameters of a Qwen3.5 / Qwen3.6 dense model, with Hugging Face field names. Parsed once
// from config.json (text_config when nested); derived sizes come from the member functions.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mtplx {

enum class LayerKind { kLinearAttention, kFullAttention };

struct ModelConfig {
  std::string model_type;  // qwen3_5_text (or qwen3_5)
  int64_t hidden_size = 0;
  int num_hidden_layers = 0;
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;
  int head_dim = 256;
  int linear_num_key_heads = 0;
  int linear_num_value_heads = 0;
  int linear_key_head_dim = 128;
  int linear_value_head_dim = 128;
  int linear_conv_kernel_dim = 4;
  std::vector<LayerKind> layer_types;
  float rms_norm_eps = 1e-6f;
  double rope_theta = 1e7;
  float partial_rotary_factor = 0.25f;
  bool tie_word_embeddings = false;
  int mtp_num_hidden_layers = 0;
  int64_t max_position_embeddings = 262144;
  std::vector<int> eos_token_ids;

  bool is_linear(int layer) const { return layer_types[layer] == LayerKind::kLinearAttention; }
  int rotary_dim() const { return static_cast<int>(head_dim * partial_rotary_factor); }
  int64_t key_dim() const { return int64_t{linear_num_key_heads} * linear_key_head_dim; }
  int64_t value_dim() const { return int64_t{linear_num_value_heads} * linear_value_head_dim; }
  int64_t conv_dim() const { return 2 * key_dim() + value_dim(); }
  int64_t q_proj_rows() const { return int64_t{2} * num_attention_heads * head_dim; }  // query + gate
  int64_t kv_dim() const { return int64_t{num_key_value_heads} * head_dim; }
  int64_t attn_out_dim() const { return int64_t{num_attention_heads} * head_dim; }
  int full_attention_layers() const;
  // fp32 bytes of the Gated DeltaNet layers' recurrent state: each layer's Hv x Dk x Dv matrix and its K - 1
  // rows of convolution inputs.
  int64_t recurrent_state_bytes() const;
};

// Reads the text hyper-parameters from a config.json object (text_config when present). `where` names the
// file in errors. MoE checkpoints are refused with a clear "not supported yet" error.
ModelConfig parse_model_config(const nlohmann::json& config, const std::string& where);

}  // namespace mtplx

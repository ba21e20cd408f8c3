#include "model/config.h"

#include <algorithm>

#include "base/error.h"

namespace mtplx {
namespace {

template <class T>
T field(const nlohmann::json& text, const char* key, const std::string& where) {
  require(text.contains(key) && !text[key].is_null(), str("config is missing \"", key, "\""), where,
          "is this a Qwen3.5/3.6 config.json?");
  try {
    return text[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    fail(str("config field \"", key, "\" has the wrong type (", text[key].dump(), ")"), where);
  }
}

template <class T>
T field_or(const nlohmann::json& text, const char* key, T fallback, const std::string& where) {
  if (!text.contains(key) || text[key].is_null()) return fallback;
  return field<T>(text, key, where);
}

std::vector<LayerKind> parse_layer_types(const nlohmann::json& text, int layers, const std::string& where) {
  std::vector<LayerKind> kinds;
  if (text.contains("layer_types") && text["layer_types"].is_array()) {
    for (const auto& entry : text["layer_types"]) {
      const std::string kind = entry.is_string() ? entry.get<std::string>() : entry.dump();
      if (kind == "linear_attention") {
        kinds.push_back(LayerKind::kLinearAttention);
      } else if (kind == "full_attention") {
        kinds.push_back(LayerKind::kFullAttention);
      } else {
        fail(str("unknown layer type \"", kind, "\" in layer_types"), where,
             "expected linear_attention or full_attention");
      }
    }
    require(static_cast<int>(kinds.size()) == layers,
            str("layer_types has ", kinds.size(), " entries but num_hidden_layers is ", layers), where);
    return kinds;
  }
  const int interval = field_or<int>(text, "full_attention_interval", 4, where);
  require(interval > 0, "full_attention_interval must be positive", where);
  for (int i = 0; i < layers; ++i) {
    kinds.push_back((i + 1) % interval == 0 ? LayerKind::kFullAttention : LayerKind::kLinearAttention);
  }
  return kinds;
}

std::vector<int> parse_eos(const nlohmann::json& text) {
  std::vector<int> ids;
  if (!text.contains("eos_token_id")) return ids;
  const auto& eos = text["eos_token_id"];
  if (eos.is_number_integer()) ids.push_back(eos.get<int>());
  if (eos.is_array())
    for (const auto& id : eos)
      if (id.is_number_integer()) ids.push_back(id.get<int>());
  return ids;
}

void check_consistency(const ModelConfig& c, const std::string& where) {
  auto positive = [&](int64_t value, const char* name) {
    require(value > 0, str("config field ", name, " must be positive (got ", value, ")"), where);
  };
  positive(c.hidden_size, "hidden_size");
  positive(c.num_hidden_layers, "num_hidden_layers");
  positive(c.intermediate_size, "intermediate_size");
  positive(c.vocab_size, "vocab_size");
  positive(c.num_attention_heads, "num_attention_heads");
  positive(c.num_key_value_heads, "num_key_value_heads");
  positive(c.head_dim, "head_dim");
  positive(c.linear_num_key_heads, "linear_num_key_heads");
  positive(c.linear_num_value_heads, "linear_num_value_heads");
  positive(c.linear_key_head_dim, "linear_key_head_dim");
  positive(c.linear_value_head_dim, "linear_value_head_dim");
  positive(c.linear_conv_kernel_dim, "linear_conv_kernel_dim");
  require(c.num_attention_heads % c.num_key_value_heads == 0,
          str("num_attention_heads (", c.num_attention_heads, ") is not a multiple of num_key_value_heads (",
              c.num_key_value_heads, ")"),
          where);
  require(c.linear_num_value_heads % c.linear_num_key_heads == 0,
          str("linear_num_value_heads (", c.linear_num_value_heads,
              ") is not a multiple of linear_num_key_heads (", c.linear_num_key_heads, ")"),
          where);
  const int rot = c.rotary_dim();
  require(rot > 0 && rot % 2 == 0 && rot <= c.head_dim,
          str("partial_rotary_factor ", c.partial_rotary_factor, " gives an invalid rotary dimension ", rot),
          where);
  require(c.rms_norm_eps > 0, "rms_norm_eps must be positive", where);
  require(c.rope_theta > 0, "rope_theta must be positive", where);
  require(c.full_attention_layers() > 0 || c.num_hidden_layers > 0, "no layers", where);
}

}  // namespace

int ModelConfig::full_attention_layers() const {
  return static_cast<int>(std::count(layer_types.begin(), layer_types.end(), LayerKind::kFullAttention));
}

int64_t ModelConfig::recurrent_state_bytes() const {
  const int64_t per_layer = int64_t{linear_num_value_heads} * linear_key_head_dim * linear_value_head_dim +
                            (linear_conv_kernel_dim - 1) * conv_dim();
  return int64_t{num_hidden_layers - full_attention_layers()} * per_layer * 4;
}

ModelConfig parse_model_config(const nlohmann::json& config, const std::string& where) {
  require(config.is_object(), "config is not a JSON object", where);
  const nlohmann::json& text =
      config.contains("text_config") && config["text_config"].is_object() ? config["text_config"] : config;
  ModelConfig c;
  c.model_type = field_or<std::string>(text, "model_type",
                                       field_or<std::string>(config, "model_type", "", where), where);
  const bool moe = c.model_type.find("moe") != std::string::npos || text.contains("num_experts");
  if (moe) {
    fail(str("model type \"", c.model_type, "\" (mixture of experts) is not supported yet"), where,
         "mtplx runs the dense Qwen3.5/3.6 models (0.8B, 2B, 4B, 9B, 27B)");
  }
  require(c.model_type.starts_with("qwen3_5") || c.model_type.empty(),
          str("model type \"", c.model_type, "\" is not a Qwen3.5/3.6 model"), where,
          "mtplx runs Qwen3.5/3.6 dense checkpoints (model_type qwen3_5 / qwen3_5_text)");
  c.hidden_size = field<int64_t>(text, "hidden_size", where);
  c.num_hidden_layers = field<int>(text, "num_hidden_layers", where);
  c.intermediate_size = field<int64_t>(text, "intermediate_size", where);
  c.vocab_size = field<int64_t>(text, "vocab_size", where);
  c.num_attention_heads = field<int>(text, "num_attention_heads", where);
  c.num_key_value_heads = field_or<int>(text, "num_key_value_heads", c.num_attention_heads, where);
  c.head_dim = field_or<int>(text, "head_dim", 256, where);
  c.linear_num_key_heads = field<int>(text, "linear_num_key_heads", where);
  c.linear_num_value_heads = field<int>(text, "linear_num_value_heads", where);
  c.linear_key_head_dim = field_or<int>(text, "linear_key_head_dim", 128, where);
  c.linear_value_head_dim = field_or<int>(text, "linear_value_head_dim", 128, where);
  c.linear_conv_kernel_dim = field_or<int>(text, "linear_conv_kernel_dim", 4, where);
  c.rms_norm_eps = field_or<float>(text, "rms_norm_eps", 1e-6f, where);
  c.max_position_embeddings = field_or<int64_t>(text, "max_position_embeddings", 262144, where);
  c.mtp_num_hidden_layers = field_or<int>(text, "mtp_num_hidden_layers", 0, where);
  const nlohmann::json rope = text.contains("rope_parameters") && text["rope_parameters"].is_object()
                                  ? text["rope_parameters"]
                                  : text;
  c.rope_theta =
      field_or<double>(rope, "rope_theta", field_or<double>(text, "rope_theta", 1e7, where), where);
  c.partial_rotary_factor = field_or<float>(
      rope, "partial_rotary_factor", field_or<float>(text, "partial_rotary_factor", 0.25f, where), where);
  c.tie_word_embeddings = field_or<bool>(text, "tie_word_embeddings",
                                         field_or<bool>(config, "tie_word_embeddings", false, where), where);
  c.layer_types = parse_layer_types(text, c.num_hidden_layers, where);
  c.eos_token_ids = parse_eos(text);
  if (c.eos_token_ids.empty()) c.eos_token_ids = parse_eos(config);
  check_consistency(c, where);
  return c;
}

}  // namespace mtplx

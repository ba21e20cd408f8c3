// Synthetic checkpoints: presets, per-layout tensor lists, value generators and JSON files. The driver that
// writes them lives in synth_write.cpp.
#include "model/synth.h"

#include <array>
#include <cmath>
#include <cstring>

#include "base/error.h"
#include "model/mlx_layout.h"

namespace mtplx {
namespace {

constexpr int kGroupSize = 64;       // mlx-community conversions and MTPLX sidecars use group 64
constexpr float kNormNoise = 0.02f;  // spread of norm gains around their identity value

struct LayoutTraits {
  bool mlx = false;  // MLX names, [C, K, 1] conv, shifted norms
  int bits = 0;      // trunk quantization (0: dense BF16)
  bool mtp_in_trunk = false;
  bool sidecar = false;
};

LayoutTraits traits(SynthLayout layout) {
  switch (layout) {
    case SynthLayout::kHf:
      return {false, 0, true, false};
    case SynthLayout::kMlxQ8:
      return {true, 8, false, false};
    case SynthLayout::kMlxQ4:
      return {true, 4, false, false};
    case SynthLayout::kMtplxQ8:
      return {true, 8, false, true};
    case SynthLayout::kMtplxQ4:
      return {true, 4, false, true};
  }
  return {};
}

// --- presets

ModelConfig make_config(int64_t hidden, int layers, int heads, int kv_heads, int v_heads, int64_t inter,
                        bool tied) {
  ModelConfig c;
  c.model_type = "qwen3_5_text";
  c.hidden_size = hidden;
  c.num_hidden_layers = layers;
  c.intermediate_size = inter;
  c.vocab_size = 248320;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.head_dim = 256;
  c.linear_num_key_heads = 16;
  c.linear_num_value_heads = v_heads;
  c.linear_key_head_dim = 128;
  c.linear_value_head_dim = 128;
  c.linear_conv_kernel_dim = 4;
  c.tie_word_embeddings = tied;
  c.mtp_num_hidden_layers = 1;
  c.eos_token_ids = {248044};
  for (int i = 0; i < layers; ++i) {
    c.layer_types.push_back((i + 1) % 4 == 0 ? LayerKind::kFullAttention : LayerKind::kLinearAttention);
  }
  return c;
}

// Small enough for unit tests, yet every dimension a quantizer sees is a multiple of the group size.
ModelConfig tiny_config(bool tied) {
  ModelConfig c = make_config(128, 4, 4, 2, 4, 256, tied);
  c.vocab_size = 1024;
  c.head_dim = 64;
  c.linear_num_key_heads = 2;
  c.linear_key_head_dim = 32;
  c.linear_value_head_dim = 32;
  c.eos_token_ids = {1023};
  return c;
}

// --- random streams

uint64_t mix64(uint64_t x) {  // splitmix64 finaliser: a good 64-bit hash of a counter
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t stream_key(uint64_t seed, std::string_view key) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a of the logical name, then mixed with the seed
  for (char ch : key) h = (h ^ static_cast<unsigned char>(ch)) * 0x100000001b3ull;
  return mix64(h ^ mix64(seed));
}

// Uniform in [0, 1) from 24 random bits.
float unit(uint64_t bits) {
  return static_cast<float>(bits >> 40) * (1.0f / 16777216.0f);
}

float group_step(const SynthTensor& t, uint64_t key, uint64_t group) {
  const float n_bins = static_cast<float>((1 << t.bits) - 1);
  const float spread = 0.8f + 0.4f * unit(mix64(key ^ mix64(group)));  // groups differ, like real weights
  return 2.0f * t.half_width * spread / n_bins;
}

float element(const SynthTensor& t, uint64_t key, uint64_t i) {
  const float u = unit(mix64(key + i * 0xd1342543de82ef95ull));
  switch (t.fill) {
    case SynthFill::kUniform:
      return t.center + t.half_width * (2.0f * u - 1.0f);
    case SynthFill::kScales:
      return group_step(t, key, i);
    case SynthFill::kBiases:
      return -group_step(t, key, i) * static_cast<float>((1 << t.bits) - 1) / 2.0f;
    case SynthFill::kALog:
      return std::log(1.0f + 15.0f * u);
    case SynthFill::kDtBias: {
      const float dt = std::exp(std::log(1e-3f) + u * (std::log(1e-1f) - std::log(1e-3f)));
      return dt + std::log(-std::expm1(-dt));  // softplus(dt_bias) == dt
    }
    case SynthFill::kCodes:
      break;
  }
  return 0.0f;
}

// --- tensor lists

class TensorList {
 public:
  TensorList(const ModelConfig& c, const LayoutTraits& t) : c_(c), t_(t) {}

  // A linear or embedding [rows, cols]; `bits` 0 keeps it BF16.
  void matrix(const std::string& name, const std::string& key, int64_t rows, int64_t cols, int bits) {
    const float half = std::sqrt(3.0f / static_cast<float>(cols));  // std 1/sqrt(fan_in)
    if (bits == 0) {
      out_.push_back(
          {{name + ".weight", DType::BF16, {rows, cols}}, key, SynthFill::kUniform, 0.0f, half, 0});
      return;
    }
    const int64_t groups = cols / kGroupSize;
    out_.push_back({{name + ".weight", DType::U32, {rows, cols * bits / 32}},
                    key + ".codes",
                    SynthFill::kCodes,
                    0,
                    0,
                    bits});
    out_.push_back({{name + ".scales", DType::BF16, {rows, groups}},
                    key + ".groups",
                    SynthFill::kScales,
                    0,
                    half,
                    bits});
    out_.push_back({{name + ".biases", DType::BF16, {rows, groups}},
                    key + ".groups",
                    SynthFill::kBiases,
                    0,
                    half,
                    bits});
  }

  void vector(const std::string& name, const std::string& key, int64_t size, SynthFill fill, float center,
              float half) {
    out_.push_back({{name, DType::BF16, {size}}, key, fill, center, half, 0});
  }

  // One of the five RMSNorm1p gains: zero-centred in HF files and MTP sidecars, 1 + w in MLX trunks.
  void norm(const std::string& name, const std::string& key, int64_t size, bool shifted) {
    vector(name, key, size, SynthFill::kUniform, shifted ? 1.0f : 0.0f, kNormNoise);
  }

  void attention(const std::string& p, const std::string& k, int bits, bool shifted) {
    matrix(p + "q_proj", k + "q_proj", c_.q_proj_rows(), c_.hidden_size, bits);
    matrix(p + "k_proj", k + "k_proj", c_.kv_dim(), c_.hidden_size, bits);
    matrix(p + "v_proj", k + "v_proj", c_.kv_dim(), c_.hidden_size, bits);
    matrix(p + "o_proj", k + "o_proj", c_.hidden_size, c_.attn_out_dim(), bits);
    norm(p + "q_norm.weight", k + "q_norm", c_.head_dim, shifted);
    norm(p + "k_norm.weight", k + "k_norm", c_.head_dim, shifted);
  }

  void gdn(const std::string& p, const std::string& k, int bits) {
    const int64_t hv = c_.linear_num_value_heads;
    const int64_t taps = c_.linear_conv_kernel_dim;
    matrix(p + "in_proj_qkv", k + "in_proj_qkv", c_.conv_dim(), c_.hidden_size, bits);
    matrix(p + "in_proj_z", k + "in_proj_z", c_.value_dim(), c_.hidden_size, bits);
    matrix(p + "in_proj_b", k + "in_proj_b", hv, c_.hidden_size, bits);
    matrix(p + "in_proj_a", k + "in_proj_a", hv, c_.hidden_size, bits);
    // PyTorch's default depthwise-conv init: U(-1/sqrt(K), 1/sqrt(K)).
    const std::vector<int64_t> conv_shape =
        t_.mlx ? std::vector<int64_t>{c_.conv_dim(), taps, 1} : std::vector<int64_t>{c_.conv_dim(), 1, taps};
    out_.push_back({{p + "conv1d.weight", DType::BF16, conv_shape},
                    k + "conv1d",
                    SynthFill::kUniform,
                    0.0f,
                    1.0f / std::sqrt(static_cast<float>(taps)),
                    0});
    vector(p + "dt_bias", k + "dt_bias", hv, SynthFill::kDtBias, 0, 0);
    vector(p + "A_log", k + "A_log", hv, SynthFill::kALog, 0, 0);
    vector(p + "norm.weight", k + "gdn_norm", c_.linear_value_head_dim, SynthFill::kUniform, 1.0f,
           kNormNoise);
    matrix(p + "out_proj", k + "out_proj", c_.hidden_size, c_.value_dim(), bits);
  }

  void layer(const std::string& p, const std::string& k, LayerKind kind, int bits, bool shifted) {
    norm(p + "input_layernorm.weight", k + "input_layernorm", c_.hidden_size, shifted);
    if (kind == LayerKind::kFullAttention) {
      attention(p + "self_attn.", k + "self_attn.", bits, shifted);
    } else {
      gdn(p + "linear_attn.", k + "linear_attn.", bits);
    }
    norm(p + "post_attention_layernorm.weight", k + "post_attention_layernorm", c_.hidden_size, shifted);
    matrix(p + "mlp.gate_proj", k + "mlp.gate_proj", c_.intermediate_size, c_.hidden_size, bits);
    matrix(p + "mlp.up_proj", k + "mlp.up_proj", c_.intermediate_size, c_.hidden_size, bits);
    matrix(p + "mlp.down_proj", k + "mlp.down_proj", c_.hidden_size, c_.intermediate_size, bits);
  }

  // The MTP head: fc and norms stay BF16 (norms zero-centred); the decoder layer's linears get `body_bits`.
  void mtp(int body_bits) {
    matrix("mtp.fc", "mtp.fc", c_.hidden_size, 2 * c_.hidden_size, 0);
    norm("mtp.pre_fc_norm_embedding.weight", "mtp.pre_fc_norm_embedding", c_.hidden_size, false);
    norm("mtp.pre_fc_norm_hidden.weight", "mtp.pre_fc_norm_hidden", c_.hidden_size, false);
    layer("mtp.layers.0.", "mtp.layers.0.", LayerKind::kFullAttention, body_bits, false);
    norm("mtp.norm.weight", "mtp.norm", c_.hidden_size, false);
  }

  void trunk() {
    const std::string p = t_.mlx ? "language_model.model." : "model.language_model.";
    matrix(p + "embed_tokens", "embed_tokens", c_.vocab_size, c_.hidden_size, t_.bits);
    for (int i = 0; i < c_.num_hidden_layers; ++i) {
      layer(str(p, "layers.", i, "."), str("layers.", i, "."), c_.layer_types[i], t_.bits, t_.mlx);
    }
    norm(p + "norm.weight", "norm", c_.hidden_size, t_.mlx);
    if (!c_.tie_word_embeddings) {
      matrix(t_.mlx ? "language_model.lm_head" : "lm_head", "lm_head", c_.vocab_size, c_.hidden_size,
             t_.bits);
    }
  }

  std::vector<SynthTensor> take() { return std::move(out_); }

 private:
  const ModelConfig& c_;
  LayoutTraits t_;
  std::vector<SynthTensor> out_;
};

}  // namespace

SynthLayout parse_synth_layout(std::string_view name) {
  for (auto layout : {SynthLayout::kHf, SynthLayout::kMlxQ8, SynthLayout::kMlxQ4, SynthLayout::kMtplxQ8,
                      SynthLayout::kMtplxQ4}) {
    if (name == synth_layout_name(layout)) return layout;
  }
  fail(str("unknown layout \"", name, "\""), "--layout",
       "use one of: hf, mlx-q8, mlx-q4, mtplx-q8, mtplx-q4");
}

std::string_view synth_layout_name(SynthLayout layout) {
  switch (layout) {
    case SynthLayout::kHf:
      return "hf";
    case SynthLayout::kMlxQ8:
      return "mlx-q8";
    case SynthLayout::kMlxQ4:
      return "mlx-q4";
    case SynthLayout::kMtplxQ8:
      return "mtplx-q8";
    case SynthLayout::kMtplxQ4:
      return "mtplx-q4";
  }
  return "unknown";
}

std::vector<std::string> synth_preset_names() {
  return {"tiny", "tiny-untied", "qwen3.5-0.8b", "qwen3.5-2b", "qwen3.5-4b", "qwen3.5-9b", "qwen3.6-27b"};
}

ModelConfig synth_preset(std::string_view name) {
  // Spec §1.3. The 2B tie flag is not confirmed there; like the other small sizes it is taken as tied.
  if (name == "tiny") return tiny_config(true);
  if (name == "tiny-untied") return tiny_config(false);
  if (name == "qwen3.5-0.8b") return make_config(1024, 24, 8, 2, 16, 3584, true);
  if (name == "qwen3.5-2b") return make_config(2048, 24, 8, 2, 16, 6144, true);
  if (name == "qwen3.5-4b") return make_config(2560, 32, 16, 4, 32, 9216, true);
  if (name == "qwen3.5-9b") return make_config(4096, 32, 16, 4, 32, 12288, false);
  if (name == "qwen3.6-27b") return make_config(5120, 64, 24, 4, 48, 17408, false);
  std::string known;
  for (const auto& preset : synth_preset_names()) known += (known.empty() ? "" : ", ") + preset;
  fail(str("unknown preset \"", name, "\""), "--preset", str("use one of: ", known));
}

SynthFiles synth_tensors(const ModelConfig& config, SynthLayout layout) {
  const LayoutTraits t = traits(layout);
  SynthFiles files;
  TensorList trunk(config, t);
  trunk.trunk();
  if (t.mtp_in_trunk) trunk.mtp(0);
  files.trunk = trunk.take();
  if (t.sidecar) {
    TensorList sidecar(config, t);
    sidecar.mtp(mtp_policy_bits(MtpPolicy::kBodyInt4));
    files.sidecar = sidecar.take();
  }
  return files;
}

void synth_fill(const SynthTensor& tensor, uint64_t seed, uint64_t first, std::span<std::byte> out) {
  const uint64_t key = stream_key(seed, tensor.key);
  if (tensor.fill == SynthFill::kCodes) {
    require(out.size() % 4 == 0, "internal error: partial code word");
    for (size_t w = 0; w < out.size() / 4; ++w) {
      const auto word = static_cast<uint32_t>(mix64(key + (first + w) * 0xd1342543de82ef95ull) >> 16);
      std::memcpy(out.data() + 4 * w, &word, 4);
    }
    return;
  }
  require(tensor.spec.dtype == DType::BF16 && out.size() % 2 == 0, "internal error: synthetic dtype");
  for (size_t i = 0; i < out.size() / 2; ++i) {
    const uint16_t bits = float_to_bf16(element(tensor, key, first + i));
    std::memcpy(out.data() + 2 * i, &bits, 2);
  }
}

nlohmann::json synth_config_json(const ModelConfig& c, SynthLayout layout, std::string_view preset,
                                 uint64_t seed) {
  nlohmann::json layer_types = nlohmann::json::array();
  for (auto kind : c.layer_types)
    layer_types.push_back(kind == LayerKind::kFullAttention ? "full_attention" : "linear_attention");
  const int eos = c.eos_token_ids.empty() ? 0 : c.eos_token_ids.front();
  nlohmann::json text = {{"attention_bias", false},
                         {"attention_dropout", 0.0},
                         {"attn_output_gate", true},
                         {"bos_token_id", eos},
                         {"eos_token_id", eos},
                         {"dtype", "bfloat16"},
                         {"full_attention_interval", 4},
                         {"head_dim", c.head_dim},
                         {"hidden_act", "silu"},
                         {"hidden_size", c.hidden_size},
                         {"initializer_range", 0.02},
                         {"intermediate_size", c.intermediate_size},
                         {"layer_types", layer_types},
                         {"linear_conv_kernel_dim", c.linear_conv_kernel_dim},
                         {"linear_key_head_dim", c.linear_key_head_dim},
                         {"linear_num_key_heads", c.linear_num_key_heads},
                         {"linear_num_value_heads", c.linear_num_value_heads},
                         {"linear_value_head_dim", c.linear_value_head_dim},
                         {"mamba_ssm_dtype", "float32"},
                         {"max_position_embeddings", c.max_position_embeddings},
                         {"model_type", "qwen3_5_text"},
                         {"mtp_num_hidden_layers", 1},
                         {"mtp_use_dedicated_embeddings", false},
                         {"num_attention_heads", c.num_attention_heads},
                         {"num_hidden_layers", c.num_hidden_layers},
                         {"num_key_value_heads", c.num_key_value_heads},
                         {"output_gate_type", "swish"},
                         {"pad_token_id", nullptr},
                         {"partial_rotary_factor", 0.25},
                         {"rms_norm_eps", 1e-6},
                         {"rope_parameters",
                          {{"mrope_interleaved", true},
                           {"mrope_section", {11, 11, 10}},
                           {"partial_rotary_factor", 0.25},
                           {"rope_theta", 10000000},
                           {"rope_type", "default"}}},
                         {"tie_word_embeddings", c.tie_word_embeddings},
                         {"use_cache", true},
                         {"vocab_size", c.vocab_size}};
  nlohmann::json config = {
      {"architectures", {"Qwen3_5ForConditionalGeneration"}},
      {"model_type", "qwen3_5"},
      {"text_config", text},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"language_model_only", true},
      {"mtplx_synthetic",
       {{"preset", preset},
        {"layout", synth_layout_name(layout)},
        {"seed", seed},
        {"note",
         "random weights written by `mtplx synth` for speed and load tests; outputs are meaningless"}}}};
  const LayoutTraits t = traits(layout);
  if (t.bits > 0) {
    config["quantization"] = mlx_quantization_block({t.bits, kGroupSize});
    config["quantization_config"] = config["quantization"];
  }
  if (t.sidecar) {
    add_mtplx_sidecar_keys(config, MtpPolicy::kBodyInt4, kGroupSize,
                           mtp_quantized_modules(MtpPolicy::kBodyInt4));
  }
  return config;
}

nlohmann::json synth_generation_config(const ModelConfig& c) {
  const int eos = c.eos_token_ids.empty() ? 0 : c.eos_token_ids.front();
  nlohmann::json stop = c.vocab_size > 248046 ? nlohmann::json{248046, 248044} : nlohmann::json{eos};
  return {{"bos_token_id", eos}, {"eos_token_id", stop}, {"pad_token_id", eos}, {"do_sample", true},
          {"temperature", 0.6},  {"top_k", 20},          {"top_p", 0.95}};
}

nlohmann::json synth_runtime_contract(std::string_view preset, SynthLayout layout, uint64_t seed) {
  const std::string name = str(preset, "-", synth_layout_name(layout), "-synthetic");
  return {
      {"mtplx_version", MTPLX_VERSION},
      {"arch_id", "qwen3-next-mtp"},
      {"artifact_role", "synthetic-benchmark"},
      {"base_trunk", str("synthetic random weights (mtplx synth --preset ", preset, " --seed ", seed, ")")},
      {"mtp_sidecar", "synthetic random body-int4 MTP head (4-bit g64 layer linears, BF16 fc and norms)"},
      {"mtp_depth_max", 1},
      {"recommended_profile", "synthetic"},
      {"sampler", {{"temperature", 0.6}, {"top_p", 0.95}, {"top_k", 20}}},
      {"exactness_baseline", {{"status", "not-verified"}, {"reason", "random weights"}}},
      {"speed_evidence",
       {{"status", "not-measured"}, {"reason", "random weights; acceptance is meaningless"}}},
      {"verified_on", {{"status", "not-verified"}, {"model", name}, {"hardware", "none (synthetic)"}}}};
}

}  // namespace mtplx

#include "model/weights.h"

#include <cmath>
#include <numeric>

#include "base/error.h"

namespace mtplx {
namespace {

// Where each layout keeps the modules, and whether its trunk norms already hold 1 + w.
struct NameMap {
  std::string trunk;    // prefix of embed_tokens / layers / norm
  std::string lm_head;  // module path of the untied LM head
  std::string mtp;      // prefix of the MTP head
  bool trunk_norms_shifted = false;
};

NameMap name_map(const Checkpoint& ckpt) {
  if (ckpt.layout == CheckpointLayout::kHuggingFace) {
    const bool nested = ckpt.tensors.contains("model.language_model.embed_tokens.weight");
    return {nested ? "model.language_model." : "model.", "lm_head", "mtp.", false};
  }
  const bool nested_mtp = ckpt.tensors.contains("language_model.mtp.fc.weight");
  return {"language_model.model.", "language_model.lm_head", nested_mtp ? "language_model.mtp." : "mtp.",
          true};
}

struct QuantRule {
  int bits = 0;
  int group_size = 0;
  bool explicitly_unquantized = false;
};

class Loader {
 public:
  Loader(const Checkpoint& ckpt, Backend& backend, ModelWeights& out)
      : ckpt_(ckpt), backend_(backend), out_(out), where_(ckpt.dir.string()) {
    const auto& config = ckpt.config;
    if (config.contains("quantization") && config["quantization"].is_object()) {
      quant_ = config["quantization"];
    } else if (config.contains("quantization_config") && config["quantization_config"].is_object()) {
      quant_ = config["quantization_config"];
    }
    if (quant_.contains("mode") && quant_["mode"].is_string()) {
      const auto mode = quant_["mode"].get<std::string>();
      require(mode == "affine", str("quantization mode \"", mode, "\" is not supported"), where_,
              "mtplx reads MLX affine quantization (mode \"affine\")");
    }
  }

  // A [rows, cols] linear or embedding at `module` (".weight" plus ".scales"/".biases" when quantized),
  // in the backend's memory.
  WeightMatrix matrix(const std::string& module, int64_t rows, int64_t cols) {
    return backend_.prepare_weight(host_matrix(module, rows, cols));
  }

  // The same, as mapped from the file.
  WeightMatrix host_matrix(const std::string& module, int64_t rows, int64_t cols) {
    const TensorView& weight = ckpt_.tensors.get(module + ".weight");
    const TensorView* scales = ckpt_.tensors.find(module + ".scales");
    WeightMatrix w;
    w.rows = rows;
    w.cols = cols;
    if (scales == nullptr) {
      require(weight.dtype == DType::F32 || weight.dtype == DType::F16 || weight.dtype == DType::BF16,
              str("unsupported dtype ", dtype_name(weight.dtype), " for unquantized ", weight.describe()),
              where_, "weights must be F32, F16 or BF16, or MLX affine-quantized");
      expect_shape(weight, {rows, cols});
      w.dtype = weight.dtype;
      w.data = weight.data();
    } else {
      quantized(module, weight, *scales, w);
    }
    out_.weight_bytes += w.bytes();
    out_.parameter_count += rows * cols;
    return w;
  }

  // A 1-D float vector of `size` values; `shift` adds 1 (zero-centred RMSNorm gains).
  Tensor vector(const std::string& name, int64_t size, bool shift) {
    const TensorView& view = ckpt_.tensors.get(name);
    require(view.numel() == size, str("expected ", size, " values, found ", view.describe()), where_);
    return upload_floats(view, size, shift ? 1.0f : 0.0f, 1, size);
  }

  // The depthwise conv weight as [C, K]: HF stores [C, 1, K], MLX [C, K, 1]; both are C-major, K inner.
  Tensor conv(const std::string& name, int64_t channels, int64_t taps) {
    const TensorView& view = ckpt_.tensors.get(name);
    const bool hf = view.shape == std::vector<int64_t>{channels, 1, taps};
    const bool mlx = view.shape == std::vector<int64_t>{channels, taps, 1};
    const bool flat = view.shape == std::vector<int64_t>{channels, taps};
    require(hf || mlx || flat,
            str("conv1d weight has shape of neither [C,1,K] nor [C,K,1] with C=", channels, ", K=", taps,
                ": ", view.describe()),
            where_);
    return upload_floats(view, channels * taps, 0.0f, channels, taps);
  }

  // Mean of a vector as stored (for detecting the norm encoding of sidecars).
  double mean(const std::string& name) const {
    const TensorView& view = ckpt_.tensors.get(name);
    double sum = 0;
    for (int64_t i = 0; i < view.numel(); ++i) sum += load_float(view.data(), view.dtype, i);
    return view.numel() ? sum / static_cast<double>(view.numel()) : 0.0;
  }

 private:
  void expect_shape(const TensorView& view, std::vector<int64_t> shape) const {
    require(view.shape == shape,
            str("wrong shape for ", view.describe(), ": the config implies [", shape[0], ", ", shape[1], "]"),
            where_, "config.json does not match the weights");
  }

  Tensor upload_floats(const TensorView& view, int64_t size, float offset, int64_t rows, int64_t cols) {
    require(view.dtype == DType::F32 || view.dtype == DType::F16 || view.dtype == DType::BF16 ||
                view.dtype == DType::F64,
            str("expected a float tensor: ", view.describe()), where_);
    std::vector<float> host(size);
    for (int64_t i = 0; i < size; ++i) host[i] = load_float(view.data(), view.dtype, i) + offset;
    out_.weight_bytes += view.bytes.size();
    out_.parameter_count += size;
    return backend_.upload(host, rows, cols);
  }

  QuantRule rule_for(const std::string& module) const {
    QuantRule rule;
    if (quant_.contains(module)) {
      const auto& entry = quant_[module];
      if (entry.is_boolean() && !entry.get<bool>()) {
        rule.explicitly_unquantized = true;
      } else if (entry.is_object()) {
        rule.bits = entry.value("bits", 0);
        rule.group_size = entry.value("group_size", 0);
      }
    }
    return rule;
  }

  // Infers bits and group size from the shapes (the logical shape is known from the config) and checks
  // them against the config's quantization block where it names this module.
  void quantized(const std::string& module, const TensorView& weight, const TensorView& scales,
                 WeightMatrix& w) {
    const TensorView& biases = ckpt_.tensors.get(module + ".biases");
    require(weight.dtype == DType::U32, str("quantized weight must be U32 packed codes: ", weight.describe()),
            where_);
    require(weight.shape.size() == 2 && weight.shape[0] == w.rows && scales.shape.size() == 2 &&
                scales.shape[0] == w.rows && biases.shape == scales.shape,
            str("inconsistent quantized tensor shapes for ", module, ": ", weight.describe(), ", ",
                scales.describe(), ", ", biases.describe()),
            where_);
    const int64_t words = weight.shape[1];
    const int64_t groups = scales.shape[1];
    require(groups > 0 && w.cols % groups == 0 && (words * 32) % w.cols == 0,
            str("cannot infer quantization of ", module, " (", w.cols, " inputs, ", words, " words, ", groups,
                " groups per row)"),
            where_, "config.json does not match the weights");
    w.bits = static_cast<int>(words * 32 / w.cols);
    w.group_size = static_cast<int>(w.cols / groups);
    require(w.bits >= 2 && w.bits <= 8 && w.bits != 7, str("unsupported bit width ", w.bits, " for ", module),
            where_, "supported: 2, 3, 4, 5, 6, 8 bits");
    require(w.group_size >= 16 && w.group_size % 16 == 0,
            str("unsupported group size ", w.group_size, " for ", module), where_);
    require(scales.dtype == DType::BF16 || scales.dtype == DType::F16 || scales.dtype == DType::F32,
            str("unsupported scales dtype: ", scales.describe()), where_);
    require(biases.dtype == scales.dtype, str("biases and scales differ in dtype for ", module), where_);
    const QuantRule rule = rule_for(module);
    require(!rule.explicitly_unquantized,
            str("config.json marks ", module, " as unquantized (false) but the file has .scales"), where_);
    if (rule.bits != 0) {
      require(rule.bits == w.bits && (rule.group_size == 0 || rule.group_size == w.group_size),
              str("config.json quantizes ", module, " with ", rule.bits, " bits, group ", rule.group_size,
                  ", but the tensors hold ", w.bits, " bits, group ", w.group_size),
              where_, "config.json does not match the weights");
    }
    w.dtype = DType::U32;
    w.data = weight.data();
    w.scale_dtype = scales.dtype;
    w.scales = scales.data();
    w.biases = biases.data();
  }

  const Checkpoint& ckpt_;
  Backend& backend_;
  ModelWeights& out_;
  std::string where_;
  nlohmann::json quant_ = nlohmann::json::object();
};

AttentionWeights load_attention(Loader& load, const std::string& p, const ModelConfig& c, bool shift) {
  AttentionWeights a;
  a.q_proj = load.matrix(p + "q_proj", c.q_proj_rows(), c.hidden_size);
  a.k_proj = load.matrix(p + "k_proj", c.kv_dim(), c.hidden_size);
  a.v_proj = load.matrix(p + "v_proj", c.kv_dim(), c.hidden_size);
  a.o_proj = load.matrix(p + "o_proj", c.hidden_size, c.attn_out_dim());
  a.q_norm = load.vector(p + "q_norm.weight", c.head_dim, shift);
  a.k_norm = load.vector(p + "k_norm.weight", c.head_dim, shift);
  return a;
}

GdnWeights load_gdn(Loader& load, const std::string& p, const ModelConfig& c) {
  GdnWeights g;
  g.in_proj_qkv = load.matrix(p + "in_proj_qkv", c.conv_dim(), c.hidden_size);
  g.in_proj_z = load.matrix(p + "in_proj_z", c.value_dim(), c.hidden_size);
  g.in_proj_b = load.matrix(p + "in_proj_b", c.linear_num_value_heads, c.hidden_size);
  g.in_proj_a = load.matrix(p + "in_proj_a", c.linear_num_value_heads, c.hidden_size);
  g.out_proj = load.matrix(p + "out_proj", c.hidden_size, c.value_dim());
  g.conv1d = load.conv(p + "conv1d.weight", c.conv_dim(), c.linear_conv_kernel_dim);
  g.a_log = load.vector(p + "A_log", c.linear_num_value_heads, false);
  g.dt_bias = load.vector(p + "dt_bias", c.linear_num_value_heads, false);
  g.norm = load.vector(p + "norm.weight", c.linear_value_head_dim, false);  // plain gain in every layout
  return g;
}

LayerWeights load_layer(Loader& load, const std::string& p, LayerKind kind, const ModelConfig& c,
                        bool shift) {
  LayerWeights layer;
  layer.kind = kind;
  layer.input_norm = load.vector(p + "input_layernorm.weight", c.hidden_size, shift);
  layer.post_norm = load.vector(p + "post_attention_layernorm.weight", c.hidden_size, shift);
  if (kind == LayerKind::kFullAttention) {
    layer.attn = load_attention(load, p + "self_attn.", c, shift);
  } else {
    layer.gdn = load_gdn(load, p + "linear_attn.", c);
  }
  layer.mlp.gate_proj = load.matrix(p + "mlp.gate_proj", c.intermediate_size, c.hidden_size);
  layer.mlp.up_proj = load.matrix(p + "mlp.up_proj", c.intermediate_size, c.hidden_size);
  layer.mlp.down_proj = load.matrix(p + "mlp.down_proj", c.hidden_size, c.intermediate_size);
  return layer;
}

// Decides whether the MTP norms are stored zero-centred. HF checkpoints always are; MTPLX sidecars say so in
// config.json (mtplx_mtp_norm_encoding); without the key the stored gains tell: zero-centred gains average
// near 0, shifted ones near 1. Getting this wrong silently drops acceptance to zero.
void decide_mtp_norm_encoding(const Checkpoint& ckpt, const Loader& load, const std::string& p,
                              ModelWeights& out) {
  if (ckpt.layout == CheckpointLayout::kHuggingFace) {
    out.mtp_norm_encoding = NormEncoding::kDelta;
    out.mtp_norm_encoding_source = "hf";
    return;
  }
  const auto& config = ckpt.config;
  if (config.contains("mtplx_mtp_norm_encoding") && config["mtplx_mtp_norm_encoding"].is_string()) {
    const auto value = config["mtplx_mtp_norm_encoding"].get<std::string>();
    if (value == "delta" || value == "zero_centered" || value == "raw") {
      out.mtp_norm_encoding = NormEncoding::kDelta;
    } else if (value == "shifted" || value == "plus_one" || value == "effective") {
      out.mtp_norm_encoding = NormEncoding::kShifted;
    } else {
      fail(str("unknown mtplx_mtp_norm_encoding \"", value, "\""), (ckpt.dir / "config.json").string(),
           "use \"delta\" (zero-centred gains) or \"shifted\" (gains already 1 + w)");
    }
    out.mtp_norm_encoding_source = "config";
    return;
  }
  double sum = 0;
  int count = 0;
  for (const char* name : {"pre_fc_norm_embedding.weight", "pre_fc_norm_hidden.weight", "norm.weight",
                           "layers.0.input_layernorm.weight", "layers.0.post_attention_layernorm.weight"}) {
    sum += load.mean(p + name);
    ++count;
  }
  out.mtp_norm_encoding = sum / count < 0.5 ? NormEncoding::kDelta : NormEncoding::kShifted;
  out.mtp_norm_encoding_source = "detected";
}

MtpWeights load_mtp(Loader& load, const std::string& p, const ModelConfig& c, bool shift) {
  MtpWeights m;
  m.fc = load.matrix(p + "fc", c.hidden_size, 2 * c.hidden_size);
  m.pre_fc_norm_embedding = load.vector(p + "pre_fc_norm_embedding.weight", c.hidden_size, shift);
  m.pre_fc_norm_hidden = load.vector(p + "pre_fc_norm_hidden.weight", c.hidden_size, shift);
  m.norm = load.vector(p + "norm.weight", c.hidden_size, shift);
  m.layer = load_layer(load, p + "layers.0.", LayerKind::kFullAttention, c, shift);
  return m;
}

}  // namespace

ModelWeights load_weights(const Checkpoint& ckpt, const ModelConfig& config, Backend& backend) {
  ModelWeights out;
  Loader load(ckpt, backend, out);
  const NameMap names = name_map(ckpt);
  const bool shift_trunk = !names.trunk_norms_shifted;
  const WeightMatrix embed_host =
      load.host_matrix(names.trunk + "embed_tokens", config.vocab_size, config.hidden_size);
  // Tie rule: a checkpoint without an LM-head tensor uses the embedding, whatever the config says. Untied,
  // the embedding is only looked up (prepare_table).
  if (ckpt.tensors.contains(names.lm_head + ".weight")) {
    out.embed = backend.prepare_table(embed_host);
    out.lm_head_host = load.host_matrix(names.lm_head, config.vocab_size, config.hidden_size);
    out.lm_head = backend.prepare_weight(out.lm_head_host);
  } else {
    out.embed = backend.prepare_weight(embed_host);
    out.lm_head_host = embed_host;
    out.lm_head = out.embed;
  }
  out.final_norm = load.vector(names.trunk + "norm.weight", config.hidden_size, shift_trunk);
  for (int i = 0; i < config.num_hidden_layers; ++i) {
    out.layers.push_back(
        load_layer(load, str(names.trunk, "layers.", i, "."), config.layer_types[i], config, shift_trunk));
  }
  if (ckpt.tensors.contains(names.mtp + "fc.weight")) {
    decide_mtp_norm_encoding(ckpt, load, names.mtp, out);
    out.mtp = load_mtp(load, names.mtp, config, out.mtp_norm_encoding == NormEncoding::kDelta);
  }
  return out;
}

}  // namespace mtplx

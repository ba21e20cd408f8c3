#include "model/forge.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "backend/cpu/cpu_backend.h"
#include "base/error.h"
#include "base/thread_pool.h"
#include "io/checkpoint.h"
#include "model/quantize.h"
#include "model/qwen35.h"

namespace mtplx {
namespace fs = std::filesystem;
namespace {

// Files copied verbatim when the source has them: tokenizer, chat template, sampling defaults.
constexpr const char* kCopiedFiles[] = {"tokenizer.json",
                                        "tokenizer_config.json",
                                        "special_tokens_map.json",
                                        "added_tokens.json",
                                        "vocab.json",
                                        "merges.txt",
                                        "chat_template.jinja",
                                        "chat_template.json",
                                        "generation_config.json"};

enum class Op { kCast, kShiftNorm, kQuantWeight, kQuantScales, kQuantBiases };

// One output tensor and how its bytes come from a source tensor.
struct Planned {
  TensorSpec spec;
  const TensorView* source = nullptr;
  Op op = Op::kCast;
  QuantSpec quant;
  std::string module;  // output module path of a quantized matrix
};

struct Plan {
  std::vector<Planned> trunk;
  std::vector<Planned> sidecar;
  std::vector<std::string> sidecar_quantized;  // modules
  size_t sidecar_sources = 0;
};

void check_float(const TensorView& view, const std::string& where) {
  require(view.dtype == DType::BF16 || view.dtype == DType::F16 || view.dtype == DType::F32,
          str("unsupported dtype ", dtype_name(view.dtype), " for ", view.describe()), where,
          "forge reads unquantized BF16, F16 or F32 Hugging Face checkpoints");
}

// mlx-lm casts every floating parameter to the conversion dtype except A_log (its qwen3_5 cast predicate).
DType output_dtype(const std::string& name, const TensorView& view) {
  return name.ends_with(".A_log") ? view.dtype : DType::BF16;
}

void add_tensor(std::vector<Planned>& out, const std::string& name, const TensorView& view, Op op) {
  out.push_back({{name, output_dtype(name, view), view.shape}, &view, op, {}, {}});
}

// A [rows, cols] matrix: quantized as weight (U32 codes) + scales + biases, or kept in BF16 when not
// quantized or when its input size does not divide into groups (mlx-lm skips those too).
bool add_matrix(std::vector<Planned>& out, const std::string& module, const TensorView& view,
                QuantSpec quant) {
  const int64_t rows = view.shape[0];
  const int64_t cols = view.shape[1];
  if (!quant.quantized() || cols % quant.group_size != 0) {
    add_tensor(out, module + ".weight", view, Op::kCast);
    return false;
  }
  const int64_t groups = cols / quant.group_size;
  out.push_back({{module + ".weight", DType::U32, {rows, packed_words_per_row(cols, quant.bits)}},
                 &view,
                 Op::kQuantWeight,
                 quant,
                 module});
  out.push_back({{module + ".scales", DType::BF16, {rows, groups}}, &view, Op::kQuantScales, quant, module});
  out.push_back({{module + ".biases", DType::BF16, {rows, groups}}, &view, Op::kQuantBiases, quant, module});
  return true;
}

// The 15 tensors of a one-layer MTP head (mtplx_notes §3.3), without the "mtp." prefix.
std::vector<std::string> mtp_tensor_names() {
  std::vector<std::string> names = {"fc.weight",
                                    "pre_fc_norm_embedding.weight",
                                    "pre_fc_norm_hidden.weight",
                                    "norm.weight",
                                    "layers.0.input_layernorm.weight",
                                    "layers.0.post_attention_layernorm.weight",
                                    "layers.0.self_attn.q_norm.weight",
                                    "layers.0.self_attn.k_norm.weight"};
  for (const auto& module : mtp_body_linears()) names.push_back(module.substr(4) + ".weight");
  return names;
}

Plan make_plan(const Checkpoint& ckpt, const ModelConfig& config, const ForgeOptions& options) {
  const std::string where = ckpt.dir.string();
  Plan plan;
  std::map<std::string, const TensorView*> mtp;
  const QuantSpec trunk_quant{options.trunk_bits, options.group_size};
  for (const auto& [name, view] : ckpt.tensors.all()) {
    if (name.starts_with("model.visual.")) continue;  // the vision tower: not part of a text artifact
    if (name.starts_with("mtp.")) {
      mtp[name] = &view;
      continue;
    }
    if (name == "lm_head.weight" && config.tie_word_embeddings) continue;  // tied: mlx-lm drops it
    require(name.starts_with("model.") || name == "lm_head.weight",
            str("unexpected tensor ", view.describe(), " in a Qwen3.5/3.6 checkpoint"), where,
            "forge reads Hugging Face Qwen3_5ForCausalLM / Qwen3_5ForConditionalGeneration checkpoints");
    check_float(view, where);
    const std::string out = mlx_trunk_name(name);
    if (view.shape.size() == 2 && name.ends_with(".weight")) {
      add_matrix(plan.trunk, out.substr(0, out.size() - 7), view, trunk_quant);
    } else if (view.shape.size() == 1 && mlx_shifts_norm(out)) {
      add_tensor(plan.trunk, out, view, Op::kShiftNorm);
    } else {
      add_tensor(plan.trunk, out, view, Op::kCast);
      // HF stores the depthwise conv as [C, 1, K], mlx-lm as [C, K, 1]: the same bytes, another shape.
      if (name.ends_with("conv1d.weight") && view.shape.size() == 3 && view.shape[1] == 1)
        plan.trunk.back().spec.shape = {view.shape[0], view.shape[2], 1};
    }
  }

  require(!mtp.empty(), "the checkpoint has no MTP weights (no mtp.* tensors)", where,
          "forge needs the original Hugging Face checkpoint with its native MTP head (mtp.* tensors); some "
          "re-uploads strip them");
  const auto expected = mtp_tensor_names();
  std::string missing;
  for (const auto& name : expected)
    if (!mtp.contains("mtp." + name)) missing += (missing.empty() ? "mtp." : ", mtp.") + name;
  require(missing.empty(), str("MTP weights are incomplete: missing ", missing), where,
          "use a complete checkpoint (all 15 mtp.* tensors of one MTP layer)");
  std::string extra;
  for (const auto& [name, view] : mtp)
    if (std::find(expected.begin(), expected.end(), name.substr(4)) == expected.end())
      extra += (extra.empty() ? "" : ", ") + name;
  require(extra.empty(), str("unexpected MTP tensors: ", extra), where,
          "mtplx supports Qwen3.5/3.6 dense checkpoints with one dense MTP layer (15 mtp.* tensors)");
  plan.sidecar_sources = mtp.size();
  const QuantSpec mtp_quant{mtp_policy_bits(options.mtp), options.group_size};
  const auto quantized = mtp_quantized_modules(options.mtp);
  for (const auto& [name, view] : mtp) {
    check_float(*view, where);
    const std::string module = name.substr(0, name.size() - 7);  // drop ".weight"
    if (std::find(quantized.begin(), quantized.end(), module) != quantized.end()) {
      if (add_matrix(plan.sidecar, module, *view, mtp_quant)) plan.sidecar_quantized.push_back(module);
    } else {
      add_tensor(plan.sidecar, name, *view, Op::kCast);  // fc (unless int8) and the norms, kept zero-centred
    }
  }
  return plan;
}

std::vector<TensorSpec> specs_of(const std::vector<Planned>& planned) {
  std::vector<TensorSpec> specs;
  for (const auto& p : planned) specs.push_back(p.spec);
  return specs;
}

// Produces output bytes. A quantized matrix is quantized once, when the first of its three tensors is asked
// for, and kept until all three have been written.
class Producer {
 public:
  explicit Producer(ThreadPool& pool) : pool_(pool) {}

  TensorBytes bytes_of(const std::vector<Planned>& planned) {
    return [this, &planned](size_t index, uint64_t offset, std::span<std::byte> out) {
      produce(planned[index], offset, out);
    };
  }

 private:
  struct Cached {
    QuantizedMatrix matrix;
    int finished = 0;  // of weight, scales, biases
  };

  void produce(const Planned& p, uint64_t offset, std::span<std::byte> out) {
    const TensorView& src = *p.source;
    if (p.op == Op::kCast || p.op == Op::kShiftNorm) {
      const float shift = p.op == Op::kShiftNorm ? 1.0f : 0.0f;
      if (p.spec.dtype == src.dtype && shift == 0.0f) {
        std::memcpy(out.data(), src.bytes.data() + offset, out.size());
        return;
      }
      require(p.spec.dtype == DType::BF16, "internal error: forge casts only to BF16");
      for (uint64_t i = 0; i < out.size() / 2; ++i) {
        // The shift is added in the source precision and then rounded, as mlx-lm sanitizes before casting.
        const uint16_t bits = float_to_bf16(load_float(src.data(), src.dtype, offset / 2 + i) + shift);
        std::memcpy(out.data() + 2 * i, &bits, 2);
      }
      return;
    }
    Cached& cached = matrix(p);
    std::span<const std::byte> all;
    if (p.op == Op::kQuantWeight) {
      all = std::as_bytes(std::span<const uint32_t>(cached.matrix.words));
    } else if (p.op == Op::kQuantScales) {
      all = std::as_bytes(std::span<const uint16_t>(cached.matrix.scales));
    } else {
      all = std::as_bytes(std::span<const uint16_t>(cached.matrix.biases));
    }
    std::memcpy(out.data(), all.data() + offset, out.size());
    if (offset + out.size() == all.size() && ++cached.finished == 3) cache_.erase(p.module);
  }

  // Quantizes the source matrix row by row, from its values rounded to BF16 (mlx-lm casts, then quantizes).
  Cached& matrix(const Planned& p) {
    auto it = cache_.find(p.module);
    if (it != cache_.end()) return it->second;
    const TensorView& src = *p.source;
    const int64_t rows = src.shape[0];
    const int64_t cols = src.shape[1];
    const int bits = p.quant.bits;
    const int group = p.quant.group_size;
    Cached& cached = cache_[p.module];
    cached.matrix =
        quantize_matrix_rows(rows, cols, bits, group, &pool_, [&](int64_t r, std::span<float> out) {
          for (int64_t c = 0; c < cols; ++c)
            out[c] = bf16_to_float(float_to_bf16(load_float(src.data(), src.dtype, r * cols + c)));
        });
    return cached;
  }

  ThreadPool& pool_;
  std::map<std::string, Cached> cache_;
};

nlohmann::json build_stats(const Plan& plan, const ForgeOptions& options, uint64_t sidecar_file_bytes) {
  const int bits = mtp_policy_bits(options.mtp);
  nlohmann::json linears = nlohmann::json::object();
  for (const auto& module : plan.sidecar_quantized)
    linears[module] = {{"bits", bits}, {"group_size", options.group_size}, {"mode", "affine"}};
  return {{"bits", bits > 0 ? bits : 16},
          {"group_size", bits > 0 ? nlohmann::json(options.group_size) : nlohmann::json(nullptr)},
          {"mode", bits > 0 ? "affine" : "none"},
          {"output_size_bytes", sidecar_file_bytes},
          {"output_tensor_count", plan.sidecar.size()},
          {"policy", mtp_policy_id(options.mtp)},
          {"quantization", mtp_policy_name(options.mtp)},
          {"quantized_linears", linears},
          {"source_tensor_count", plan.sidecar_sources}};
}

std::string trunk_description(const ForgeOptions& options) {
  return options.trunk_bits > 0
             ? str("MLX affine ", options.trunk_bits, "-bit, group size ", options.group_size)
             : std::string("MLX BF16 (unquantized)");
}

std::string sidecar_description(const ForgeOptions& options, const fs::path& source) {
  const int bits = mtp_policy_bits(options.mtp);
  const std::string quant =
      options.mtp == MtpPolicy::kBf16
          ? std::string("all BF16")
          : str(mtp_policy_name(options.mtp), " (affine ", bits, "-bit g", options.group_size, " on ",
                options.mtp == MtpPolicy::kInt8 ? "fc and the mtp.layers.0 linears"
                                                : "the mtp.layers.0 linears",
                "), ", options.mtp == MtpPolicy::kInt8 ? "norms BF16" : "fc and norms BF16");
  return str("native mtp.* tensors of ", source.filename().string(), "; ", quant,
             "; norms zero-centred (delta); quantization recorded in config.json");
}

nlohmann::json sampler_from(const std::optional<nlohmann::json>& generation, double temperature) {
  nlohmann::json sampler = {{"temperature", temperature}, {"top_p", 0.95}, {"top_k", 20}};
  if (generation && generation->is_object()) {
    for (const char* key : {"top_p", "top_k"})
      if (generation->contains(key) && (*generation)[key].is_number()) sampler[key] = (*generation)[key];
  }
  return sampler;
}

// The contract before verification; verify() fills in the evidence.
nlohmann::json initial_contract(const Checkpoint& src, const ForgeOptions& options,
                                const std::string& dtype) {
  double temperature = 0.6;  // Qwen's recommended sampler; generation_config.json overrides it
  if (src.generation_config && src.generation_config->contains("temperature") &&
      (*src.generation_config)["temperature"].is_number())
    temperature = (*src.generation_config)["temperature"].get<double>();
  const std::string trunk = options.trunk_bits > 0 ? str("q", options.trunk_bits) : "bf16";
  return {{"mtplx_version", MTPLX_VERSION},
          {"arch_id", "qwen3-next-mtp"},
          {"artifact_role", "forged"},
          {"base_trunk",
           str(src.dir.filename().string(), " converted like mlx-lm: ", trunk_description(options))},
          {"mtp_sidecar", sidecar_description(options, src.dir)},
          {"mtp_depth_max", 2},  // the MTPLX default depth; verification reports depths 1..3
          {"recommended_profile", "sustained"},
          {"sampler", sampler_from(src.generation_config, temperature)},
          {"recommended_draft_sampler", sampler_from(src.generation_config, 0.7)},
          {"exactness_baseline", {{"status", "not-verified"}, {"reason", "forged with --no-verify"}}},
          {"speed_evidence", {{"status", "not-measured"}, {"reason", "forged with --no-verify"}}},
          {"verified_on", {{"status", "not-verified"}}},
          {"forge_provenance",
           {{"source_path", fs::absolute(src.dir).lexically_normal().string()},
            {"source_format", "bf16_native"},
            {"source_dtype", dtype},
            {"forge_recipe",
             {{"trunk", trunk},
              {"trunk_bits", options.trunk_bits},
              {"group_size", options.group_size},
              {"mtp_quantization", mtp_policy_name(options.mtp)},
              {"mtp_policy", mtp_policy_id(options.mtp)},
              {"body_bits", mtp_policy_bits(options.mtp)},
              {"body_group_size", options.group_size},
              {"body_mode", "affine"}}},
            {"forged_at", iso8601_now()},
            {"mtplx_version", MTPLX_VERSION},
            {"forged_locally", true}}}};
}

std::string source_dtype(const Plan& plan) {
  std::set<std::string> names;
  for (const auto* list : {&plan.trunk, &plan.sidecar})
    for (const auto& p : *list) names.insert(std::string(dtype_name(p.source->dtype)));
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : "+") + n;
  return out;
}

}  // namespace

int parse_trunk_format(std::string_view name) {
  if (name == "q8") return 8;
  if (name == "q4") return 4;
  if (name == "bf16") return 0;
  fail(str("unknown trunk format \"", name, "\""), "--trunk", "use one of: q8, q4, bf16");
}

ForgeResult forge_checkpoint(const ForgeOptions& options) {
  Stopwatch clock;
  check_quant_params(options.group_size, 8, options.group_size, "--group-size");
  const Checkpoint src = open_checkpoint(options.source);
  const std::string where = src.dir.string();
  std::error_code ignored;
  require(!fs::equivalent(options.out, options.source, ignored), "the output folder is the source folder",
          where, "write the artifact to a new folder");
  require(src.layout == CheckpointLayout::kHuggingFace,
          str("the source is already an ", layout_name(src.layout), " checkpoint"), where,
          "forge converts the original Hugging Face checkpoint (model.* / model.language_model.* names)");
  require(!src.config.contains("quantization") && !src.config.contains("quantization_config"),
          "the source checkpoint is already quantized (config.json has a quantization block)", where,
          "forge needs the unquantized BF16 checkpoint");
  const ModelConfig config = parse_model_config(src.config, (src.dir / "config.json").string());
  require(config.mtp_num_hidden_layers <= 1,
          str("config.json declares ", config.mtp_num_hidden_layers, " MTP layers"), where,
          "mtplx supports Qwen3.5/3.6 dense checkpoints with one MTP layer");
  const Plan plan = make_plan(src, config, options);
  {
    // Every tensor the model needs is present with the shape config.json implies (no data is touched).
    CpuBackend probe(1);
    const Qwen35Model model(src, probe);
  }

  const auto trunk = specs_of(plan.trunk);
  const auto sidecar = specs_of(plan.sidecar);
  const uint64_t total = total_bytes(trunk) + total_bytes(sidecar);
  OutputDir dir(options.out, options.force, "OUT_DIR");
  dir.check_space(total);
  ByteProgress progress(options.progress, "forge", total);
  progress.line(str(src.dir.string(), " -> ", dir.out().string(), ": trunk ", trunk_description(options),
                    ", ", trunk.size(), " tensors; MTP sidecar ", mtp_policy_name(options.mtp), ", ",
                    sidecar.size(), " tensors; ", size_text(total)));

  nlohmann::json out_config = src.config;
  if (options.trunk_bits > 0) {
    out_config["quantization"] = mlx_quantization_block({options.trunk_bits, options.group_size});
    out_config["quantization_config"] = out_config["quantization"];
  }
  add_mtplx_sidecar_keys(out_config, options.mtp, options.group_size, plan.sidecar_quantized);
  dir.write_json("config.json", out_config);
  for (const char* name : kCopiedFiles)
    if (fs::exists(src.dir / name)) dir.copy_file(src.dir / name, name);

  ThreadPool pool(options.threads);
  Producer producer(pool);
  TensorFileWriter writer(progress, std::max(largest_tensor(trunk), largest_tensor(sidecar)));
  const std::map<std::string, std::string> metadata = {{"format", "mlx"}};
  const auto shards = write_sharded(writer, dir.path(), trunk, options.shard_bytes, metadata,
                                    producer.bytes_of(plan.trunk), progress);
  const uint64_t sidecar_bytes =
      writer.write(dir.path() / "mtp.safetensors", sidecar, metadata, producer.bytes_of(plan.sidecar));
  progress.line(str("wrote mtp.safetensors (", size_text(sidecar_bytes), ")"));

  ForgeResult result;
  result.build_stats = build_stats(plan, options, sidecar_bytes);
  dir.write_json("mtplx_build_stats.json", result.build_stats);
  result.contract = initial_contract(src, options, source_dtype(plan));
  dir.write_json("mtplx_runtime.json", result.contract);
  if (options.verify) {
    progress.line("verifying the artifact (greedy AR against MTP depths 1..3)");
    result.contract.update(options.verify(dir.path()));
    dir.write_json("mtplx_runtime.json", result.contract);
  }
  dir.commit();

  result.dir = dir.out();
  result.trunk_tensors = trunk.size();
  result.shards = shards.size();
  result.bytes = total;
  result.seconds = clock.seconds();
  progress.line(str("done in ", result.seconds, " s: ", result.dir.string()));
  return result;
}

}  // namespace mtplx

// mtplx synth: tiny presets in every layout load through open_checkpoint + Qwen35Model and run to finite
// logits; every tensor's name, dtype and shape is what the spec (§2 inventory, §5 MLX layout, mtplx_notes
// §3.3 sidecar) says, with the expectation written here from the spec, not from the synth code.
#include "model/synth.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/matmul.h"
#include "base/error.h"
#include "io/checkpoint.h"
#include "model/qwen35.h"
#include "support/temp_dir.h"

namespace mtplx {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

struct Expected {
  DType dtype;
  std::vector<int64_t> shape;
  bool operator==(const Expected&) const = default;
};
using Inventory = std::map<std::string, Expected>;

// Tiny preset: H 128, 4 layers (3 is full attention), Hq 4 / Hkv 2 x D 64, Hk 2 / Hv 4 x 32, I 256, V 1024,
// conv kernel 4. Derived (spec §1.4): q_proj rows 2*Hq*D = 512, kv 128, o_proj in Hq*D = 256,
// key_dim 64, value_dim 128, conv_dim 2*64 + 128 = 256.
struct Tiny {
  bool tied = true;
  bool mlx = false;  // MLX names + [C, K, 1] conv + quantized linears
  int bits = 0;
};

// Spec §5.2: a quantized [out, in] linear is weight U32 [out, in*B/32] + scales/biases BF16 [out, in/64].
void linear(Inventory& inv, const std::string& module, int64_t out, int64_t in, int bits) {
  if (bits == 0) {
    inv[module + ".weight"] = {DType::BF16, {out, in}};
    return;
  }
  inv[module + ".weight"] = {DType::U32, {out, in * bits / 32}};
  inv[module + ".scales"] = {DType::BF16, {out, in / 64}};
  inv[module + ".biases"] = {DType::BF16, {out, in / 64}};
}

void attention_layer(Inventory& inv, const std::string& p, int bits) {
  inv[p + "input_layernorm.weight"] = {DType::BF16, {128}};
  inv[p + "post_attention_layernorm.weight"] = {DType::BF16, {128}};
  linear(inv, p + "self_attn.q_proj", 512, 128, bits);
  linear(inv, p + "self_attn.k_proj", 128, 128, bits);
  linear(inv, p + "self_attn.v_proj", 128, 128, bits);
  linear(inv, p + "self_attn.o_proj", 128, 256, bits);
  inv[p + "self_attn.q_norm.weight"] = {DType::BF16, {64}};
  inv[p + "self_attn.k_norm.weight"] = {DType::BF16, {64}};
  linear(inv, p + "mlp.gate_proj", 256, 128, bits);
  linear(inv, p + "mlp.up_proj", 256, 128, bits);
  linear(inv, p + "mlp.down_proj", 128, 256, bits);
}

void gdn_layer(Inventory& inv, const std::string& p, const Tiny& t) {
  inv[p + "input_layernorm.weight"] = {DType::BF16, {128}};
  inv[p + "post_attention_layernorm.weight"] = {DType::BF16, {128}};
  linear(inv, p + "linear_attn.in_proj_qkv", 256, 128, t.bits);
  linear(inv, p + "linear_attn.in_proj_z", 128, 128, t.bits);
  linear(inv, p + "linear_attn.in_proj_b", 4, 128, t.bits);
  linear(inv, p + "linear_attn.in_proj_a", 4, 128, t.bits);
  linear(inv, p + "linear_attn.out_proj", 128, 128, t.bits);
  inv[p + "linear_attn.conv1d.weight"] = {
      DType::BF16, t.mlx ? std::vector<int64_t>{256, 4, 1} : std::vector<int64_t>{256, 1, 4}};
  inv[p + "linear_attn.A_log"] = {DType::BF16, {4}};
  inv[p + "linear_attn.dt_bias"] = {DType::BF16, {4}};
  inv[p + "linear_attn.norm.weight"] = {DType::BF16, {32}};
  linear(inv, p + "mlp.gate_proj", 256, 128, t.bits);
  linear(inv, p + "mlp.up_proj", 256, 128, t.bits);
  linear(inv, p + "mlp.down_proj", 128, 256, t.bits);
}

// mtplx_notes §3.3: 15 base tensors; body-int4 adds scales/biases for the 7 layer linears (29 in all).
void mtp_head(Inventory& inv, int body_bits) {
  inv["mtp.fc.weight"] = {DType::BF16, {128, 256}};
  inv["mtp.pre_fc_norm_embedding.weight"] = {DType::BF16, {128}};
  inv["mtp.pre_fc_norm_hidden.weight"] = {DType::BF16, {128}};
  inv["mtp.norm.weight"] = {DType::BF16, {128}};
  attention_layer(inv, "mtp.layers.0.", body_bits);
}

Inventory expected_trunk(const Tiny& t) {
  Inventory inv;
  const std::string p = t.mlx ? "language_model.model." : "model.language_model.";
  linear(inv, p + "embed_tokens", 1024, 128, t.bits);
  for (int i = 0; i < 4; ++i) {
    const std::string lp = p + "layers." + std::to_string(i) + ".";
    if (i == 3) {
      attention_layer(inv, lp, t.bits);
    } else {
      gdn_layer(inv, lp, t);
    }
  }
  inv[p + "norm.weight"] = {DType::BF16, {128}};
  if (!t.tied) linear(inv, t.mlx ? "language_model.lm_head" : "lm_head", 1024, 128, t.bits);
  if (!t.mlx) mtp_head(inv, 0);  // HF checkpoints carry the MTP head in the shards
  return inv;
}

Inventory inventory_of(const std::vector<fs::path>& files) {
  Inventory inv;
  for (const auto& file : files) {
    SafetensorsFile st(file);
    for (const auto& view : st.tensors()) inv[view.name] = {view.dtype, view.shape};
  }
  return inv;
}

std::vector<fs::path> trunk_files(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto name = entry.path().filename().string();
    if (name.starts_with("model") && name.ends_with(".safetensors")) files.push_back(entry.path());
  }
  return files;
}

fs::path synth(const fs::path& out, const std::string& preset, SynthLayout layout,
               uint64_t shard_bytes = 5'000'000'000) {
  SynthOptions options;
  options.preset = preset;
  options.layout = layout;
  options.out = out;
  options.shard_bytes = shard_bytes;
  options.threads = 2;
  synthesize_checkpoint(options);
  return out;
}

std::vector<float> to_host(Backend& backend, const Tensor& t) {
  std::vector<float> host(static_cast<size_t>(t.numel()));
  backend.download(t, host);
  return host;
}

bool all_finite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

double spread(const std::vector<float>& v) {
  double sum = 0, sq = 0;
  for (float x : v) {
    sum += x;
    sq += double{x} * x;
  }
  const double n = static_cast<double>(v.size());
  return std::sqrt(std::max(0.0, sq / n - (sum / n) * (sum / n)));
}

struct Case {
  std::string preset;
  SynthLayout layout;
};

class SynthLayouts : public ::testing::TestWithParam<Case> {};

TEST_P(SynthLayouts, WritesTheSpecLayoutAndRuns) {
  const Case c = GetParam();
  const bool tied = c.preset == "tiny";
  const bool mlx = c.layout != SynthLayout::kHf;
  const bool mtplx = c.layout == SynthLayout::kMtplxQ8 || c.layout == SynthLayout::kMtplxQ4;
  const int bits = !mlx ? 0 : (c.layout == SynthLayout::kMlxQ8 || c.layout == SynthLayout::kMtplxQ8 ? 8 : 4);
  TempDir tmp;
  const fs::path dir = synth(tmp / "model", c.preset, c.layout);

  // Names, dtypes and shapes, file by file.
  EXPECT_EQ(inventory_of(trunk_files(dir)), expected_trunk({tied, mlx, bits}));
  if (mtplx) {
    Inventory sidecar;
    mtp_head(sidecar, 4);
    EXPECT_EQ(sidecar.size(), 29u);
    EXPECT_EQ(inventory_of({dir / "mtp.safetensors"}), sidecar);
  } else {
    EXPECT_FALSE(fs::exists(dir / "mtp.safetensors"));
  }
  EXPECT_TRUE(fs::exists(dir / "model.safetensors.index.json"));

  const Checkpoint ckpt = open_checkpoint(dir);
  EXPECT_EQ(ckpt.layout, mtplx ? CheckpointLayout::kMtplx
                         : mlx ? CheckpointLayout::kMlx
                               : CheckpointLayout::kHuggingFace);
  EXPECT_EQ(ckpt.contract.has_value(), mtplx);
  if (mtplx) {
    EXPECT_EQ(ckpt.contract->raw["artifact_role"], "synthetic-benchmark");
    EXPECT_EQ(ckpt.contract->raw["exactness_baseline"]["status"], "not-verified");
    EXPECT_EQ(ckpt.config["mtplx_mtp_norm_encoding"], "delta");
  }
  if (mlx) {
    for (const char* key : {"quantization", "quantization_config"}) {
      EXPECT_EQ(ckpt.config[key]["bits"], bits);
      EXPECT_EQ(ckpt.config[key]["group_size"], 64);
      EXPECT_EQ(ckpt.config[key]["mode"], "affine");
    }
  } else {
    EXPECT_FALSE(ckpt.config.contains("quantization"));
  }

  CpuBackend backend(2);
  Qwen35Model model(ckpt, backend);
  const ModelConfig& config = model.config();
  EXPECT_EQ(config.hidden_size, 128);
  EXPECT_EQ(config.num_hidden_layers, 4);
  EXPECT_EQ(config.vocab_size, 1024);
  EXPECT_EQ(config.tie_word_embeddings, tied);
  EXPECT_EQ(config.full_attention_layers(), 1);
  EXPECT_EQ(config.mtp_num_hidden_layers, 1);

  // Quantization per module (§5.3): every linear and the embedding, lm_head when untied.
  const ModelWeights& w = model.weights();
  EXPECT_EQ(w.embed.bits, bits);
  EXPECT_EQ(w.lm_head.bits, bits);
  EXPECT_EQ(w.layers[0].gdn.in_proj_qkv.bits, bits);
  EXPECT_EQ(w.layers[0].gdn.in_proj_b.bits, bits);
  EXPECT_EQ(w.layers[3].attn.q_proj.bits, bits);
  EXPECT_EQ(w.layers[3].mlp.down_proj.bits, bits);
  if (bits) {
    EXPECT_EQ(w.layers[1].mlp.up_proj.group_size, 64);
  }
  EXPECT_EQ(model.has_mtp(), !mlx || mtplx);
  if (mtplx) {
    EXPECT_EQ(w.mtp->fc.bits, 0);
    EXPECT_EQ(w.mtp->layer.attn.q_proj.bits, 4);
    EXPECT_EQ(w.mtp->layer.mlp.gate_proj.bits, 4);
    EXPECT_EQ(w.mtp_norm_encoding, NormEncoding::kDelta);
    EXPECT_EQ(w.mtp_norm_encoding_source, "config");
  }
  // Effective RMSNorm gains are near 1 in every layout (HF stores w, MLX stores 1 + w).
  const auto gain = to_host(backend, w.layers[0].input_norm);
  for (float g : gain) EXPECT_NEAR(g, 1.0f, 0.05f);

  const std::vector<int32_t> tokens = {1, 17, 300, 999, 5, 42};
  ModelState state = model.new_state(16);
  const Tensor hidden = model.forward(tokens, state);
  const auto logits = to_host(backend, model.logits(hidden));
  ASSERT_EQ(logits.size(), tokens.size() * 1024);
  EXPECT_TRUE(all_finite(logits));
  EXPECT_GT(spread(logits), 0.05);  // not collapsed
  EXPECT_LT(spread(logits), 20.0);  // not blown up
  if (model.has_mtp()) {
    const std::vector<int32_t> next = {17, 300};
    const Tensor mtp = model.mtp_forward(next, hidden.row_view(0, 2), 0, state);
    EXPECT_TRUE(all_finite(to_host(backend, model.logits(mtp))));
  }
  // One more decode step after the prefill.
  const std::vector<int32_t> one = {7};
  EXPECT_TRUE(all_finite(to_host(backend, model.logits(model.forward(one, state)))));
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (const char* preset : {"tiny", "tiny-untied"}) {
    for (auto layout : {SynthLayout::kHf, SynthLayout::kMlxQ8, SynthLayout::kMlxQ4, SynthLayout::kMtplxQ8,
                        SynthLayout::kMtplxQ4}) {
      cases.push_back({preset, layout});
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Tiny, SynthLayouts, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Case>& param_info) {
                           const Case& c = param_info.param;
                           std::string name = c.preset + "_" + std::string(synth_layout_name(c.layout));
                           for (auto& ch : name)
                             if (ch == '-' || ch == '.') ch = '_';
                           return name;
                         });

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(Synth, ShardsAreIndexedAndLoad) {
  TempDir tmp;
  const fs::path dir = synth(tmp / "sharded", "tiny-untied", SynthLayout::kMlxQ4, 60'000);
  const auto index = read_json_file(dir / "model.safetensors.index.json");
  const auto files = trunk_files(dir);
  EXPECT_GT(files.size(), 2u);
  uint64_t total = 0;
  for (const auto& f : files) {
    SafetensorsFile st(f);
    for (const auto& t : st.tensors()) {
      total += t.bytes.size();
      EXPECT_EQ(index["weight_map"][t.name], f.filename().string()) << t.name;
    }
  }
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);
  EXPECT_EQ(index["weight_map"].size(), expected_trunk({false, true, 4}).size());
  const std::string count = std::to_string(files.size());
  EXPECT_TRUE(
      fs::exists(dir / ("model-00001-of-" + std::string(5 - count.size(), '0') + count + ".safetensors")));
  CpuBackend backend(1);
  Qwen35Model model(open_checkpoint(dir), backend);
  EXPECT_EQ(model.weights().lm_head.bits, 4);
}

TEST(Synth, SameSeedSameBytesOtherSeedOtherBytes) {
  TempDir tmp;
  synth(tmp / "a", "tiny", SynthLayout::kMlxQ8);
  synth(tmp / "b", "tiny", SynthLayout::kMlxQ8);
  SynthOptions options;
  options.preset = "tiny";
  options.layout = SynthLayout::kMlxQ8;
  options.out = tmp / "c";
  options.seed = 1;
  synthesize_checkpoint(options);
  EXPECT_EQ(read_file(tmp / "a" / "model.safetensors"), read_file(tmp / "b" / "model.safetensors"));
  EXPECT_NE(read_file(tmp / "a" / "model.safetensors"), read_file(tmp / "c" / "model.safetensors"));
}

TEST(Synth, RefusesNonEmptyOutputUnlessForced) {
  TempDir tmp;
  fs::create_directories(tmp / "out");
  std::ofstream(tmp / "out" / "keep.txt") << "x";
  EXPECT_THROW(synth(tmp / "out", "tiny", SynthLayout::kHf), Error);
  EXPECT_TRUE(fs::exists(tmp / "out" / "keep.txt"));
  SynthOptions options;
  options.preset = "tiny";
  options.layout = SynthLayout::kHf;
  options.out = tmp / "out";
  options.force = true;
  synthesize_checkpoint(options);
  EXPECT_FALSE(fs::exists(tmp / "out" / "keep.txt"));
  EXPECT_TRUE(fs::exists(tmp / "out" / "config.json"));
  for (const auto& entry : fs::directory_iterator(tmp.path())) {
    EXPECT_EQ(entry.path().filename().string().find(".partial"), std::string::npos) << entry.path();
  }
}

TEST(Synth, BadInputIsAClearError) {
  EXPECT_THROW(synth_preset("qwen3.5-5b"), Error);
  EXPECT_THROW(parse_synth_layout("gguf"), Error);
  TempDir tmp;
  std::ofstream(tmp / "file") << "x";
  try {
    synth(tmp / "file" / "model", "tiny", SynthLayout::kHf);
    FAIL() << "no error for an output below a regular file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot create"), std::string::npos) << e.what();
  }
}

TEST(Synth, CommandLine) {
  TempDir tmp;
  const std::string bin = MTPLX_BINARY;
  const std::string log = (tmp / "log").string();
  EXPECT_NE(
      std::system(
          (bin + " synth --preset nope --layout hf --out " + (tmp / "x").string() + " 2>" + log).c_str()),
      0);
  EXPECT_NE(read_file(log).find("unknown preset"), std::string::npos) << read_file(log);
  EXPECT_NE(
      std::system(
          (bin + " synth --preset tiny --layout mlx-q3 --out " + (tmp / "x").string() + " 2>" + log).c_str()),
      0);
  EXPECT_NE(read_file(log).find("unknown layout"), std::string::npos) << read_file(log);
  EXPECT_FALSE(fs::exists(tmp / "x"));
  EXPECT_EQ(std::system((bin + " synth --preset tiny --layout mtplx-q4 --shard-size 100KB --out " +
                         (tmp / "y").string() + " >/dev/null 2>" + log)
                            .c_str()),
            0);
  EXPECT_NE(read_file(log).find("100%"), std::string::npos) << read_file(log);
  EXPECT_TRUE(fs::exists(tmp / "y" / "mtplx_runtime.json"));
}

}  // namespace
// With QuantDot::Int8 set before loading, every matrix a product reads carries its int8 tiles (the
// kernels take nothing else), an untied embedding, only looked up, carries none (a second copy of it would
// be memory for nothing), and a tied one shares the LM head's.
TEST(SynthInt8, ProductMatricesGetTilesAndALookupTableDoesNot) {
  if (!cpu::int8_dot_supported()) GTEST_SKIP() << "this CPU lacks AVX2";
  TempDir tmp;
  for (const std::string preset : {"tiny", "tiny-untied"}) {
    const fs::path dir = synth(tmp / preset, preset, SynthLayout::kMlxQ4);
    CpuBackend cpu(2);
    cpu.set_quant_dot(cpu::QuantDot::Int8);
    const Checkpoint ckpt = open_checkpoint(dir);
    const Qwen35Model model(ckpt, cpu);
    const ModelWeights& w = model.weights();
    EXPECT_TRUE(cpu::int8_dot_takes(w.lm_head)) << preset;
    for (const LayerWeights& l : w.layers)
      for (const WeightMatrix* m : layer_matrices(l)) EXPECT_TRUE(cpu::int8_dot_takes(*m)) << preset;
    if (preset == "tiny")
      EXPECT_EQ(w.embed.tiles, w.lm_head.tiles);
    else
      EXPECT_EQ(w.embed.tiles, nullptr);
  }
}

}  // namespace mtplx

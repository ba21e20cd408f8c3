// mtplx forge against independent oracles:
//  - bytes: tests/fixtures/mlx-q8, mlx-q4 and mtplx-q8 were written from hf-causal-tied by
//    tools/reference/make_fixtures.py (a numpy port of MLX's quantizer and mlx-lm's qwen3_5 sanitize, not our
//    code), so forging hf-causal-tied must reproduce their tensors byte for byte;
//  - logits: the transformers references of those fixtures (reference.safetensors) and of the HF fixtures,
//    with tolerances derived from transformers' own measurement of what quantization does (see below);
//  - dequantization in this file (w = scale * q + bias, codes LSB-first) against the source weights;
//  - bad input: each error, with no output and no partial folder left behind.
#include "model/forge.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "backend/cpu/cpu_backend.h"
#include "base/error.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/qwen35.h"
#include "support/reference.h"
#include "support/temp_dir.h"

namespace mtplx {
namespace {

namespace fs = std::filesystem;
using testing::fixtures_dir;
using testing::read_reference;
using testing::Reference;
using testing::relative_error;
using testing::TempDir;

fs::path forge(const fs::path& src, const fs::path& out, int trunk_bits, MtpPolicy mtp = MtpPolicy::kBodyInt4,
               uint64_t shard_bytes = 5'000'000'000) {
  ForgeOptions options;
  options.source = src;
  options.out = out;
  options.trunk_bits = trunk_bits;
  options.mtp = mtp;
  options.shard_bytes = shard_bytes;
  options.threads = 2;
  return forge_checkpoint(options).dir;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TensorStore store_of(const fs::path& dir, bool sidecar) {
  TensorStore store;
  if (sidecar) {
    store.add_file(dir / "mtp.safetensors");
    return store;
  }
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto name = entry.path().filename().string();
    if (name.starts_with("model") && name.ends_with(".safetensors")) store.add_file(entry.path());
  }
  return store;
}

bool same_tensor(const TensorView& a, const TensorView& b) {
  return a.dtype == b.dtype && a.shape == b.shape && a.bytes.size() == b.bytes.size() &&
         std::memcmp(a.bytes.data(), b.bytes.data(), a.bytes.size()) == 0;
}

// Tensors of `ours` equal to those of `oracle`, name by name; names listed in `skip` are left out of both.
void expect_same_tensors(const TensorStore& ours, const TensorStore& oracle,
                         const std::set<std::string>& skip = {}) {
  std::set<std::string> ours_names, oracle_names;
  for (const auto& [name, view] : ours.all())
    if (!skip.contains(name)) ours_names.insert(name);
  for (const auto& [name, view] : oracle.all())
    if (!skip.contains(name)) oracle_names.insert(name);
  EXPECT_EQ(ours_names, oracle_names);
  int compared = 0;
  for (const auto& name : oracle_names) {
    const TensorView* mine = ours.find(name);
    if (mine == nullptr) continue;
    EXPECT_TRUE(same_tensor(*mine, oracle.get(name)))
        << name << ": " << mine->describe() << " vs " << oracle.get(name).describe();
    ++compared;
  }
  EXPECT_GT(compared, 0);
}

// --- logits

struct Logits {
  std::vector<float> trunk, mtp;
};

Logits run_model(const fs::path& dir, const std::vector<int32_t>& tokens) {
  const Checkpoint ckpt = open_checkpoint(dir);
  CpuBackend cpu(2);
  Qwen35Model model(ckpt, cpu);
  const auto T = static_cast<int64_t>(tokens.size());
  ModelState state = model.new_state(T);
  const Tensor hidden = model.forward(tokens, state);
  Logits out;
  auto download = [&](const Tensor& t, std::vector<float>& host) {
    host.resize(t.numel());
    cpu.download(t, host);
  };
  download(model.logits(hidden), out.trunk);
  const std::vector<int32_t> next(tokens.begin() + 1, tokens.end());
  download(model.logits(model.mtp_forward(next, hidden.row_view(0, T - 1), 0, state)), out.mtp);
  return out;
}

// Our forward pass against transformers on unquantized fixtures (tests/model/fixture_test.cpp).
constexpr double kForwardTolerance = 1e-4;

TEST(Forge, Q8TrunkAndBodyInt4SidecarAreByteIdenticalToTheMlxLmFixtures) {
  TempDir tmp;
  const fs::path out = forge(fixtures_dir() / "hf-causal-tied", tmp / "q8", 8);
  expect_same_tensors(store_of(out, false), store_of(fixtures_dir() / "mlx-q8", false));
  expect_same_tensors(store_of(out, true), store_of(fixtures_dir() / "mtplx-q8", true));

  const auto config = read_json_file(out / "config.json");
  const auto oracle = read_json_file(fixtures_dir() / "mtplx-q8" / "config.json");
  for (const char* key : {"group_size", "bits", "mode"}) {
    EXPECT_EQ(config["quantization"][key], oracle["quantization"][key]) << key;
    EXPECT_EQ(config["quantization_config"][key], oracle["quantization"][key]) << key;
  }
  // Everything else as the fixture writer has it (source config + mlx_lm_extra_tensors + norm encoding); our
  // sidecar quantization record uses MTPLX's mtp_quant_* field names, the fixture a shorter form.
  for (const auto& [key, value] : oracle.items()) {
    if (key == "quantization" || key == "quantization_config" || key == "mtplx_mtp_quantization") continue;
    EXPECT_EQ(config.value(key, nlohmann::json()), value) << key;
  }
  EXPECT_EQ(config["mtplx_mtp_quantization"]["mtp_quant_bits"], oracle["mtplx_mtp_quantization"]["bits"]);
  for (const char* file : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"})
    EXPECT_EQ(read_file(out / file), read_file(fixtures_dir() / "hf-causal-tied" / file)) << file;
  // Every tensor starts aligned for its element type (the files are mapped and U32 codes read in place).
  for (bool sidecar : {false, true}) {
    const TensorStore store = store_of(out, sidecar);
    for (const auto& [name, view] : store.all())
      EXPECT_EQ(reinterpret_cast<uintptr_t>(view.data()) % dtype_size(view.dtype), 0u) << name;
  }
  const auto index = read_json_file(out / "model.safetensors.index.json");
  EXPECT_EQ(index["weight_map"].size(), store_of(out, false).all().size());

  // Same bytes, so the transformers references of mtplx-q8 (trunk and MTP) describe this model.
  const Reference ref = read_reference(fixtures_dir() / "mtplx-q8");
  const Logits ours = run_model(out, ref.tokens);
  EXPECT_LT(relative_error(ours.trunk, ref.logits), kForwardTolerance);
  EXPECT_LT(relative_error(ours.mtp, ref.mtp_logits), kForwardTolerance);
}

TEST(Forge, Q4TrunkMatchesTheMlxQ4FixtureOutsideItsOverrides) {
  TempDir tmp;
  const fs::path out = forge(fixtures_dir() / "hf-causal-tied", tmp / "q4", 4);
  // mlx-q4 overrides two modules (8-bit down_proj, BF16 out_proj); forge writes a flat 4-bit trunk.
  const std::string down = "language_model.model.layers.1.mlp.down_proj";
  const std::string out_proj = "language_model.model.layers.2.linear_attn.out_proj";
  std::set<std::string> skip;
  for (const auto& m : {down, out_proj})
    for (const char* part : {".weight", ".scales", ".biases"}) skip.insert(m + part);
  const TensorStore ours = store_of(out, false);
  expect_same_tensors(ours, store_of(fixtures_dir() / "mlx-q4", false), skip);
  for (const char* part : {".weight", ".scales", ".biases"}) {
    EXPECT_EQ(ours.get(down + part).shape[1], std::string(part) == ".weight" ? 16 : 2);  // 128 in, 4 bits
    EXPECT_TRUE(ours.contains(out_proj + part));
  }
  expect_same_tensors(store_of(out, true), store_of(fixtures_dir() / "mtplx-q4", true));
}

TEST(Forge, MtpSidecarPolicies) {
  TempDir tmp;
  const fs::path src = fixtures_dir() / "hf-causal-tied";
  const TensorStore hf = store_of(src, false);
  {
    // bf16: the 15 source tensors unchanged (zero-centred norms included).
    const fs::path out = forge(src, tmp / "bf16", 8, MtpPolicy::kBf16);
    const TensorStore sidecar = store_of(out, true);
    EXPECT_EQ(sidecar.all().size(), 15u);
    for (const auto& [name, view] : sidecar.all()) EXPECT_TRUE(same_tensor(view, hf.get(name))) << name;
    const auto stats = read_json_file(out / "mtplx_build_stats.json");
    EXPECT_EQ(stats["quantized_linears"].size(), 0u);
    EXPECT_EQ(stats["policy"], "keep_bf16");
  }
  {
    // int8: fc and the 7 body linears at 8 bits, norms unchanged.
    const fs::path out = forge(src, tmp / "int8", 4, MtpPolicy::kInt8);
    const TensorStore sidecar = store_of(out, true);
    EXPECT_EQ(sidecar.all().size(), 15u + 2 * 8);
    EXPECT_EQ(sidecar.get("mtp.fc.weight").dtype, DType::U32);
    EXPECT_EQ(sidecar.get("mtp.fc.weight").shape, (std::vector<int64_t>{64, 128 * 8 / 32}));
    EXPECT_TRUE(same_tensor(sidecar.get("mtp.norm.weight"), hf.get("mtp.norm.weight")));
    const Checkpoint ckpt = open_checkpoint(out);
    CpuBackend cpu(1);
    Qwen35Model model(ckpt, cpu);
    EXPECT_EQ(model.weights().mtp->fc.bits, 8);
    EXPECT_EQ(model.weights().mtp->layer.mlp.up_proj.bits, 8);
    EXPECT_EQ(model.weights().layers[0].mlp.up_proj.bits, 4);
  }
}

// The "Build Stats" block of the seed model card: same keys; 15 source tensors, 29 written for body-int4.
TEST(Forge, BuildStatsHaveTheModelCardForm) {
  TempDir tmp;
  const fs::path out = forge(fixtures_dir() / "hf-causal-tied", tmp / "q8", 8);
  const auto stats = read_json_file(out / "mtplx_build_stats.json");
  std::set<std::string> keys;
  for (const auto& [key, value] : stats.items()) keys.insert(key);
  EXPECT_EQ(keys,
            (std::set<std::string>{"bits", "group_size", "mode", "output_size_bytes", "output_tensor_count",
                                   "policy", "quantization", "quantized_linears", "source_tensor_count"}));
  EXPECT_EQ(stats["bits"], 4);
  EXPECT_EQ(stats["group_size"], 64);
  EXPECT_EQ(stats["mode"], "affine");
  EXPECT_EQ(stats["policy"], "cyankiwi");
  EXPECT_EQ(stats["quantization"], "body-int4");
  EXPECT_EQ(stats["source_tensor_count"], 15);
  EXPECT_EQ(stats["output_tensor_count"], 29);
  EXPECT_EQ(stats["output_size_bytes"], fs::file_size(out / "mtp.safetensors"));
  EXPECT_EQ(stats["quantized_linears"].size(), 7u);
  EXPECT_EQ(stats["quantized_linears"]["mtp.layers.0.self_attn.q_proj"],
            (nlohmann::json{{"bits", 4}, {"group_size", 64}, {"mode", "affine"}}));

  const Checkpoint ckpt = open_checkpoint(out);
  ASSERT_TRUE(ckpt.contract.has_value());
  EXPECT_EQ(ckpt.layout, CheckpointLayout::kMtplx);
  EXPECT_EQ(ckpt.contract->raw["exactness_baseline"]["status"], "not-verified");  // no verify hook given
  EXPECT_EQ(ckpt.contract->raw["forge_provenance"]["forge_recipe"]["trunk"], "q8");
}

// --- dequantization against the source (independent of quantize.cpp)

std::vector<double> dequantize(const TensorStore& store, const std::string& module, int64_t rows,
                               int64_t cols) {
  const TensorView& w = store.get(module + ".weight");
  const TensorView& s = store.get(module + ".scales");
  const TensorView& b = store.get(module + ".biases");
  const int bits = static_cast<int>(w.shape[1] * 32 / cols);
  const int64_t group = cols / s.shape[1];
  std::vector<double> out(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const uint64_t bit = static_cast<uint64_t>(c) * bits;
      uint64_t word_pair = 0;
      const auto* words = static_cast<const uint32_t*>(w.data()) + r * w.shape[1];
      word_pair = words[bit / 32];
      if (bit / 32 + 1 < static_cast<uint64_t>(w.shape[1])) word_pair |= uint64_t{words[bit / 32 + 1]} << 32;
      const double q = static_cast<double>((word_pair >> (bit % 32)) & ((1u << bits) - 1));
      const int64_t g = r * s.shape[1] + c / group;
      out[r * cols + c] = load_float(s.data(), s.dtype, g) * q + load_float(b.data(), b.dtype, g);
    }
  }
  return out;
}

// Each dequantized value lies within one step of its BF16-rounded source value: half a step of rounding, up
// to half a step more where MLX's anchored range clamps the far edge, plus the BF16 rounding of scale and
// bias
// ((2^bits - 1) * |scale| * 2^-8 + |bias| * 2^-8).
void expect_within_quantization_error(const fs::path& src, const fs::path& out) {
  const TensorStore hf = store_of(src, false);
  const TensorStore forged = store_of(out, false);
  int checked = 0;
  for (const auto& [name, view] : forged.all()) {
    if (!name.ends_with(".scales")) continue;
    const std::string module = name.substr(0, name.size() - 7);
    std::string hf_name = module.substr(std::string("language_model.model.").size());
    hf_name =
        (hf.contains("model.language_model." + hf_name + ".weight") ? "model.language_model." : "model.") +
        hf_name + ".weight";
    if (module == "language_model.lm_head") hf_name = "lm_head.weight";
    const TensorView& source = hf.get(hf_name);
    const int64_t rows = source.shape[0], cols = source.shape[1];
    const auto deq = dequantize(forged, module, rows, cols);
    const int bits = static_cast<int>(forged.get(module + ".weight").shape[1] * 32 / cols);
    const TensorView& s = forged.get(module + ".scales");
    const TensorView& b = forged.get(module + ".biases");
    const int64_t group = cols / s.shape[1];
    for (int64_t i = 0; i < rows * cols; ++i) {
      const double w = bf16_to_float(float_to_bf16(load_float(source.data(), source.dtype, i)));
      const int64_t g = (i / cols) * s.shape[1] + (i % cols) / group;
      const double scale = std::fabs(load_float(s.data(), s.dtype, g));
      const double bias = std::fabs(load_float(b.data(), b.dtype, g));
      const double bound = scale * (1.0 + ((1 << bits) - 1) / 256.0) + bias / 256.0 + 1e-6;
      ASSERT_LE(std::fabs(deq[i] - w), bound) << module << " element " << i;
    }
    ++checked;
  }
  EXPECT_GT(checked, 10);
}

// The forged files rewritten as an F32 Hugging Face checkpoint by code in this file: quantized matrices
// dequantized (w = scale * q + bias), names back to model.* / lm_head, the five shifted norms minus 1, conv1d
// back to [C, 1, K]. The F32 HF loading path is checked against transformers by tests/model/fixture_test.cpp
// (hf-causal-f32), so this defines the model the forged bytes describe without going through forge's code.
fs::path dequantized_hf_copy(const fs::path& forged, const fs::path& source, const fs::path& dir) {
  fs::create_directories(dir);
  fs::copy_file(source / "config.json", dir / "config.json");
  SafetensorsWriter writer;
  for (bool sidecar : {false, true}) {
    const TensorStore store = store_of(forged, sidecar);
    for (const auto& [name, view] : store.all()) {
      if (name.ends_with(".scales") || name.ends_with(".biases")) continue;
      std::string hf = name;
      if (name.starts_with("language_model.model.")) hf = "model." + name.substr(21);
      if (name.starts_with("language_model.lm_head.")) hf = name.substr(15);
      const std::string module = name.substr(0, name.size() - 7);
      if (view.dtype == DType::U32) {
        const int64_t rows = view.shape[0];
        const int64_t cols = store.get(module + ".scales").shape[1] * 64;  // group size 64 in these tests
        const auto values = dequantize(store, module, rows, cols);
        writer.add(hf, DType::F32, {rows, cols}, std::vector<float>(values.begin(), values.end()));
        continue;
      }
      std::vector<float> values(view.numel());
      for (int64_t i = 0; i < view.numel(); ++i) values[i] = load_float(view.data(), view.dtype, i);
      const bool shifted = !sidecar && (name.ends_with("input_layernorm.weight") ||
                                        name.ends_with("post_attention_layernorm.weight") ||
                                        name == "language_model.model.norm.weight" ||
                                        name.ends_with("q_norm.weight") || name.ends_with("k_norm.weight"));
      if (shifted)
        for (auto& v : values) v -= 1.0f;
      std::vector<int64_t> shape = view.shape;
      if (name.ends_with("conv1d.weight")) shape = {shape[0], 1, shape[1]};
      writer.add(hf, DType::F32, shape, values);
    }
  }
  writer.write(dir / "model.safetensors");
  return dir;
}

size_t quantized_matrices(const fs::path& dir) {
  size_t count = 0;
  for (bool sidecar : {false, true}) {
    const TensorStore store = store_of(dir, sidecar);
    for (const auto& [name, view] : store.all()) count += name.ends_with(".scales");
  }
  return count;
}

// Logits of forged fixtures against transformers' logits of the unquantized source.
//
// Tolerance: how far quantization moves the logits is measured on the fixtures make_fixtures.py quantized
// itself (mtplx-q8 / mtplx-q4: hf-causal-tied with an MLX trunk and a body-int4 sidecar): their logits at
// hf-causal-tied's tokens (by our forward pass, which matches transformers on those very files within 1e-4,
// tests/model/fixture_test.cpp) against hf-causal-tied's transformers logits. A forged fixture carries
// quantization of the same kind on weights drawn the same way (std 1/sqrt(in)); independent rounding errors
// add in quadrature, so the effect is scaled by sqrt(quantized matrices / those of the measured fixture), and
// we allow twice that plus our forward-pass tolerance.
struct Effect {
  double trunk = 0, mtp = 0;
  size_t matrices = 0;
};

Effect measured_effect(int bits) {
  const fs::path dir = fixtures_dir() / (bits == 8 ? "mtplx-q8" : "mtplx-q4");
  const Reference hf = read_reference(fixtures_dir() / "hf-causal-tied");
  const Logits quantized = run_model(dir, hf.tokens);
  return {relative_error(quantized.trunk, hf.logits), relative_error(quantized.mtp, hf.mtp_logits),
          quantized_matrices(dir)};
}

class ForgeFixtures : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(ForgeFixtures, LogitsMatchTheDequantizedFilesAndStayWithinTheQuantizationEffect) {
  const auto& [fixture, bits] = GetParam();
  TempDir tmp;
  const fs::path src = fixtures_dir() / fixture;
  const fs::path out = forge(src, tmp / "out", bits, MtpPolicy::kBodyInt4,
                             fixture == "hf-cond-untied" ? 150'000 : 5'000'000'000);
  expect_within_quantization_error(src, out);
  const Reference ref = read_reference(src);
  const Logits ours = run_model(out, ref.tokens);

  const fs::path copy = dequantized_hf_copy(out, src, tmp / "dequantized");
  ASSERT_EQ(open_checkpoint(copy).layout, CheckpointLayout::kHuggingFace);
  const Logits dequantized = run_model(copy, ref.tokens);
  const double trunk_same = relative_error(ours.trunk, dequantized.trunk);
  const double mtp_same = relative_error(ours.mtp, dequantized.mtp);
  EXPECT_LT(trunk_same, 1e-5);
  EXPECT_LT(mtp_same, 1e-5);

  const Effect effect = measured_effect(bits);
  const double scale = std::sqrt(static_cast<double>(quantized_matrices(out)) / effect.matrices);
  const double trunk_tolerance = 2 * effect.trunk * scale + kForwardTolerance;
  const double mtp_tolerance = 2 * effect.mtp * scale + kForwardTolerance;
  const double trunk = relative_error(ours.trunk, ref.logits);
  const double mtp = relative_error(ours.mtp, ref.mtp_logits);
  std::printf(
      "[forge %s q%d] vs dequantized copy: trunk %.2g, MTP %.2g; vs transformers (unquantized): trunk "
      "%.3g (tolerance %.3g), MTP %.3g (tolerance %.3g)\n",
      fixture.c_str(), bits, trunk_same, mtp_same, trunk, trunk_tolerance, mtp, mtp_tolerance);
  EXPECT_LT(trunk, trunk_tolerance);
  EXPECT_LT(mtp, mtp_tolerance);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ForgeFixtures,
                         ::testing::Combine(::testing::Values("hf-causal-tied", "hf-cond-untied",
                                                              "hf-causal-f32"),
                                            ::testing::Values(8, 4)),
                         [](const auto& param_info) {
                           std::string name = std::get<0>(param_info.param) + "_q" +
                                              std::to_string(std::get<1>(param_info.param));
                           for (auto& c : name)
                             if (c == '-') c = '_';
                           return name;
                         });

TEST(Forge, ConditionalGenerationLayoutIsRenamedAndUntiedHeadKept) {
  TempDir tmp;
  const fs::path out =
      forge(fixtures_dir() / "hf-cond-untied", tmp / "out", 8, MtpPolicy::kBodyInt4, 150'000);
  const TensorStore forged = store_of(out, false);
  EXPECT_TRUE(forged.contains("language_model.lm_head.weight"));
  EXPECT_TRUE(forged.contains("language_model.lm_head.scales"));
  for (const auto& [name, view] : forged.all()) {
    EXPECT_TRUE(name.starts_with("language_model.model.") || name.starts_with("language_model.lm_head."))
        << name;
    EXPECT_EQ(name.find("visual"), std::string::npos) << name;
  }
  EXPECT_GT(store_of(out, false).files().size(), 1u);  // sharded
  const TensorStore hf = store_of(fixtures_dir() / "hf-cond-untied", false);
  // +1 on the norms mlx-lm shifts (exact: the fixture's gains lie on a 1/128 grid), none on linear_attn.norm.
  for (const auto& [hf_name, shift] : {std::pair{"model.language_model.norm.weight", 1.0f},
                                       {"model.language_model.layers.0.input_layernorm.weight", 1.0f},
                                       {"model.language_model.layers.3.self_attn.q_norm.weight", 1.0f},
                                       {"model.language_model.layers.0.linear_attn.norm.weight", 0.0f}}) {
    const TensorView& a = hf.get(hf_name);
    const TensorView& b = forged.get("language_model.model." + std::string(hf_name).substr(21));
    for (int64_t i = 0; i < a.numel(); ++i)
      ASSERT_EQ(load_float(b.data(), b.dtype, i), load_float(a.data(), a.dtype, i) + shift) << hf_name;
  }
  const TensorView& conv = forged.get("language_model.model.layers.0.linear_attn.conv1d.weight");
  EXPECT_EQ(conv.shape[2], 1);
  EXPECT_EQ(conv.shape[1], 4);
}

// --- bad input

// Copies a fixture, optionally dropping tensors, replacing one, or editing config.json.
fs::path derived_fixture(const fs::path& dir, const std::string& from, const std::set<std::string>& drop,
                         const std::function<void(nlohmann::json&)>& edit_config = {},
                         const std::string& replace_with_i8 = "") {
  const fs::path src = fixtures_dir() / from;
  fs::create_directories(dir);
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"})
    fs::copy_file(src / f, dir / f);
  SafetensorsWriter writer;
  const TensorStore source = store_of(src, false);
  for (const auto& [name, view] : source.all()) {
    if (drop.contains(name)) continue;
    if (name == replace_with_i8) {
      writer.add(name, DType::I8, view.shape, std::vector<int8_t>(view.numel(), 1));
    } else {
      writer.add(name, view.dtype, view.shape, view.bytes);
    }
  }
  writer.write(dir / "model.safetensors");
  if (edit_config) {
    auto config = read_json_file(dir / "config.json");
    edit_config(config);
    std::ofstream(dir / "config.json") << config.dump(2);
  }
  return dir;
}

void expect_error(const fs::path& src, const fs::path& out, const std::string& needle) {
  try {
    forge(src, out, 8);
    FAIL() << "no error; expected one mentioning \"" << needle << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(out)) << out;
  for (const auto& entry : fs::directory_iterator(out.parent_path()))
    EXPECT_EQ(entry.path().filename().string().find(".partial"), std::string::npos) << entry.path();
}

TEST(ForgeErrors, MissingOrIncompleteMtpWeights) {
  TempDir tmp;
  std::set<std::string> all_mtp;
  const TensorStore source = store_of(fixtures_dir() / "hf-causal-tied", false);
  for (const auto& [name, view] : source.all())
    if (name.starts_with("mtp.")) all_mtp.insert(name);
  expect_error(derived_fixture(tmp / "no-mtp", "hf-causal-tied", all_mtp), tmp / "o1", "no MTP weights");
  expect_error(derived_fixture(tmp / "part-mtp", "hf-causal-tied", {"mtp.norm.weight"}), tmp / "o2",
               "missing mtp.norm.weight");
}

TEST(ForgeErrors, MixtureOfExpertsConfig) {
  TempDir tmp;
  const auto src = derived_fixture(tmp / "moe", "hf-causal-tied", {}, [](nlohmann::json& c) {
    (c.contains("text_config") ? c["text_config"] : c)["num_experts"] = 8;
  });
  expect_error(src, tmp / "out", "mixture of experts");
}

TEST(ForgeErrors, UnsupportedDtype) {
  TempDir tmp;
  const auto src = derived_fixture(tmp / "i8", "hf-causal-tied", {}, {}, "model.layers.0.mlp.up_proj.weight");
  expect_error(src, tmp / "out", "unsupported dtype I8");
}

TEST(ForgeErrors, AlreadyConvertedSource) {
  TempDir tmp;
  expect_error(fixtures_dir() / "mlx-q8", tmp / "out", "already an mlx checkpoint");
}

TEST(ForgeErrors, OutputExists) {
  TempDir tmp;
  fs::create_directories(tmp / "out");
  std::ofstream(tmp / "out" / "keep.txt") << "x";
  try {
    forge(fixtures_dir() / "hf-causal-tied", tmp / "out", 8);
    FAIL() << "no error for an existing output";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already exists"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_file(tmp / "out" / "keep.txt"), "x");
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()), 1);
}

TEST(ForgeErrors, BadOptions) {
  EXPECT_THROW(parse_trunk_format("q3"), Error);
  EXPECT_THROW(parse_mtp_policy("int2"), Error);
  TempDir tmp;
  ForgeOptions options;
  options.source = fixtures_dir() / "hf-causal-tied";
  options.out = tmp / "out";
  options.group_size = 48;
  EXPECT_THROW(forge_checkpoint(options), Error);
  EXPECT_FALSE(fs::exists(tmp / "out"));
  // Forging a folder onto itself, even with --force, is refused before anything is written.
  options.source = derived_fixture(tmp / "self", "hf-causal-tied", {});
  options.out = options.source;
  options.group_size = 64;
  options.force = true;
  EXPECT_THROW(forge_checkpoint(options), Error);
  EXPECT_TRUE(fs::exists(tmp / "self" / "model.safetensors"));
}

// --- command line: verification, inspect, write errors

int shell(const std::string& command) {
  return std::system(("bash -c '" + command + "'").c_str());
}

TEST(ForgeCli, VerifiesAndInspectShowsTheArtifact) {
  TempDir tmp;
  const std::string bin = MTPLX_BINARY;
  const std::string out = (tmp / "model").string();
  const std::string log = (tmp / "log").string();
  ASSERT_EQ(shell(bin + " forge " + (fixtures_dir() / "hf-causal-tied").string() + " " + out +
                  " --trunk q8 --mtp body-int4 --verify-tokens 24 --threads 2 >/dev/null 2>" + log),
            0)
      << read_file(log);
  const std::string progress = read_file(log);
  EXPECT_NE(progress.find("forge: 100%"), std::string::npos) << progress;
  EXPECT_NE(progress.find("verify: passed"), std::string::npos) << progress;

  const auto contract = read_json_file(fs::path(out) / "mtplx_runtime.json");
  EXPECT_EQ(contract["exactness_baseline"]["status"], "passed");
  EXPECT_EQ(contract["exactness_baseline"]["matches"], contract["exactness_baseline"]["total"]);
  EXPECT_EQ(contract["exactness_baseline"]["total"], 4 * 3);
  const auto& speed = contract["speed_evidence"];
  EXPECT_EQ(speed["acceptance_by_depth"].size(), 3u);
  EXPECT_EQ(speed["rows"].size(), 3u);
  for (const auto& a : speed["acceptance_by_depth"])
    EXPECT_TRUE(a.get<double>() >= 0 && a.get<double>() <= 1);
  EXPECT_GT(speed["ar_tok_s"].get<double>(), 0);
  EXPECT_EQ(contract["verified_on"]["model"], "model");
  EXPECT_TRUE(contract["verified_on"].contains("timestamp"));
  EXPECT_EQ(contract["verified_on"]["backend"], "cpu");

  const std::string inspect = (tmp / "inspect").string();
  ASSERT_EQ(shell(bin + " inspect " + out + " >" + inspect + " 2>&1"), 0) << read_file(inspect);
  const std::string text = read_file(inspect);
  EXPECT_NE(text.find("layout:      mtplx"), std::string::npos) << text;
  EXPECT_NE(text.find("affine q8 g64"), std::string::npos) << text;
  EXPECT_NE(text.find("mtp.attention: affine q4 g64"), std::string::npos) << text;
  EXPECT_NE(text.find("norms stored delta (config)"), std::string::npos) << text;
}

TEST(ForgeCli, BadArgumentsAndWriteErrorsLeaveNothingBehind) {
  TempDir tmp;
  const std::string bin = MTPLX_BINARY;
  const std::string src = (fixtures_dir() / "hf-causal-tied").string();
  const std::string log = (tmp / "log").string();
  EXPECT_NE(shell(bin + " forge " + src + " " + (tmp / "a").string() + " --trunk q3 2>" + log), 0);
  EXPECT_NE(read_file(log).find("unknown trunk format"), std::string::npos) << read_file(log);
  EXPECT_NE(shell(bin + " forge " + src + " " + (tmp / "a").string() + " --mtp fp8 2>" + log), 0);
  EXPECT_NE(read_file(log).find("unknown MTP sidecar quantization"), std::string::npos) << read_file(log);
  // A 64 KB file-size limit: the trunk file cannot be written (as on a full disk).
  EXPECT_NE(
      shell("ulimit -f 64; " + bin + " forge " + src + " " + (tmp / "a").string() + " --no-verify 2>" + log),
      0);
  EXPECT_NE(read_file(log).find("write failed"), std::string::npos) << read_file(log);
  std::vector<std::string> left;
  for (const auto& entry : fs::directory_iterator(tmp.path()))
    left.push_back(entry.path().filename().string());
  EXPECT_EQ(left, std::vector<std::string>{"log"});
}

}  // namespace
}  // namespace mtplx

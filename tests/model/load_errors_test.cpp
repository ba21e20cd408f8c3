// Loading real layouts: bad checkpoints give clear errors, and the MTP norm encoding of sidecars is read
// from config.json or detected from the weights (a wrong choice would silently zero MTP acceptance).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "backend/cpu/cpu_backend.h"
#include "base/error.h"
#include "io/checkpoint.h"
#include "model/qwen35.h"
#include "support/temp_dir.h"

namespace mtplx {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::TempDir;

fs::path fixture(const std::string& name) {
  return testing::fixtures_dir() / name;
}

// Copies a fixture into a scratch folder so a test can damage it.
fs::path copy_fixture(const TempDir& tmp, const std::string& name) {
  const fs::path dst = tmp / name;
  fs::copy(fixture(name), dst, fs::copy_options::recursive);
  return dst;
}

void edit_config(const fs::path& dir, const std::function<void(nlohmann::json&)>& edit) {
  auto config = read_json_file(dir / "config.json");
  edit(config.contains("text_config") ? config["text_config"] : config);
  std::ofstream(dir / "config.json") << config.dump(2);
}

void edit_top_config(const fs::path& dir, const std::function<void(nlohmann::json&)>& edit) {
  auto config = read_json_file(dir / "config.json");
  edit(config);
  std::ofstream(dir / "config.json") << config.dump(2);
}

std::string load_error(const fs::path& dir) {
  try {
    const Checkpoint ckpt = open_checkpoint(dir);
    CpuBackend cpu(1);
    Qwen35Model model(ckpt, cpu);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

class LoadErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(fixture("hf-causal-tied"))) GTEST_SKIP() << "fixtures missing";
  }
  TempDir tmp_;
};

TEST_F(LoadErrors, MissingDirectory) {
  EXPECT_THAT(load_error(tmp_ / "nope"), HasSubstr("model directory not found"));
}

TEST_F(LoadErrors, MissingConfig) {
  const auto dir = copy_fixture(tmp_, "hf-causal-tied");
  fs::remove(dir / "config.json");
  EXPECT_THAT(load_error(dir), HasSubstr("config.json is missing"));
}

TEST_F(LoadErrors, MissingShardListedInIndex) {
  if (!fs::exists(fixture("hf-cond-untied"))) GTEST_SKIP();
  const auto dir = copy_fixture(tmp_, "hf-cond-untied");
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().starts_with("model-00002")) fs::remove(entry.path());
  }
  EXPECT_THAT(load_error(dir), HasSubstr("listed in the index is missing"));
}

TEST_F(LoadErrors, WrongShapeVersusConfig) {
  const auto dir = copy_fixture(tmp_, "hf-causal-tied");
  edit_config(dir, [](nlohmann::json& c) { c["intermediate_size"] = c["intermediate_size"].get<int>() * 2; });
  EXPECT_THAT(load_error(dir), HasSubstr("wrong shape"));
}

TEST_F(LoadErrors, InconsistentConfig) {
  const auto dir = copy_fixture(tmp_, "hf-causal-tied");
  edit_config(dir, [](nlohmann::json& c) { c["num_key_value_heads"] = 3; });
  EXPECT_THAT(load_error(dir), HasSubstr("not a multiple of num_key_value_heads"));
}

TEST_F(LoadErrors, LayerTypesLengthMismatch) {
  const auto dir = copy_fixture(tmp_, "hf-causal-tied");
  edit_config(dir, [](nlohmann::json& c) { c["layer_types"].push_back("linear_attention"); });
  EXPECT_THAT(load_error(dir), HasSubstr("layer_types has"));
}

TEST_F(LoadErrors, MixtureOfExpertsIsRefusedByName) {
  const auto dir = copy_fixture(tmp_, "hf-causal-tied");
  edit_config(dir, [](nlohmann::json& c) {
    c["model_type"] = "qwen3_5_moe_text";
    c["num_experts"] = 256;
  });
  const auto message = load_error(dir);
  EXPECT_THAT(message, HasSubstr("qwen3_5_moe_text"));
  EXPECT_THAT(message, HasSubstr("not supported yet"));
}

TEST_F(LoadErrors, MissingTensor) {
  const auto dir = copy_fixture(tmp_, "hf-causal-tied");
  edit_config(dir, [](nlohmann::json& c) {
    c["num_hidden_layers"] = c["num_hidden_layers"].get<int>() + 4;
    for (int i = 0; i < 4; ++i) c["layer_types"].push_back(i == 3 ? "full_attention" : "linear_attention");
  });
  EXPECT_THAT(load_error(dir), HasSubstr("missing tensor"));
}

TEST_F(LoadErrors, TruncatedWeights) {
  const auto dir = copy_fixture(tmp_, "hf-causal-tied");
  fs::resize_file(dir / "model.safetensors", fs::file_size(dir / "model.safetensors") / 2);
  EXPECT_THAT(load_error(dir), HasSubstr("truncated"));
}

TEST_F(LoadErrors, QuantizationBlockContradictsTensors) {
  if (!fs::exists(fixture("mlx-q8"))) GTEST_SKIP();
  const auto dir = copy_fixture(tmp_, "mlx-q8");
  edit_top_config(dir, [](nlohmann::json& c) {
    c["quantization"]["language_model.model.layers.0.mlp.up_proj"] = {{"group_size", 64}, {"bits", 4}};
  });
  EXPECT_THAT(load_error(dir), HasSubstr("quantizes language_model.model.layers.0.mlp.up_proj with 4 bits"));
}

TEST_F(LoadErrors, UnsupportedQuantizationMode) {
  if (!fs::exists(fixture("mlx-q8"))) GTEST_SKIP();
  const auto dir = copy_fixture(tmp_, "mlx-q8");
  edit_top_config(dir, [](nlohmann::json& c) {
    c["quantization"]["mode"] = "mxfp4";
    c.erase("quantization_config");
  });
  EXPECT_THAT(load_error(dir), HasSubstr("quantization mode \"mxfp4\" is not supported"));
}

// --- MTP norm encoding of sidecars

class MtpNormEncoding : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(fixture("mtplx-q8"))) GTEST_SKIP() << "fixtures missing";
  }
  // MTP logits of slot 0..T-2 for the first 16 tokens of the fixture's reference.
  std::vector<float> mtp_logits(const fs::path& dir, NormEncoding* encoding) {
    const Checkpoint ckpt = open_checkpoint(dir);
    CpuBackend cpu(2);
    Qwen35Model model(ckpt, cpu);
    *encoding = model.weights().mtp_norm_encoding;
    const std::vector<int32_t> tokens = {1, 5, 9, 2, 7, 3, 8, 4, 6, 10, 11, 12, 13, 14, 15, 16};
    ModelState state = model.new_state(32);
    const Tensor hidden = model.forward(tokens, state);
    const std::vector<int32_t> next(tokens.begin() + 1, tokens.end());
    const Tensor logits = model.logits(model.mtp_forward(next, hidden.row_view(0, 15), 0, state));
    std::vector<float> host(logits.numel());
    cpu.download(logits, host);
    return host;
  }
  TempDir tmp_;
};

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::fabs(double(a[i]) - b[i]));
  return diff;
}

TEST_F(MtpNormEncoding, ConfigKeyAndDetectionAgree) {
  NormEncoding declared{}, detected{};
  const auto reference = mtp_logits(fixture("mtplx-q8"), &declared);
  EXPECT_EQ(declared, NormEncoding::kDelta);
  const auto dir = copy_fixture(tmp_, "mtplx-q8");
  edit_top_config(dir, [](nlohmann::json& c) { c.erase("mtplx_mtp_norm_encoding"); });
  EXPECT_EQ(max_abs_diff(mtp_logits(dir, &detected), reference), 0.0);
  EXPECT_EQ(detected, NormEncoding::kDelta);
}

TEST_F(MtpNormEncoding, WrongEncodingChangesTheHeadVisibly) {
  NormEncoding encoding{};
  const auto reference = mtp_logits(fixture("mtplx-q8"), &encoding);
  const auto dir = copy_fixture(tmp_, "mtplx-q8");
  edit_top_config(dir, [](nlohmann::json& c) { c["mtplx_mtp_norm_encoding"] = "shifted"; });
  EXPECT_GT(max_abs_diff(mtp_logits(dir, &encoding), reference), 1e-2);
  EXPECT_EQ(encoding, NormEncoding::kShifted);
}

TEST_F(MtpNormEncoding, UnknownEncodingIsAnError) {
  const auto dir = copy_fixture(tmp_, "mtplx-q8");
  edit_top_config(dir, [](nlohmann::json& c) { c["mtplx_mtp_norm_encoding"] = "sideways"; });
  EXPECT_THAT(load_error(dir), HasSubstr("unknown mtplx_mtp_norm_encoding"));
}

}  // namespace
}  // namespace mtplx

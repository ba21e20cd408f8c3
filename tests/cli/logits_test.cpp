// `mtplx logits` and `mtplx inspect` as users run them: the printed JSON logits of every fixture match the
// transformers reference, and bad arguments fail with a clear message and a nonzero exit.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/command.h"
#include "support/reference.h"

namespace mtplx {
namespace {

namespace fs = std::filesystem;
using testing::CommandResult;
using testing::run_mtplx;

std::vector<float> flatten(const nlohmann::json& rows) {
  std::vector<float> flat;
  for (const auto& row : rows)
    for (const auto& value : row) flat.push_back(value.get<float>());
  return flat;
}

class CliLogitsTest : public ::testing::TestWithParam<fs::path> {};

TEST_P(CliLogitsTest, MatchesTransformersReference) {
  const testing::Reference ref = testing::read_reference(GetParam());
  std::string ids;
  for (int32_t t : ref.tokens) {
    if (!ids.empty()) ids.push_back(',');
    ids.append(std::to_string(t));
  }
  // MLX trunks carry no MTP head (their references still hold MTP logits of the source model).
  const bool has_mtp =
      run_mtplx({"inspect", GetParam().string()}).out.find("mtp head:    present") != std::string::npos;
  std::vector<std::string> args = {"logits", "--model", GetParam().string(), "--tokens", ids};
  if (has_mtp) args.push_back("--mtp");
  const CommandResult r = run_mtplx(args);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto json = nlohmann::json::parse(r.out);
  ASSERT_EQ(json["logits"].size(), ref.tokens.size());
  EXPECT_LT(testing::relative_error(flatten(json["logits"]), ref.logits), 1e-4);
  if (has_mtp) {
    ASSERT_EQ(json["mtp_logits"].size(), ref.tokens.size() - 1);
    EXPECT_LT(testing::relative_error(flatten(json["mtp_logits"]), ref.mtp_logits), 1e-4);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CliLogitsTest, ::testing::ValuesIn(testing::fixture_dirs()),
                         testing::fixture_name);

TEST(CliLogits, BadArgumentsFailClearly) {
  const std::string model = (testing::fixtures_dir() / "hf-causal-tied").string();
  CommandResult r = run_mtplx({"logits", "--model", model, "--tokens", "1,x,3"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("x"), std::string::npos) << r.err;
  r = run_mtplx({"logits", "--model", model, "--tokens", "1,999999"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("999999"), std::string::npos) << r.err;
  r = run_mtplx({"logits", "--model", "/nonexistent/model", "--tokens", "1"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("/nonexistent/model"), std::string::npos) << r.err;
  r = run_mtplx({"inspect", "/nonexistent/model"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("/nonexistent/model"), std::string::npos) << r.err;
}

// --cpu-matmul int8 runs the int8 kernels (the logits move, within the int8 fixture tolerance of
// tests/model/int8_fixture_test.cpp) where the CPU has them, and an unknown mode is refused.
TEST(CliLogits, CpuMatmulInt8) {
  const fs::path dir = testing::fixtures_dir() / "mlx-q4";
  const testing::Reference ref = testing::read_reference(dir);
  const std::vector<int32_t> tokens(ref.tokens.begin(), ref.tokens.begin() + 8);  // one decode-width call
  std::string ids;
  for (int32_t t : tokens) {
    if (!ids.empty()) ids.push_back(',');
    ids.append(std::to_string(t));
  }
  const std::vector<float> expected(ref.logits.begin(), ref.logits.begin() + 8 * ref.vocab);
  CommandResult r = run_mtplx({"logits", "--model", dir.string(), "--tokens", ids, "--cpu-matmul", "int8"});
  ASSERT_EQ(r.status, 0) << r.err;
  const double error = testing::relative_error(flatten(nlohmann::json::parse(r.out)["logits"]), expected);
  EXPECT_LT(error, 6e-2);
  if (r.err.find("lacks") == std::string::npos) {
    EXPECT_GT(error, 1e-4) << "the exact kernels ran";
  }
  r = run_mtplx({"logits", "--model", dir.string(), "--tokens", ids, "--cpu-matmul", "fast"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("--cpu-matmul"), std::string::npos) << r.err;
}

TEST(CliInspect, DescribesAnArtifact) {
  const CommandResult r = run_mtplx({"inspect", (testing::fixtures_dir() / "mtplx-q4").string()});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("layout:      mtplx"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("delta"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("affine q4 g64"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace mtplx

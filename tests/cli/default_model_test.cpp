// The bundled default model (models/qwen3.5-tiny-mtplx, built by `mtplx forge` from the BF16 export of
// tools/train): its logits against the transformers reference of that export, and greedy MTP decoding
// against AR with the trained head's real acceptance.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/command.h"
#include "support/reference.h"

namespace mtplx {
namespace {

using testing::CommandResult;
using testing::run_mtplx;

const std::string kModel = (testing::source_dir() / "models" / "qwen3.5-tiny-mtplx").string();

std::vector<float> flatten(const nlohmann::json& rows) {
  std::vector<float> flat;
  for (const auto& row : rows)
    for (const auto& value : row) flat.push_back(value.get<float>());
  return flat;
}

int argmax_agreement(const std::vector<float>& ours, const std::vector<float>& ref, int64_t vocab) {
  int agree = 0;
  for (size_t row = 0; row < ref.size() / vocab; ++row) {
    auto begin = [&](const std::vector<float>& v) { return v.begin() + static_cast<int64_t>(row) * vocab; };
    agree += std::max_element(begin(ours), begin(ours) + vocab) - begin(ours) ==
             std::max_element(begin(ref), begin(ref) + vocab) - begin(ref);
  }
  return agree;
}

// Tolerances: the reference is the unquantized BF16 export (transformers trunk, float64 MTP head). The
// artifact's trunk is 8-bit and its MTP layer 4-bit, so it differs by quantization error; measured on
// 2026-11-26: trunk 8.8e-3 relative, 48/48 argmax; MTP 5.1e-2, 42/47 argmax. The BF16 export itself
// matches to 9e-7 (docs/default_model.md). Bounds are ~3x the measured error.
TEST(DefaultModel, LogitsMatchTheBf16Reference) {
  const testing::Reference ref = testing::read_reference_file(testing::source_dir() / "tests" / "data" /
                                                              "default_model_reference.safetensors");
  std::string ids;
  for (int32_t t : ref.tokens) {
    if (!ids.empty()) ids.push_back(',');
    ids.append(std::to_string(t));
  }
  const CommandResult r = run_mtplx({"logits", "--model", kModel, "--tokens", ids, "--mtp"});
  ASSERT_EQ(r.status, 0) << r.err;
  const auto json = nlohmann::json::parse(r.out);
  const auto logits = flatten(json["logits"]), mtp = flatten(json["mtp_logits"]);
  ASSERT_EQ(logits.size(), ref.logits.size());
  ASSERT_EQ(mtp.size(), ref.mtp_logits.size());
  EXPECT_LT(testing::relative_error(logits, ref.logits), 0.03);
  EXPECT_GE(argmax_agreement(logits, ref.logits, ref.vocab), 46);
  EXPECT_LT(testing::relative_error(mtp, ref.mtp_logits), 0.15);
  EXPECT_GE(argmax_agreement(mtp, ref.mtp_logits, ref.vocab), 40);
}

// A trained head accepts most greedy drafts; a wrong norm encoding or hidden-state pairing drops this to ~0.
TEST(DefaultModel, GreedyMtpEqualsArWithRealAcceptance) {
  const std::vector<std::string> common = {
      "generate",     "--model", kModel,   "--prompt", "def read_config(path):\n",
      "--max-tokens", "64",      "--temp", "0",        "--json"};
  auto run = [&](const std::string& depth) {
    auto args = common;
    args.insert(args.end(), {"--mtp-depth", depth});
    const CommandResult r = run_mtplx(args);
    EXPECT_EQ(r.status, 0) << r.err;
    return nlohmann::json::parse(r.out);
  };
  const auto ar = run("0");
  for (const std::string depth : {"1", "3"}) {
    const auto mtp = run(depth);
    EXPECT_EQ(mtp["ids"], ar["ids"]) << "depth " << depth;
    EXPECT_GT(mtp["stats"]["acceptance_by_position"][0].get<double>(), 0.5) << mtp.dump();
  }
}

}  // namespace
}  // namespace mtplx

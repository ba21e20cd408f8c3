// mtplx forge SRC_DIR OUT_DIR: builds an MTPLX artifact (MLX trunk + MTP sidecar + runtime contract) from a
// Hugging Face Qwen3.5/3.6 checkpoint, then verifies it (see model/forge.h, decode/artifact_verify.h).
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include "base/error.h"
#include "commands.h"
#include "decode/artifact_verify.h"
#include "io/safetensors_writer.h"
#include "model/forge.h"
#include "text/tokenizer.h"

namespace mtplx::cli {
namespace {

// Short texts of different kinds (code, prose, a list, chat markup) for the verification lanes.
constexpr const char* kBuiltinPrompts[] = {
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "The quick brown fox jumps over the lazy dog. Then the fox",
    "Shopping list:\n1. apples\n2. bread\n3.",
    "<|im_start|>user\nWhat is a hybrid attention model?<|im_end|>\n<|im_start|>assistant\n",
};

struct ForgeArgs {
  std::string source;
  std::string out;
  std::string trunk = "q8";
  std::string mtp = "body-int4";
  int group_size = 64;
  std::string shard_size = "5GB";
  bool verify = true;
  std::optional<std::string> verify_prompts;
  int64_t verify_tokens = 32;
  int threads = 0;
  bool force = false;
};

std::vector<std::string> prompt_texts(const ForgeArgs& args) {
  std::vector<std::string> texts;
  if (!args.verify_prompts) return {std::begin(kBuiltinPrompts), std::end(kBuiltinPrompts)};
  std::ifstream in(*args.verify_prompts);
  require(in.good(), "cannot read the prompts file", *args.verify_prompts,
          "give a text file, one prompt a line");
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) texts.push_back(line);
  require(!texts.empty(), "the prompts file has no prompts", *args.verify_prompts,
          "write one prompt per line (blank lines are skipped)");
  return texts;
}

nlohmann::json verify(const ForgeArgs& args, const std::filesystem::path& dir) {
  const auto tokenizer_path = dir / "tokenizer.json";
  require(std::filesystem::exists(tokenizer_path),
          "the source has no tokenizer.json to encode the prompts with", args.source,
          "copy the model's tokenizer.json into the source folder, or pass --no-verify");
  const auto tokenizer = text::Tokenizer::from_file(tokenizer_path);
  VerifyOptions options;
  for (const auto& text : prompt_texts(args)) options.prompts.push_back(tokenizer.encode(text));
  options.max_tokens = args.verify_tokens;
  options.threads = args.threads;
  options.model_name = std::filesystem::path(args.out).lexically_normal().filename().string();
  if (options.model_name.empty())
    options.model_name = std::filesystem::path(args.out).lexically_normal().parent_path().filename().string();
  const VerifyReport report = verify_artifact(dir, options);
  const auto& speed = report.speed_evidence;
  std::fprintf(stderr, "forge: verify: %s (%d of %d AR/MTP lanes identical); AR %.1f tok/s\n",
               report.exactness_baseline["status"].get<std::string>().c_str(),
               report.exactness_baseline["matches"].get<int>(), report.exactness_baseline["total"].get<int>(),
               speed["ar_tok_s"].get<double>());
  for (const auto& row : speed["rows"]) {
    std::fprintf(stderr, "forge: verify: depth %d: %.1f tok/s (x%.2f), acceptance by position %s\n",
                 row["depth"].get<int>(), row["tok_s"].get<double>(), row["multiplier_vs_ar"].get<double>(),
                 row["acceptance_by_position"].dump().c_str());
  }
  return report.contract_fields();
}

void run(const ForgeArgs& args) {
  ForgeOptions options;
  options.source = args.source;
  options.out = args.out;
  options.trunk_bits = parse_trunk_format(args.trunk);
  options.mtp = parse_mtp_policy(args.mtp);
  options.group_size = args.group_size;
  options.shard_bytes = parse_byte_size(args.shard_size, "--shard-size");
  options.force = args.force;
  options.threads = args.threads;
  options.progress = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  if (args.verify) options.verify = [&args](const std::filesystem::path& dir) { return verify(args, dir); };
  // A file-size limit (ulimit -f) must surface as a write error that removes the partial output, not as
  // SIGXFSZ killing the process with the partial folder left behind.
  std::signal(SIGXFSZ, SIG_IGN);
  const ForgeResult result = forge_checkpoint(options);
  std::printf("%s\n", result.dir.string().c_str());
  const auto& baseline = result.contract["exactness_baseline"];
  if (args.verify && baseline.value("status", "") != "passed") {
    fail(str("verification failed: greedy MTP decoding differs from AR in ", baseline["mismatches"].dump()),
         (result.dir / "mtplx_runtime.json").string(),
         "the artifact was written with exactness_baseline.status \"failed\"; do not publish it");
  }
}

}  // namespace

void add_forge_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "forge",
      "Build an MTPLX artifact (MLX trunk + MTP sidecar + runtime contract) from a Hugging Face checkpoint");
  auto args = std::make_shared<ForgeArgs>();
  cmd->add_option("SRC_DIR", args->source, "Hugging Face Qwen3.5/3.6 checkpoint folder (with mtp.* weights)")
      ->required();
  cmd->add_option("OUT_DIR", args->out, "Output folder (written as OUT_DIR.partial-* and renamed at the end)")
      ->required();
  cmd->add_option("--trunk", args->trunk, "Trunk format: q8, q4 (MLX affine) or bf16")->capture_default_str();
  cmd->add_option("--mtp", args->mtp, "MTP sidecar: body-int4, int8 or bf16")->capture_default_str();
  cmd->add_option("--group-size", args->group_size, "Quantization group size: 32, 64 or 128")
      ->capture_default_str();
  cmd->add_option("--shard-size", args->shard_size, "Largest trunk shard, e.g. 5GB, 500MB")
      ->capture_default_str();
  cmd->add_flag("--verify,!--no-verify", args->verify,
                "Load the artifact and check greedy AR == MTP at depths 1..3 (default on)");
  cmd->add_option("--verify-prompts", args->verify_prompts,
                  "Text file with verification prompts, one a line");
  cmd->add_option("--verify-tokens", args->verify_tokens, "Greedy tokens per verification prompt")
      ->capture_default_str();
  cmd->add_option("--threads", args->threads, "Threads (0: all cores)")->capture_default_str();
  cmd->add_flag("--force", args->force, "Replace an existing non-empty OUT_DIR");
  cmd->callback([args] { run(*args); });
}

}  // namespace mtplx::cli

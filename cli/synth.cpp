// mtplx synth: writes a random-weight checkpoint of a real Qwen3.5/3.6 shape in one of the on-disk layouts,
// for speed and load tests (see model/synth.h).
#include <cstdio>
#include <memory>
#include <string>

#include "commands.h"
#include "io/safetensors_writer.h"
#include "model/synth.h"

namespace mtplx::cli {
namespace {

struct SynthArgs {
  std::string preset;
  std::string layout;
  std::string out;
  uint64_t seed = 0;
  std::string shard_size = "5GB";
  bool force = false;
  int threads = 0;
};

std::string preset_help() {
  std::string text = "Model shape:";
  for (const auto& name : synth_preset_names()) text += " " + name;
  return text;
}

}  // namespace

void add_synth_command(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("synth", "Write a random-weight checkpoint of a real model shape (for benchmarks)");
  auto args = std::make_shared<SynthArgs>();
  cmd->add_option("--preset", args->preset, preset_help())->required();
  cmd->add_option("--layout", args->layout, "On-disk layout: hf, mlx-q8, mlx-q4, mtplx-q8, mtplx-q4")
      ->required();
  cmd->add_option("--out", args->out, "Output folder (written as OUT.partial-* and renamed at the end)")
      ->required();
  cmd->add_option("--seed", args->seed, "Random seed")->capture_default_str();
  cmd->add_option("--shard-size", args->shard_size, "Largest shard, e.g. 5GB, 500MB, 2GiB")
      ->capture_default_str();
  cmd->add_option("--threads", args->threads, "Generator threads (0: all cores)")->capture_default_str();
  cmd->add_flag("--force", args->force, "Replace a non-empty output folder");
  cmd->callback([args] {
    SynthOptions options;
    options.preset = args->preset;
    synth_preset(options.preset);  // fail on a bad preset before touching the disk
    options.layout = parse_synth_layout(args->layout);
    options.out = args->out;
    options.seed = args->seed;
    options.shard_bytes = parse_byte_size(args->shard_size, "--shard-size");
    options.force = args->force;
    options.threads = args->threads;
    options.progress = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
    const SynthResult result = synthesize_checkpoint(options);
    std::printf("%s\n", result.dir.string().c_str());
  });
}

}  // namespace mtplx::cli

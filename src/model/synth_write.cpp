// Writes a synthetic checkpoint: the values of each chunk are generated on the thread pool and streamed into
// the files by the shared artifact writer (io/artifact_writer.h).
#include "base/error.h"
#include "base/thread_pool.h"
#include "base/timing.h"
#include "io/artifact_writer.h"
#include "model/synth.h"

namespace mtplx {
namespace fs = std::filesystem;
namespace {

std::vector<TensorSpec> specs_of(const std::vector<SynthTensor>& tensors) {
  std::vector<TensorSpec> specs;
  for (const auto& t : tensors) specs.push_back(t.spec);
  return specs;
}

// Generates bytes of synthetic tensors, element ranges spread over the pool.
class Generator {
 public:
  Generator(ThreadPool& pool, uint64_t seed) : pool_(pool), seed_(seed) {}

  TensorBytes bytes_of(const std::vector<SynthTensor>& tensors) {
    return [this, &tensors](size_t index, uint64_t offset, std::span<std::byte> out) {
      const SynthTensor& t = tensors[index];
      const uint64_t element = dtype_size(t.spec.dtype);
      const auto count = static_cast<int64_t>(out.size() / element);
      auto body = [&](int64_t begin, int64_t end) {
        synth_fill(t, seed_, offset / element + begin, out.subspan(begin * element, (end - begin) * element));
      };
      if (count < 65536) {
        body(0, count);
      } else {
        pool_.parallel_for(count, body, 1024);
      }
    };
  }

 private:
  ThreadPool& pool_;
  uint64_t seed_;
};

}  // namespace

SynthResult synthesize_checkpoint(const SynthOptions& options) {
  Stopwatch clock;
  const ModelConfig config = synth_preset(options.preset);
  const SynthFiles files = synth_tensors(config, options.layout);
  const std::vector<TensorSpec> trunk = specs_of(files.trunk);
  const std::vector<TensorSpec> sidecar = specs_of(files.sidecar);
  const uint64_t total = total_bytes(trunk) + total_bytes(sidecar);

  OutputDir dir(options.out, options.force, "--out");
  dir.check_space(total);
  ByteProgress progress(options.progress, "synth", total);
  const size_t shard_count = plan_shards(trunk, options.shard_bytes).size();
  progress.line(str(options.preset, " ", synth_layout_name(options.layout), ": ",
                    trunk.size() + sidecar.size(), " tensors, ", size_text(total), " in ", shard_count,
                    " shard(s)", sidecar.empty() ? "" : " + mtp.safetensors", " -> ", dir.out().string()));

  dir.write_json("config.json", synth_config_json(config, options.layout, options.preset, options.seed));
  dir.write_json("generation_config.json", synth_generation_config(config));
  ThreadPool pool(options.threads);
  Generator generator(pool, options.seed);
  TensorFileWriter writer(progress, std::max(largest_tensor(trunk), largest_tensor(sidecar)));
  const bool mlx = options.layout != SynthLayout::kHf;
  const std::map<std::string, std::string> metadata = {{"format", mlx ? "mlx" : "pt"}};
  const auto shards = write_sharded(writer, dir.path(), trunk, options.shard_bytes, metadata,
                                    generator.bytes_of(files.trunk), progress);
  if (!sidecar.empty()) {
    writer.write(dir.path() / "mtp.safetensors", sidecar, metadata, generator.bytes_of(files.sidecar));
    progress.line(str("wrote mtp.safetensors (", size_text(total_bytes(sidecar)), ")"));
    dir.write_json("mtplx_runtime.json",
                   synth_runtime_contract(options.preset, options.layout, options.seed));
  }
  dir.commit();

  SynthResult result{dir.out(), total, trunk.size() + sidecar.size(), shards.size(), clock.seconds()};
  progress.line(str("done in ", result.seconds, " s: ", dir.out().string()));
  return result;
}

}  // namespace mtplx

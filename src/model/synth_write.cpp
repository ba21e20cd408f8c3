// Writes a synthetic checkpoint: generates each tensor in chunks on the thread pool and streams them into
// the shard files, overlapping the write of one chunk with the generation of the next.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <future>
#include <random>

#include "base/error.h"
#include "base/thread_pool.h"
#include "base/timing.h"
#include "model/synth.h"

namespace mtplx {
namespace fs = std::filesystem;
namespace {

constexpr uint64_t kChunkBytes = 32ull << 20;

std::string gigabytes(uint64_t bytes) {
  return str(static_cast<double>(bytes) / 1e9, " GB");
}

// Removes the partial output folder unless the write completed.
class PartialDir {
 public:
  explicit PartialDir(fs::path path) : path_(std::move(path)) {}
  ~PartialDir() {
    if (path_.empty()) return;
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  PartialDir(const PartialDir&) = delete;
  PartialDir& operator=(const PartialDir&) = delete;
  const fs::path& path() const { return path_; }
  void release() { path_.clear(); }

 private:
  fs::path path_;
};

void write_json(const fs::path& path, const nlohmann::json& json) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  require(out.is_open(), "cannot create file", path.string(), "check the folder is writable");
  out << json.dump(2) << "\n";
  out.flush();
  require(out.good(), "write failed (disk full?)", path.string(), "free disk space and try again");
}

// Reports progress every 5% of the bytes and at the end of each file.
class Progress {
 public:
  Progress(const SynthOptions& options, uint64_t total) : report_(options.progress), total_(total) {}
  void add(uint64_t bytes) {
    done_ += bytes;
    const int percent = total_ ? static_cast<int>(100 * done_ / total_) : 100;
    if (report_ && percent >= next_percent_) {
      report_(str("synth: ", percent, "% (", gigabytes(done_), " of ", gigabytes(total_), ", ",
                  static_cast<int>(clock_.seconds()), " s)"));
      next_percent_ = (percent / 5 + 1) * 5;
    }
  }
  void line(const std::string& text) {
    if (report_) report_(text);
  }

 private:
  const std::function<void(const std::string&)>& report_;
  uint64_t total_;
  uint64_t done_ = 0;
  int next_percent_ = 5;
  Stopwatch clock_;
};

class FileGenerator {
 public:
  FileGenerator(ThreadPool& pool, uint64_t seed, Progress& progress, uint64_t largest_tensor)
      : pool_(pool), seed_(seed), progress_(progress) {
    for (auto& buffer : buffers_) buffer.resize(std::min(kChunkBytes, largest_tensor));
  }

  void write(const fs::path& path, const std::vector<SynthTensor>& tensors,
             const std::map<std::string, std::string>& metadata) {
    std::vector<TensorSpec> specs;
    for (const auto& t : tensors) specs.push_back(t.spec);
    SafetensorsStreamWriter out(path, std::move(specs), metadata);
    std::future<void> pending;
    int which = 0;
    for (const auto& t : tensors) {
      const uint64_t size = t.spec.byte_size();
      const uint64_t element = dtype_size(t.spec.dtype);
      for (uint64_t at = 0; at < size; at += buffers_[which].size()) {
        const uint64_t length = std::min<uint64_t>(buffers_[which].size(), size - at);
        auto chunk = std::span(buffers_[which]).first(length);
        generate(t, at / element, chunk, element);
        if (pending.valid()) pending.get();  // the other buffer is free again
        pending = std::async(std::launch::async, [&out, chunk] { out.write(chunk); });
        progress_.add(length);
        which ^= 1;
      }
    }
    if (pending.valid()) pending.get();
    out.finish();
  }

 private:
  void generate(const SynthTensor& t, uint64_t first, std::span<std::byte> chunk, uint64_t element) {
    const auto count = static_cast<int64_t>(chunk.size() / element);
    auto body = [&](int64_t begin, int64_t end) {
      synth_fill(t, seed_, first + begin, chunk.subspan(begin * element, (end - begin) * element));
    };
    if (count < 65536) {
      body(0, count);
    } else {
      pool_.parallel_for(count, body, 1024);
    }
  }

  ThreadPool& pool_;
  uint64_t seed_;
  Progress& progress_;
  std::vector<std::byte> buffers_[2];
};

uint64_t largest(const SynthFiles& files) {
  uint64_t most = 1;
  for (const auto* list : {&files.trunk, &files.sidecar})
    for (const auto& t : *list) most = std::max(most, t.spec.byte_size());
  return most;
}

uint64_t total_bytes(const std::vector<SynthTensor>& tensors) {
  uint64_t total = 0;
  for (const auto& t : tensors) total += t.spec.byte_size();
  return total;
}

// Normalises `out` (trailing slash) and checks it may be written.
fs::path check_output(const fs::path& requested, bool force) {
  fs::path out = requested.lexically_normal();
  if (out.filename().empty()) out = out.parent_path();
  require(!out.empty(), "no output folder given", "--out", "pass --out DIR");
  std::error_code error;
  if (fs::exists(out, error)) {
    require(fs::is_directory(out), "output path exists and is not a folder", out.string(),
            "choose another --out path");
    require(force || fs::is_empty(out), "output folder is not empty", out.string(),
            "choose an empty or new folder, or pass --force to replace it");
  }
  return out;
}

fs::path make_partial_dir(const fs::path& out) {
  const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  std::error_code error;
  fs::create_directories(parent, error);
  require(!error, str("cannot create the output's parent folder: ", error.message()), parent.string(),
          "check the path and its permissions");
  std::random_device device;
  const fs::path partial = parent / str(out.filename().string(), ".partial-", std::hex, device());
  fs::create_directory(partial, error);
  require(!error, str("cannot create a folder next to the output: ", error.message()), partial.string(),
          "check that the parent folder is writable");
  return partial;
}

void check_space(const fs::path& dir, uint64_t needed) {
  std::error_code error;
  const auto space = fs::space(dir, error);
  if (error) return;  // unknown: the writes themselves will report a full disk
  require(space.available >= needed + (64ull << 20),
          str("not enough disk space: the checkpoint needs ", gigabytes(needed), ", ",
              gigabytes(space.available), " are free"),
          dir.string(), "free disk space or write to another disk");
}

void replace_dir(const fs::path& partial, const fs::path& out) {
  std::error_code error;
  if (fs::exists(out)) fs::remove_all(out, error);
  require(!error, str("cannot remove the old output folder: ", error.message()), out.string());
  fs::rename(partial, out, error);
  require(!error, str("cannot rename the finished checkpoint into place: ", error.message()), out.string());
}

}  // namespace

SynthResult synthesize_checkpoint(const SynthOptions& options) {
  Stopwatch clock;
  const ModelConfig config = synth_preset(options.preset);
  const SynthFiles files = synth_tensors(config, options.layout);
  const fs::path out = check_output(options.out, options.force);
  std::vector<TensorSpec> specs;
  for (const auto& t : files.trunk) specs.push_back(t.spec);
  const auto shards = plan_shards(specs, options.shard_bytes);
  const uint64_t total = total_bytes(files.trunk) + total_bytes(files.sidecar);

  PartialDir partial(make_partial_dir(out));
  check_space(partial.path(), total);
  Progress progress(options, total);
  progress.line(str("synth: ", options.preset, " ", synth_layout_name(options.layout), ": ",
                    files.trunk.size() + files.sidecar.size(), " tensors, ", gigabytes(total), " in ",
                    shards.size(), " shard(s)", files.sidecar.empty() ? "" : " + mtp.safetensors", " -> ",
                    out.string()));

  write_json(partial.path() / "config.json",
             synth_config_json(config, options.layout, options.preset, options.seed));
  write_json(partial.path() / "generation_config.json", synth_generation_config(config));
  ThreadPool pool(options.threads);
  FileGenerator generator(pool, options.seed, progress, largest(files));
  const bool mlx = options.layout != SynthLayout::kHf;
  const std::map<std::string, std::string> metadata = {{"format", mlx ? "mlx" : "pt"}};
  size_t next = 0;
  for (const auto& shard : shards) {
    const std::vector<SynthTensor> part(
        files.trunk.begin() + static_cast<std::ptrdiff_t>(next),
        files.trunk.begin() + static_cast<std::ptrdiff_t>(next + shard.tensors.size()));
    next += shard.tensors.size();
    generator.write(partial.path() / shard.file, part, metadata);
    progress.line(str("synth: wrote ", shard.file, " (", gigabytes(shard.data_bytes), ")"));
  }
  write_shard_index(partial.path(), shards);
  if (!files.sidecar.empty()) {
    generator.write(partial.path() / "mtp.safetensors", files.sidecar, metadata);
    progress.line(str("synth: wrote mtp.safetensors (", gigabytes(total_bytes(files.sidecar)), ")"));
    write_json(partial.path() / "mtplx_runtime.json",
               synth_runtime_contract(options.preset, options.layout, options.seed));
  }
  replace_dir(partial.path(), out);
  partial.release();

  SynthResult result{out, total, files.trunk.size() + files.sidecar.size(), shards.size(), clock.seconds()};
  progress.line(str("synth: done in ", result.seconds, " s: ", out.string()));
  return result;
}

}  // namespace mtplx

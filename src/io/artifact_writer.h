// Writing a whole checkpoint folder safely and fast, shared by every command that produces one (`mtplx
// synth`, `mtplx forge`):
//  - OutputDir: everything is written into OUT.partial-XXXX beside OUT and renamed to OUT only at the end;
//    until commit() succeeds, destroying it removes the partial folder, so an error or an interruption never
//    leaves a half-written checkpoint under the final name.
//  - TensorFileWriter: streams a safetensors file whose tensor bytes come from a callback, chunk by chunk,
//    overlapping the write of one chunk with the production of the next (double buffering), so neither
//    random generation nor quantization waits on the disk and no tensor has to be held whole.
//  - write_sharded(): the trunk split into model-0000N-of-0000M.safetensors + model.safetensors.index.json
//    as Hugging Face and mlx-lm write them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "base/timing.h"
#include "io/safetensors_writer.h"

namespace mtplx {

// One line of progress text; empty: quiet.
using ProgressFn = std::function<void(const std::string&)>;

// "1.23 GB", "45.6 MB", "7.8 KB"
std::string size_text(uint64_t bytes);

class OutputDir {
 public:
  // Checks `out` may be written (absent, or an empty folder, or any folder with `force`) and creates the
  // partial folder beside it. `option` names the command-line option in errors ("--out", "OUT_DIR").
  OutputDir(const std::filesystem::path& out, bool force, std::string_view option);
  ~OutputDir();
  OutputDir(const OutputDir&) = delete;
  OutputDir& operator=(const OutputDir&) = delete;

  const std::filesystem::path& path() const { return partial_; }  // where files go until commit()
  const std::filesystem::path& out() const { return out_; }

  // Refuses to start when the disk holding the folder has less than `bytes` (+64 MB) free.
  void check_space(uint64_t bytes) const;
  // Writes `json` (indent 2) to path()/name; throws on a write error.
  void write_json(const std::string& name, const nlohmann::json& json) const;
  // Copies a file into path()/name.
  void copy_file(const std::filesystem::path& from, const std::string& name) const;
  // Replaces `out` (when forced) and renames the partial folder to it.
  void commit();

 private:
  std::filesystem::path out_;
  std::filesystem::path partial_;
  bool committed_ = false;
};

// Fills `out` with bytes [offset, offset + out.size()) of tensor `index` of the file being written.
using TensorBytes = std::function<void(size_t index, uint64_t offset, std::span<std::byte> out)>;

// Reports progress every 5% of the bytes: "<label>: 40% (1.2 GB of 3 GB, 12 s)".
class ByteProgress {
 public:
  ByteProgress(ProgressFn report, std::string label, uint64_t total)
      : report_(std::move(report)), label_(std::move(label)), total_(total) {}
  void add(uint64_t bytes);
  void line(const std::string& text) const {
    if (report_) report_(label_ + ": " + text);
  }

 private:
  ProgressFn report_;
  std::string label_;
  uint64_t total_;
  uint64_t done_ = 0;
  int next_percent_ = 5;
  Stopwatch clock_;
};

class TensorFileWriter {
 public:
  // `largest_tensor` bounds the chunk buffers (at most 32 MB each).
  TensorFileWriter(ByteProgress& progress, uint64_t largest_tensor);

  // Writes `tensors` to `path` (atomically, see SafetensorsStreamWriter), asking `bytes` for each tensor's
  // data by its index in `tensors`. The data is laid out widest element type first (stable otherwise) so
  // that every tensor is aligned for its type. Returns the size of the finished file.
  uint64_t write(const std::filesystem::path& path, const std::vector<TensorSpec>& tensors,
                 const std::map<std::string, std::string>& metadata, const TensorBytes& bytes);

 private:
  ByteProgress& progress_;
  std::vector<std::byte> buffers_[2];
};

// Writes `tensors` (in order) into shards of at most `shard_bytes` in `dir` plus
// model.safetensors.index.json; `bytes` is called with indices into `tensors`. Returns the shard plan that
// was written.
std::vector<ShardPlan> write_sharded(TensorFileWriter& writer, const std::filesystem::path& dir,
                                     const std::vector<TensorSpec>& tensors, uint64_t shard_bytes,
                                     const std::map<std::string, std::string>& metadata,
                                     const TensorBytes& bytes, const ByteProgress& progress);

uint64_t total_bytes(const std::vector<TensorSpec>& tensors);
uint64_t largest_tensor(const std::vector<TensorSpec>& tensors);

}  // namespace mtplx

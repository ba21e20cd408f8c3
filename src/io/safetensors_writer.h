// Writes safetensors files, always to a temporary name that is renamed into place at the end, so a failed
// or interrupted write never leaves a half file under the final name.
//  - SafetensorsWriter: tensors are added with their bytes, then written in one pass (small files, tests).
//  - SafetensorsStreamWriter: tensors are declared first (name, dtype, shape), the header is written at once,
//    then the data is streamed in declared order in chunks of any size, so a multi-gigabyte file never
//    has to be held in memory.
//  - Shards: plan_shards() splits a tensor list into files of at most N bytes, named as Hugging Face and
//    MLX name them, and write_shard_index() writes model.safetensors.index.json for them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/dtype.h"

namespace mtplx {

struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;

  uint64_t byte_size() const;
};

class SafetensorsWriter {
 public:
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape,
           std::span<const std::byte> bytes);
  template <class T>
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, const std::vector<T>& values) {
    add(name, dtype, std::move(shape), std::as_bytes(std::span<const T>(values)));
  }
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  size_t data_bytes() const;
  size_t tensor_count() const { return entries_.size(); }
  // Serialises the whole file (header + data) into memory.
  std::vector<std::byte> serialize() const;
  void write(const std::filesystem::path& path) const;

 private:
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<std::byte> bytes;
  };
  std::map<std::string, Entry> entries_;  // sorted by name, as the reference writer does
  std::map<std::string, std::string> metadata_;
};

// The header of a file holding `tensors` in this order: the 8-byte length followed by the JSON text, padded
// with spaces so the data section starts 8-byte aligned.
std::string safetensors_header(const std::vector<TensorSpec>& tensors,
                               const std::map<std::string, std::string>& metadata);

class SafetensorsStreamWriter {
 public:
  // Creates `path`.partial and writes the header. Names must be unique.
  SafetensorsStreamWriter(std::filesystem::path path, std::vector<TensorSpec> tensors,
                          const std::map<std::string, std::string>& metadata = {});
  // Removes the temporary file unless finish() succeeded.
  ~SafetensorsStreamWriter();
  SafetensorsStreamWriter(const SafetensorsStreamWriter&) = delete;
  SafetensorsStreamWriter& operator=(const SafetensorsStreamWriter&) = delete;

  // Appends the next bytes of the data section (the tensors' bytes back to back, in declared order); a
  // chunk may end inside a tensor or span several. Throws on a write error (disk full) or on overflow.
  void write(std::span<const std::byte> chunk);
  template <class T>
  void write_values(std::span<const T> values) {
    write(std::as_bytes(values));
  }
  // Checks every declared byte was written, flushes, closes and renames the file into place.
  void finish();

  const std::vector<TensorSpec>& tensors() const { return tensors_; }
  uint64_t data_bytes() const { return total_; }
  uint64_t written() const { return written_; }

 private:
  void fail_write();

  std::filesystem::path path_;
  std::filesystem::path temp_;
  std::vector<TensorSpec> tensors_;
  std::ofstream out_;
  uint64_t total_ = 0;
  uint64_t written_ = 0;
  bool finished_ = false;
};

// One file of a sharded checkpoint.
struct ShardPlan {
  std::string file;  // "model.safetensors" when alone, else "model-00001-of-00003.safetensors"
  std::vector<TensorSpec> tensors;
  uint64_t data_bytes = 0;
};

// Splits `tensors` (kept in order) into shards of at most `max_shard_bytes` of data; a tensor larger than
// the limit gets a shard of its own, as the Hugging Face and MLX writers do.
std::vector<ShardPlan> plan_shards(const std::vector<TensorSpec>& tensors, uint64_t max_shard_bytes);

// model.safetensors.index.json: {"metadata": {"total_size": N}, "weight_map": {tensor: file}}, written
// atomically into `dir`.
void write_shard_index(const std::filesystem::path& dir, const std::vector<ShardPlan>& shards);

// Parses a size such as "5GB" (10^9, as Hugging Face's max_shard_size), "512MiB" (2^20), "2G" or a plain
// byte count. `where` names the option in errors.
uint64_t parse_byte_size(std::string_view text, std::string_view where);

}  // namespace mtplx

// Writes safetensors files: tensors are added with their bytes, then written in one pass (header, data),
// to a temporary name that is renamed into place so a failed write never leaves a half file behind.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "base/dtype.h"

namespace mtplx {

class SafetensorsWriter {
 public:
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, std::span<const std::byte> bytes);
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

}  // namespace mtplx

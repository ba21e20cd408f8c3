// safetensors files: an 8-byte little-endian header length N, N bytes of JSON describing each tensor
// (dtype, shape, [begin, end) byte offsets into the data that follows), then the data. Files are
// mmapped and tensors are views into the map; every header field is validated before use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/dtype.h"
#include "base/mapped_file.h"

namespace mtplx {

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::span<const std::byte> bytes;
  std::string file;  // file name, for messages

  int64_t numel() const;
  const void* data() const { return bytes.data(); }
  std::string describe() const;  // "name [a, b] BF16 (file)"
};

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);

  const std::vector<TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::filesystem::path& path() const { return map_.path(); }

 private:
  MappedFile map_;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint (shards, sidecars), by name. Keeps the files mapped.
class TensorStore {
 public:
  void add_file(const std::filesystem::path& path);

  const TensorView* find(const std::string& name) const;
  // Throws a clear error naming the tensor and the checkpoint when absent.
  const TensorView& get(const std::string& name) const;
  bool contains(const std::string& name) const { return find(name) != nullptr; }
  const std::map<std::string, TensorView>& all() const { return by_name_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, TensorView> by_name_;
};

}  // namespace mtplx

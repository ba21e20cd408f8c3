#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "base/error.h"

namespace mtplx {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the reference implementation's own limit

uint64_t read_u64_le(const std::byte* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(p[i]);
  return value;
}

std::vector<int64_t> parse_shape(const nlohmann::json& entry, const std::string& where) {
  require(entry.contains("shape") && entry["shape"].is_array(), "tensor entry has no shape array", where,
          "the file is not a valid safetensors file");
  std::vector<int64_t> shape;
  for (const auto& dim : entry["shape"]) {
    require(dim.is_number_unsigned(), "tensor shape has a non-integer or negative dimension", where);
    shape.push_back(dim.get<int64_t>());
  }
  return shape;
}

// Multiplies the shape out, refusing products that overflow.
uint64_t checked_numel(const std::vector<int64_t>& shape, const std::string& where) {
  uint64_t count = 1;
  for (int64_t dim : shape) {
    const auto d = static_cast<uint64_t>(dim);
    if (d != 0 && count > std::numeric_limits<uint64_t>::max() / d) fail("tensor shape overflows", where);
    count *= d;
  }
  return count;
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

std::string TensorView::describe() const {
  std::string dims;
  for (size_t i = 0; i < shape.size(); ++i) dims += (i ? ", " : "") + std::to_string(shape[i]);
  return str(name, " [", dims, "] ", dtype_name(dtype), " (", file, ")");
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : map_(path) {
  const std::string where = path.string();
  const auto bytes = map_.bytes();
  require(bytes.size() >= 8, str("file is too short for a safetensors header (", bytes.size(), " bytes)"),
          where, "the file is truncated or not a safetensors file");
  const uint64_t header_size = read_u64_le(bytes.data());
  require(header_size <= kMaxHeaderBytes, str("header length ", header_size, " is implausibly large"), where,
          "the file is not a safetensors file");
  require(header_size <= bytes.size() - 8,
          str("header length ", header_size, " runs past the end of the file (", bytes.size(), " bytes)"),
          where, "the file is truncated");
  const auto* header_begin = reinterpret_cast<const char*>(bytes.data() + 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_begin, header_begin + header_size);
  } catch (const nlohmann::json::exception& e) {
    fail(str("header is not valid JSON: ", e.what()), where, "the file is corrupt");
  }
  require(header.is_object(), "header is not a JSON object", where);

  const std::span<const std::byte> data = bytes.subspan(8 + header_size);
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      require(entry.is_object(), "__metadata__ is not an object", where);
      for (const auto& [key, value] : entry.items())
        metadata_[key] = value.is_string() ? value.get<std::string>() : value.dump();
      continue;
    }
    const std::string tensor_where = str(where, ": tensor ", name);
    require(entry.is_object(), "tensor entry is not an object", tensor_where);
    require(entry.contains("dtype") && entry["dtype"].is_string(), "tensor entry has no dtype", tensor_where);
    const std::string dtype_text = entry["dtype"].get<std::string>();
    const auto dtype = parse_dtype(dtype_text);
    require(dtype.has_value(), str("unknown dtype \"", dtype_text, "\""), tensor_where,
            "supported dtypes: F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32 U16 U8 BOOL");
    auto shape = parse_shape(entry, tensor_where);
    const auto& offsets = entry.value("data_offsets", nlohmann::json());
    require(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() &&
                offsets[1].is_number_unsigned(),
            "data_offsets must be two non-negative integers", tensor_where);
    const auto begin = offsets[0].get<uint64_t>();
    const auto end = offsets[1].get<uint64_t>();
    require(begin <= end, str("data_offsets [", begin, ", ", end, ") are reversed"), tensor_where);
    require(end <= data.size(),
            str("data_offsets [", begin, ", ", end, ") run past the data section (", data.size(), " bytes)"),
            tensor_where, "the file is truncated or corrupt");
    const uint64_t numel = checked_numel(shape, tensor_where);
    require(numel <= (end - begin) / dtype_size(*dtype) && numel * dtype_size(*dtype) == end - begin,
            str("byte range of ", end - begin, " does not match shape and dtype (", numel, " x ",
                dtype_size(*dtype), " bytes)"),
            tensor_where);
    ranges.emplace_back(begin, end);
    tensors_.push_back(TensorView{name, *dtype, std::move(shape), data.subspan(begin, end - begin),
                                  path.filename().string()});
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    require(ranges[i].first >= ranges[i - 1].second,
            str("tensor data ranges overlap at byte ", ranges[i].first), where, "the file is corrupt");
  }
}

void TensorStore::add_file(const std::filesystem::path& path) {
  auto file = std::make_unique<SafetensorsFile>(path);
  for (const auto& tensor : file->tensors()) {
    auto [it, inserted] = by_name_.emplace(tensor.name, tensor);
    require(inserted, str("tensor ", tensor.name, " appears in both ", it->second.file, " and ", tensor.file),
            path.parent_path().string(), "remove the duplicate file");
  }
  files_.push_back(std::move(file));
}

const TensorView* TensorStore::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &it->second;
}

const TensorView& TensorStore::get(const std::string& name) const {
  const TensorView* tensor = find(name);
  if (tensor == nullptr) {
    std::string dir = files_.empty() ? std::string() : files_.front()->path().parent_path().string();
    fail(str("missing tensor ", name), dir, "the checkpoint is incomplete or not a Qwen3.5/3.6 model");
  }
  return *tensor;
}

}  // namespace mtplx

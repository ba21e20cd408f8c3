#include "io/safetensors_writer.h"

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"

namespace mtplx {

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape,
                            std::span<const std::byte> bytes) {
  int64_t numel = 1;
  for (int64_t dim : shape) numel *= dim;
  require(static_cast<size_t>(numel) * dtype_size(dtype) == bytes.size(),
          str("tensor ", name, ": ", bytes.size(), " bytes do not match its shape"), "", "internal error");
  require(!entries_.contains(name), str("tensor ", name, " added twice"));
  entries_[name] = Entry{dtype, std::move(shape), std::vector<std::byte>(bytes.begin(), bytes.end())};
}

size_t SafetensorsWriter::data_bytes() const {
  size_t total = 0;
  for (const auto& [name, entry] : entries_) total += entry.bytes.size();
  return total;
}

std::vector<std::byte> SafetensorsWriter::serialize() const {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  size_t offset = 0;
  for (const auto& [name, entry] : entries_) {
    header[name] = {{"dtype", dtype_name(entry.dtype)},
                    {"shape", entry.shape},
                    {"data_offsets", {offset, offset + entry.bytes.size()}}};
    offset += entry.bytes.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // align the data section to 8 bytes
  std::vector<std::byte> out(8 + text.size() + offset);
  uint64_t length = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>((length >> (8 * i)) & 0xff);
  std::memcpy(out.data() + 8, text.data(), text.size());
  size_t at = 8 + text.size();
  for (const auto& [name, entry] : entries_) {
    if (!entry.bytes.empty()) std::memcpy(out.data() + at, entry.bytes.data(), entry.bytes.size());
    at += entry.bytes.size();
  }
  return out;
}

void SafetensorsWriter::write(const std::filesystem::path& path) const {
  const auto bytes = serialize();
  const std::filesystem::path temp = path.string() + ".partial";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    require(out.good(), "cannot create file", temp.string(), "check the folder exists and is writable");
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out.good()) {
      out.close();
      std::filesystem::remove(temp);
      fail("write failed (disk full?)", temp.string(), "free disk space and try again");
    }
  }
  std::filesystem::rename(temp, path);
}

}  // namespace mtplx

#include "io/safetensors_writer.h"

#include <cctype>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.h"

namespace mtplx {
namespace fs = std::filesystem;

uint64_t TensorSpec::byte_size() const {
  uint64_t numel = 1;
  for (int64_t dim : shape) numel *= static_cast<uint64_t>(dim);
  return numel * dtype_size(dtype);
}

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

std::string safetensors_header(const std::vector<TensorSpec>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    const uint64_t size = t.byte_size();
    header[t.name] = {
        {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + size}}};
    offset += size;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // align the data section to 8 bytes
  std::string out(8, '\0');
  const uint64_t length = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  return out + text;
}

std::vector<std::byte> SafetensorsWriter::serialize() const {
  std::vector<TensorSpec> specs;
  for (const auto& [name, entry] : entries_) specs.push_back({name, entry.dtype, entry.shape});
  const std::string header = safetensors_header(specs, metadata_);
  std::vector<std::byte> out(header.size() + data_bytes());
  std::memcpy(out.data(), header.data(), header.size());
  size_t at = header.size();
  for (const auto& [name, entry] : entries_) {
    if (!entry.bytes.empty()) std::memcpy(out.data() + at, entry.bytes.data(), entry.bytes.size());
    at += entry.bytes.size();
  }
  return out;
}

void SafetensorsWriter::write(const fs::path& path) const {
  std::vector<TensorSpec> specs;
  for (const auto& [name, entry] : entries_) specs.push_back({name, entry.dtype, entry.shape});
  SafetensorsStreamWriter out(path, std::move(specs), metadata_);
  for (const auto& [name, entry] : entries_) out.write(entry.bytes);
  out.finish();
}

// --- streaming

SafetensorsStreamWriter::SafetensorsStreamWriter(fs::path path, std::vector<TensorSpec> tensors,
                                                 const std::map<std::string, std::string>& metadata)
    : path_(std::move(path)), temp_(path_.string() + ".partial"), tensors_(std::move(tensors)) {
  std::set<std::string> names;
  for (const auto& t : tensors_) {
    require(names.insert(t.name).second, str("tensor ", t.name, " declared twice"), path_.string(),
            "internal error");
    total_ += t.byte_size();
  }
  const std::string header = safetensors_header(tensors_, metadata);
  out_.open(temp_, std::ios::binary | std::ios::trunc);
  require(out_.is_open(), "cannot create file", temp_.string(), "check the folder exists and is writable");
  out_.write(header.data(), static_cast<std::streamsize>(header.size()));
  if (!out_.good()) fail_write();
}

SafetensorsStreamWriter::~SafetensorsStreamWriter() {
  if (finished_) return;
  out_.close();
  std::error_code ignored;
  fs::remove(temp_, ignored);
}

void SafetensorsStreamWriter::fail_write() {
  out_.close();
  std::error_code ignored;
  fs::remove(temp_, ignored);
  finished_ = true;  // nothing left to clean up
  fail("write failed (disk full?)", temp_.string(), "free disk space and try again");
}

void SafetensorsStreamWriter::write(std::span<const std::byte> chunk) {
  require(!finished_, "internal error: write after finish", path_.string());
  require(written_ + chunk.size() <= total_,
          str("internal error: ", written_ + chunk.size(), " bytes written but only ", total_, " declared"),
          path_.string());
  if (chunk.empty()) return;
  out_.write(reinterpret_cast<const char*>(chunk.data()), static_cast<std::streamsize>(chunk.size()));
  if (!out_.good()) fail_write();
  written_ += chunk.size();
}

void SafetensorsStreamWriter::finish() {
  require(!finished_, "internal error: finish called twice", path_.string());
  require(written_ == total_, str("internal error: ", written_, " of ", total_, " declared bytes written"),
          path_.string());
  out_.flush();
  if (!out_.good()) fail_write();
  out_.close();
  if (out_.fail()) fail_write();
  std::error_code error;
  fs::rename(temp_, path_, error);
  if (error) {
    fs::remove(temp_, error);
    finished_ = true;
    fail(str("cannot rename the finished file into place: ", error.message()), path_.string());
  }
  finished_ = true;
}

// --- shards

std::vector<ShardPlan> plan_shards(const std::vector<TensorSpec>& tensors, uint64_t max_shard_bytes) {
  require(max_shard_bytes > 0, "shard size must be positive");
  std::vector<ShardPlan> shards;
  for (const auto& t : tensors) {
    const uint64_t size = t.byte_size();
    if (shards.empty() ||
        (shards.back().data_bytes > 0 && shards.back().data_bytes + size > max_shard_bytes)) {
      shards.emplace_back();
    }
    shards.back().tensors.push_back(t);
    shards.back().data_bytes += size;
  }
  if (shards.empty()) shards.emplace_back();
  const size_t n = shards.size();
  for (size_t i = 0; i < n; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, n);
    shards[i].file = n == 1 ? "model.safetensors" : name;
  }
  return shards;
}

void write_shard_index(const fs::path& dir, const std::vector<ShardPlan>& shards) {
  nlohmann::json map = nlohmann::json::object();
  uint64_t total = 0;
  for (const auto& shard : shards) {
    total += shard.data_bytes;
    for (const auto& t : shard.tensors) map[t.name] = shard.file;
  }
  const nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", map}};
  const std::string text = index.dump(2) + "\n";
  const fs::path path = dir / "model.safetensors.index.json";
  const fs::path temp = path.string() + ".partial";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    require(out.is_open(), "cannot create file", temp.string(), "check the folder exists and is writable");
    out << text;
    out.flush();
    if (!out.good()) {
      out.close();
      fs::remove(temp);
      fail("write failed (disk full?)", temp.string(), "free disk space and try again");
    }
  }
  fs::rename(temp, path);
}

uint64_t parse_byte_size(std::string_view text, std::string_view where) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  const std::string number(text.substr(0, i));
  std::string unit(text.substr(i));
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  static const std::map<std::string, double> kUnits = {{"", 1},
                                                       {"B", 1},
                                                       {"K", 1e3},
                                                       {"KB", 1e3},
                                                       {"M", 1e6},
                                                       {"MB", 1e6},
                                                       {"G", 1e9},
                                                       {"GB", 1e9},
                                                       {"T", 1e12},
                                                       {"TB", 1e12},
                                                       {"KIB", 1024.0},
                                                       {"MIB", 1048576.0},
                                                       {"GIB", 1073741824.0},
                                                       {"TIB", 1099511627776.0}};
  const auto unit_it = kUnits.find(unit);
  double value = 0;
  bool ok = !number.empty() && unit_it != kUnits.end();
  if (ok) {
    try {
      value = std::stod(number) * unit_it->second;
    } catch (const std::exception&) {
      ok = false;
    }
  }
  require(ok && value >= 1, str("invalid size \"", text, "\""), where,
          "write a size such as 5GB, 500MB, 2GiB or a byte count");
  return static_cast<uint64_t>(value);
}

}  // namespace mtplx

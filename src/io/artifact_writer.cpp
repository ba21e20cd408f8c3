#include "io/artifact_writer.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <future>
#include <random>

#include "base/error.h"

namespace mtplx {
namespace fs = std::filesystem;
namespace {

constexpr uint64_t kChunkBytes = 32ull << 20;

}  // namespace

std::string size_text(uint64_t bytes) {
  const double value = static_cast<double>(bytes);
  char text[32];
  if (value >= 1e9) {
    std::snprintf(text, sizeof text, "%.2f GB", value / 1e9);
  } else if (value >= 1e6) {
    std::snprintf(text, sizeof text, "%.1f MB", value / 1e6);
  } else {
    std::snprintf(text, sizeof text, "%.1f KB", value / 1e3);
  }
  return text;
}

uint64_t total_bytes(const std::vector<TensorSpec>& tensors) {
  uint64_t total = 0;
  for (const auto& t : tensors) total += t.byte_size();
  return total;
}

uint64_t largest_tensor(const std::vector<TensorSpec>& tensors) {
  uint64_t most = 1;
  for (const auto& t : tensors) most = std::max(most, t.byte_size());
  return most;
}

// --- OutputDir

OutputDir::OutputDir(const fs::path& requested, bool force, std::string_view option) {
  out_ = requested.lexically_normal();
  if (out_.filename().empty()) out_ = out_.parent_path();  // trailing slash
  require(!out_.empty(), "no output folder given", option, str("pass ", option));
  std::error_code error;
  if (fs::exists(out_, error)) {
    require(fs::is_directory(out_), "output path exists and is not a folder", out_.string(),
            str("choose another ", option, " path"));
    require(force || fs::is_empty(out_), "output folder already exists and is not empty", out_.string(),
            "choose an empty or new folder, or pass --force to replace it");
  }
  const fs::path parent = out_.has_parent_path() ? out_.parent_path() : fs::path(".");
  fs::create_directories(parent, error);
  require(!error, str("cannot create the output's parent folder: ", error.message()), parent.string(),
          "check the path and its permissions");
  std::random_device device;
  partial_ = parent / str(out_.filename().string(), ".partial-", std::hex, device());
  fs::create_directory(partial_, error);
  require(!error, str("cannot create a folder next to the output: ", error.message()), partial_.string(),
          "check that the parent folder is writable");
}

OutputDir::~OutputDir() {
  if (committed_) return;
  std::error_code ignored;
  fs::remove_all(partial_, ignored);
}

void OutputDir::check_space(uint64_t needed) const {
  std::error_code error;
  const auto space = fs::space(partial_, error);
  if (error) return;  // unknown: the writes themselves will report a full disk
  require(space.available >= needed + (64ull << 20),
          str("not enough disk space: the output needs ", size_text(needed), ", ", size_text(space.available),
              " are free"),
          partial_.string(), "free disk space or write to another disk");
}

void OutputDir::write_json(const std::string& name, const nlohmann::json& json) const {
  const fs::path path = partial_ / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  require(out.is_open(), "cannot create file", path.string(), "check the folder is writable");
  out << json.dump(2) << "\n";
  out.flush();
  require(out.good(), "write failed (disk full?)", path.string(), "free disk space and try again");
}

void OutputDir::copy_file(const fs::path& from, const std::string& name) const {
  const fs::path to = partial_ / name;
  std::ifstream in(from, std::ios::binary);
  require(in.good(), "cannot read file", from.string(), "check that it exists and is readable");
  std::ofstream out(to, std::ios::binary | std::ios::trunc);
  require(out.is_open(), "cannot create file", to.string(), "check the folder is writable");
  out << in.rdbuf();
  out.flush();
  require(out.good(), "write failed (disk full?)", to.string(), "free disk space and try again");
}

void OutputDir::commit() {
  std::error_code error;
  if (fs::exists(out_)) fs::remove_all(out_, error);
  require(!error, str("cannot remove the old output folder: ", error.message()), out_.string());
  fs::rename(partial_, out_, error);
  require(!error, str("cannot rename the finished folder into place: ", error.message()), out_.string());
  committed_ = true;
}

// --- progress

void ByteProgress::add(uint64_t bytes) {
  done_ += bytes;
  const int percent = total_ ? static_cast<int>(100 * done_ / total_) : 100;
  if (report_ && percent >= next_percent_) {
    line(str(percent, "% (", size_text(done_), " of ", size_text(total_), ", ",
             static_cast<int>(clock_.seconds()), " s)"));
    next_percent_ = (percent / 5 + 1) * 5;
  }
}

// --- tensor files

TensorFileWriter::TensorFileWriter(ByteProgress& progress, uint64_t largest) : progress_(progress) {
  for (auto& buffer : buffers_) buffer.resize(std::min(kChunkBytes, std::max<uint64_t>(largest, 1)));
}

uint64_t TensorFileWriter::write(const fs::path& path, const std::vector<TensorSpec>& declared,
                                 const std::map<std::string, std::string>& metadata,
                                 const TensorBytes& bytes) {
  // Wider element types first (as the safetensors library orders them): the data section starts 8-byte
  // aligned, so every tensor then starts aligned for its own type and U32 codes can be read in place.
  std::vector<size_t> order(declared.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return dtype_size(declared[a].dtype) > dtype_size(declared[b].dtype);
  });
  std::vector<TensorSpec> tensors;
  for (size_t i : order) tensors.push_back(declared[i]);
  SafetensorsStreamWriter out(path, tensors, metadata);
  std::future<void> pending;
  int which = 0;
  for (size_t k = 0; k < tensors.size(); ++k) {
    const size_t i = order[k];
    const uint64_t size = tensors[k].byte_size();
    for (uint64_t at = 0; at < size; at += buffers_[which].size()) {
      const uint64_t length = std::min<uint64_t>(buffers_[which].size(), size - at);
      auto chunk = std::span(buffers_[which]).first(length);
      bytes(i, at, chunk);
      if (pending.valid()) pending.get();  // the other buffer is free again
      pending = std::async(std::launch::async, [&out, chunk] { out.write(chunk); });
      progress_.add(length);
      which ^= 1;
    }
  }
  if (pending.valid()) pending.get();
  out.finish();
  return safetensors_header(tensors, metadata).size() + out.data_bytes();
}

std::vector<ShardPlan> write_sharded(TensorFileWriter& writer, const fs::path& dir,
                                     const std::vector<TensorSpec>& tensors, uint64_t shard_bytes,
                                     const std::map<std::string, std::string>& metadata,
                                     const TensorBytes& bytes, const ByteProgress& progress) {
  const auto shards = plan_shards(tensors, shard_bytes);
  size_t first = 0;
  for (const auto& shard : shards) {
    writer.write(
        dir / shard.file, shard.tensors, metadata,
        [&](size_t index, uint64_t offset, std::span<std::byte> out) { bytes(first + index, offset, out); });
    first += shard.tensors.size();
    progress.line(str("wrote ", shard.file, " (", size_text(shard.data_bytes), ")"));
  }
  write_shard_index(dir, shards);
  return shards;
}

}  // namespace mtplx

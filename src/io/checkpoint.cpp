#include "io/checkpoint.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "base/error.h"

namespace mtplx {
namespace fs = std::filesystem;

std::string_view layout_name(CheckpointLayout layout) {
  switch (layout) {
    case CheckpointLayout::kHuggingFace:
      return "huggingface";
    case CheckpointLayout::kMlx:
      return "mlx";
    case CheckpointLayout::kMtplx:
      return "mtplx";
  }
  return "unknown";
}

nlohmann::json read_json_file(const fs::path& path) {
  std::ifstream in(path);
  require(in.good(), "cannot read file", path.string(), "check that it exists and is readable");
  std::stringstream text;
  text << in.rdbuf();
  try {
    return nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    fail(str("invalid JSON: ", e.what()), path.string(), "fix or re-download the file");
  }
}

namespace {

// The trunk's weight files: the shards named by the index, else model.safetensors, else every
// *.safetensors in the folder (MLX conversions name shards model-0000N-of-0000M.safetensors).
std::vector<fs::path> trunk_files(const fs::path& dir, const std::optional<fs::path>& sidecar) {
  const fs::path index_path = dir / "model.safetensors.index.json";
  if (fs::exists(index_path)) {
    const auto index = read_json_file(index_path);
    require(index.contains("weight_map") && index["weight_map"].is_object(), "index has no weight_map object",
            index_path.string());
    std::set<std::string> names;
    for (const auto& [tensor, file] : index["weight_map"].items()) {
      require(file.is_string(), str("weight_map entry for ", tensor, " is not a file name"),
              index_path.string());
      names.insert(file.get<std::string>());
    }
    std::vector<fs::path> files;
    for (const auto& name : names) {
      require(fs::exists(dir / name), str("shard ", name, " listed in the index is missing"), dir.string(),
              "download the missing shard");
      files.push_back(dir / name);
    }
    return files;
  }
  if (fs::exists(dir / "model.safetensors")) return {dir / "model.safetensors"};
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".safetensors" || entry.path().filename() == "reference.safetensors")
      continue;
    if (sidecar && fs::equivalent(entry.path(), *sidecar)) continue;
    files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  require(!files.empty(), "no .safetensors weight files found", dir.string(),
          "point --model at a folder holding config.json and the model's safetensors files");
  return files;
}

std::optional<fs::path> find_sidecar(const fs::path& dir, const nlohmann::json& config) {
  if (config.contains("mlx_lm_extra_tensors") && config["mlx_lm_extra_tensors"].is_object()) {
    const auto& extra = config["mlx_lm_extra_tensors"];
    if (extra.contains("mtp_file") && extra["mtp_file"].is_string()) {
      fs::path path = dir / extra["mtp_file"].get<std::string>();
      require(fs::exists(path), "MTP sidecar named by config.json mlx_lm_extra_tensors.mtp_file is missing",
              path.string());
      return path;
    }
  }
  for (const char* name : {"mtp.safetensors", "mtp/weights.safetensors", "model-mtp.safetensors"}) {
    if (fs::exists(dir / name)) return dir / name;
  }
  return std::nullopt;
}

bool has_prefix(const TensorStore& tensors, std::string_view prefix) {
  auto it = tensors.all().lower_bound(std::string(prefix));
  return it != tensors.all().end() && it->first.starts_with(prefix);
}

}  // namespace

Checkpoint open_checkpoint(const fs::path& dir) {
  require(fs::is_directory(dir), "model directory not found", dir.string(),
          "pass a folder holding config.json and *.safetensors");
  Checkpoint ckpt;
  ckpt.dir = dir;
  require(fs::exists(dir / "config.json"), "config.json is missing", dir.string(),
          "a checkpoint folder needs config.json next to its weights");
  ckpt.config = read_json_file(dir / "config.json");
  require(ckpt.config.is_object(), "config.json is not a JSON object", (dir / "config.json").string());
  if (fs::exists(dir / "generation_config.json")) {
    ckpt.generation_config = read_json_file(dir / "generation_config.json");
  }
  if (fs::exists(dir / "mtplx_runtime.json")) {
    const fs::path path = dir / "mtplx_runtime.json";
    ckpt.contract = parse_runtime_contract(read_json_file(path), path.string());
  }
  ckpt.mtp_sidecar = find_sidecar(dir, ckpt.config);
  for (const auto& file : trunk_files(dir, ckpt.mtp_sidecar)) ckpt.tensors.add_file(file);
  if (ckpt.mtp_sidecar) ckpt.tensors.add_file(*ckpt.mtp_sidecar);

  const bool mlx_names = has_prefix(ckpt.tensors, "language_model.model.");
  if (ckpt.mtp_sidecar || ckpt.contract) {
    require(mlx_names, "MTPLX artifact without an MLX trunk (no language_model.model.* tensors)",
            dir.string());
    ckpt.layout = CheckpointLayout::kMtplx;
  } else if (mlx_names) {
    ckpt.layout = CheckpointLayout::kMlx;
  } else {
    ckpt.layout = CheckpointLayout::kHuggingFace;
  }
  return ckpt;
}

}  // namespace mtplx

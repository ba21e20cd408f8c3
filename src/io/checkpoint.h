// A checkpoint directory as found in the wild, with its layout detected:
//  - Hugging Face: config.json (+ text_config), model.safetensors or shards + model.safetensors.index.json,
//    names model.language_model.* / model.* / lm_head / mtp.*.
//  - MLX (mlx-community conversions): names language_model.model.*, optional quantization block.
//  - MTPLX artifact: an MLX trunk + an MTP sidecar (mtp.safetensors) + mtplx_runtime.json.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "io/runtime_contract.h"
#include "io/safetensors.h"

namespace mtplx {

enum class CheckpointLayout { kHuggingFace, kMlx, kMtplx };
std::string_view layout_name(CheckpointLayout layout);

struct Checkpoint {
  std::filesystem::path dir;
  CheckpointLayout layout = CheckpointLayout::kHuggingFace;
  nlohmann::json config;                             // config.json as written
  std::optional<nlohmann::json> generation_config;   // generation_config.json, if present
  std::optional<RuntimeContract> contract;           // mtplx_runtime.json, if present
  std::optional<std::filesystem::path> mtp_sidecar;  // the sidecar file, if any
  TensorStore tensors;                               // trunk shards and sidecar
};

// Opens and validates the directory's files (config, index, shards, sidecar, contract). Throws mtplx::Error
// naming the file and what to do when something is missing or malformed.
Checkpoint open_checkpoint(const std::filesystem::path& dir);

// Reads a JSON file, with errors that name the file.
nlohmann::json read_json_file(const std::filesystem::path& path);

}  // namespace mtplx

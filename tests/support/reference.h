// The transformers references stored beside each fixture checkpoint (tests/fixtures/*/reference.safetensors,
// written by tools/reference/make_fixtures.py): prompt tokens, trunk logits and MTP logits.
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/dtype.h"
#include "io/safetensors.h"
#include "support/temp_dir.h"

namespace mtplx::testing {

struct Reference {
  std::vector<int32_t> tokens;
  std::vector<float> logits;      // [T, V]
  std::vector<float> mtp_logits;  // [T-1, V]
  int64_t vocab = 0;
};

inline Reference read_reference_file(const std::filesystem::path& file) {
  TensorStore store;
  store.add_file(file);
  Reference ref;
  const TensorView& tokens = store.get("tokens");
  for (int64_t i = 0; i < tokens.numel(); ++i) {
    int32_t id;
    std::memcpy(&id, static_cast<const char*>(tokens.data()) + 4 * i, 4);
    ref.tokens.push_back(id);
  }
  auto floats = [&](const std::string& name, std::vector<float>& out) {
    const TensorView& view = store.get(name);
    out.resize(view.numel());
    for (int64_t i = 0; i < view.numel(); ++i) out[i] = load_float(view.data(), view.dtype, i);
    return view.shape.back();
  };
  ref.vocab = floats("logits", ref.logits);
  if (store.contains("mtp_logits")) floats("mtp_logits", ref.mtp_logits);
  return ref;
}

inline Reference read_reference(const std::filesystem::path& dir) {
  return read_reference_file(dir / "reference.safetensors");
}

// max |ours - reference| / max |reference|.
inline double relative_error(const std::vector<float>& ours, const std::vector<float>& ref) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(ours[i])) return INFINITY;  // std::max would skip a NaN
    diff = std::max(diff, std::fabs(double(ours[i]) - ref[i]));
    scale = std::max(scale, std::fabs(double(ref[i])));
  }
  return diff / scale;
}

// Fixture folders that carry a reference, sorted.
inline std::vector<std::filesystem::path> fixture_dirs() {
  std::vector<std::filesystem::path> dirs;
  if (!std::filesystem::exists(fixtures_dir())) return dirs;
  for (const auto& entry : std::filesystem::directory_iterator(fixtures_dir())) {
    if (std::filesystem::exists(entry.path() / "reference.safetensors")) dirs.push_back(entry.path());
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

// A gtest parameter name from a fixture folder name.
inline std::string fixture_name(const ::testing::TestParamInfo<std::filesystem::path>& info) {
  std::string name = info.param.filename().string();
  std::replace_if(
      name.begin(), name.end(), [](char c) { return !std::isalnum(static_cast<unsigned char>(c)); }, '_');
  return name;
}

}  // namespace mtplx::testing

// Element types as they appear in checkpoint files, plus the scalar conversions every layer needs.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace mtplx {

enum class DType : uint8_t { F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL };

// Bytes per element.
size_t dtype_size(DType type);
// The safetensors spelling ("F32", "BF16", ...).
std::string_view dtype_name(DType type);
std::optional<DType> parse_dtype(std::string_view name);

inline float bf16_to_float(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

// Round to nearest even, as PyTorch and MLX do; NaN stays NaN.
inline uint16_t float_to_bf16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float f16_to_float(uint16_t bits);
uint16_t float_to_f16(float value);

// Reads element `index` of a float-typed array (F64/F32/F16/BF16) as float.
float load_float(const void* data, DType type, size_t index);

}  // namespace mtplx

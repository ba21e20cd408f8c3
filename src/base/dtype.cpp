#include "base/dtype.h"

#include <array>
#include <cmath>

#include "base/error.h"

namespace mtplx {
namespace {

struct DTypeInfo {
  DType type;
  std::string_view name;
  size_t size;
};

constexpr std::array<DTypeInfo, 13> kTypes{{{DType::F64, "F64", 8},
                                            {DType::F32, "F32", 4},
                                            {DType::F16, "F16", 2},
                                            {DType::BF16, "BF16", 2},
                                            {DType::I64, "I64", 8},
                                            {DType::I32, "I32", 4},
                                            {DType::I16, "I16", 2},
                                            {DType::I8, "I8", 1},
                                            {DType::U64, "U64", 8},
                                            {DType::U32, "U32", 4},
                                            {DType::U16, "U16", 2},
                                            {DType::U8, "U8", 1},
                                            {DType::BOOL, "BOOL", 1}}};

const DTypeInfo& info(DType type) {
  for (const auto& entry : kTypes)
    if (entry.type == type) return entry;
  fail("internal error: unknown dtype enum value");
}

}  // namespace

size_t dtype_size(DType type) {
  return info(type).size;
}
std::string_view dtype_name(DType type) {
  return info(type).name;
}

std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& entry : kTypes)
    if (entry.name == name) return entry.type;
  return std::nullopt;
}

float f16_to_float(uint16_t bits) {
  const uint32_t sign = (bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1f;
  const uint32_t mantissa = bits & 0x3ff;
  if (exponent == 0) {
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

uint16_t float_to_f16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const float magnitude = std::fabs(value);
  if (std::isnan(value)) return sign | 0x7e00;
  if (magnitude >= 65520.0f) return sign | 0x7c00;
  if (magnitude < 6.103515625e-05f) {  // subnormal range: round to a multiple of 2^-24
    return sign | static_cast<uint16_t>(std::nearbyint(magnitude * 16777216.0f));
  }
  uint32_t m = bits & 0x7fffffffu;
  m += 0xfffu + ((m >> 13) & 1u);  // round to nearest even at bit 13
  return sign | static_cast<uint16_t>((m - (112u << 23)) >> 13);
}

float load_float(const void* data, DType type, size_t index) {
  switch (type) {
    case DType::F32: {
      float value;
      std::memcpy(&value, static_cast<const char*>(data) + 4 * index, 4);
      return value;
    }
    case DType::BF16: {
      uint16_t bits;
      std::memcpy(&bits, static_cast<const char*>(data) + 2 * index, 2);
      return bf16_to_float(bits);
    }
    case DType::F16: {
      uint16_t bits;
      std::memcpy(&bits, static_cast<const char*>(data) + 2 * index, 2);
      return f16_to_float(bits);
    }
    case DType::F64: {
      double value;
      std::memcpy(&value, static_cast<const char*>(data) + 8 * index, 8);
      return static_cast<float>(value);
    }
    default:
      fail(str("expected a floating-point tensor, got ", dtype_name(type)));
  }
}

}  // namespace mtplx

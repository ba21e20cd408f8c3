// Portable kernels: plain C++ the compiler can auto-vectorise for whatever target it builds (arm64 NEON,
// baseline x86-64 SSE2). Also the dequantizer every path shares.
#include <algorithm>
#include <array>
#include <cstring>

#include "backend/cpu/matmul_internal.h"

namespace mtplx::cpu::detail {
namespace {

// Reads codes of a little-endian bit stream one by one, refilling a 64-bit buffer from uint32 words.
// Covers every width, including 3/5/6-bit codes that straddle words.
class CodeReader {
 public:
  CodeReader(const uint32_t* words, int64_t first_code, int bits)
      : words_(words + first_code * bits / 32), bits_(bits), mask_((1u << bits) - 1) {
    const int skip = static_cast<int>(first_code * bits % 32);
    buffer_ = static_cast<uint64_t>(*words_++) >> skip;
    have_ = 32 - skip;
  }
  uint32_t next() {
    if (have_ < bits_) {  // only read a word once a code needs it: never past the end of the row
      buffer_ |= static_cast<uint64_t>(*words_++) << have_;
      have_ += 32;
    }
    const auto code = static_cast<uint32_t>(buffer_) & mask_;
    buffer_ >>= bits_;
    have_ -= bits_;
    return code;
  }

 private:
  const uint32_t* words_;
  uint64_t buffer_ = 0;
  int have_ = 0;
  int bits_;
  uint32_t mask_;
};

// 8-lane partial sums let the compiler vectorise the reduction without -ffast-math (it may not
// reassociate a single float accumulator).
float dot(const float* a, const float* b, int64_t n) {
  std::array<float, 8> acc{};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  float sum = 0;
  for (; i < n; ++i) sum += a[i] * b[i];
  for (float v : acc) sum += v;
  return sum;
}

}  // namespace

void dequantize_span(const WeightMatrix& w, int64_t row, int64_t c0, std::span<float> out) {
  const auto n = static_cast<int64_t>(out.size());
  if (!w.quantized()) {
    const int64_t base = row * w.cols + c0;
    switch (w.dtype) {
      case DType::F32:
        std::memcpy(out.data(), static_cast<const float*>(w.data) + base, sizeof(float) * n);
        return;
      case DType::BF16: {
        const uint16_t* src = static_cast<const uint16_t*>(w.data) + base;
        for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_float(src[i]);
        return;
      }
      default: {
        const uint16_t* src = static_cast<const uint16_t*>(w.data) + base;
        for (int64_t i = 0; i < n; ++i) out[i] = f16_to_float(src[i]);
        return;
      }
    }
  }
  const int64_t groups = w.cols / w.group_size;
  const uint32_t* words = static_cast<const uint32_t*>(w.data) + row * w.words_per_row();
  CodeReader codes(words, c0, w.bits);
  int64_t c = c0;
  while (c < c0 + n) {
    const int64_t g = c / w.group_size;
    const float scale = load_param(w.scales, w.scale_dtype, row * groups + g);
    const float bias = load_param(w.biases, w.scale_dtype, row * groups + g);
    const int64_t end = std::min(c0 + n, (g + 1) * w.group_size);
    for (; c < end; ++c) out[c - c0] = scale * static_cast<float>(codes.next()) + bias;
  }
}

// Each weight row is dequantized once into `scratch` (L1-resident) and then dotted with every activation
// row, so the weights stream from memory once for all T.
void rows_portable(const WeightMatrix& w, const RowArgs& a, int64_t r0, int64_t r1,
                   std::span<float> scratch) {
  const std::span<float> row = scratch.first(static_cast<size_t>(w.cols));
  for (int64_t r = r0; r < r1; ++r) {
    dequantize_span(w, r, 0, row);
    for (int64_t t = 0; t < a.T; ++t) a.y[t * w.rows + r] = dot(row.data(), a.x + t * w.cols, w.cols);
  }
}

void tile_portable(const float* const* xrows, const float* panel, int64_t kc, float* c) {
  std::array<std::array<float, kTileN>, kTileM> acc{};
  for (int64_t k = 0; k < kc; ++k) {
    const float* p = panel + k * kTileN;
    for (int i = 0; i < kTileM; ++i) {
      const float xv = xrows[i][k];
      for (int j = 0; j < kTileN; ++j) acc[i][j] += xv * p[j];
    }
  }
  for (int i = 0; i < kTileM; ++i)
    for (int j = 0; j < kTileN; ++j) c[i * kTileN + j] = acc[i][j];
}

}  // namespace mtplx::cpu::detail

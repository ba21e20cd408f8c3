// MLX affine quantization ("affine" mode) of fp32 rows, producing exactly what MLX writes: packed uint32
// codes (each row a little-endian bit stream, LSB first) plus per-group scales and biases in BF16, with
// w ~= scale * q + bias (see backend/weight.h for the layout the readers expect).
//
// The per-group parameters follow MLX's own algorithm rather than plain min/max so that requantized files
// match MLX bit for bit in the common case: of the two group edges, the one with the larger magnitude is
// made exactly representable (it becomes the bias) and the step is adjusted so that 0.0 is representable
// too; scales are therefore negative when the group's largest magnitude is its maximum.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "base/thread_pool.h"

namespace mtplx {

// Checks bits (2..8, not 7) and group size (32, 64, 128) and that `cols` is a multiple of the group size.
// `where` names the tensor in errors.
void check_quant_params(int64_t cols, int bits, int group_size, std::string_view where = {});

// uint32 words per packed row.
inline int64_t packed_words_per_row(int64_t cols, int bits) {
  return cols * bits / 32;
}

struct GroupParams {
  float scale = 0;  // full-precision values used to pick the codes (MLX stores them rounded to BF16)
  float bias = 0;
};

// MLX's choice of (scale, bias) for one group of values.
GroupParams affine_group_params(std::span<const float> group, int bits);

// Code of one value under (scale, bias): round-to-nearest-even, clamped to [0, 2^bits - 1].
uint32_t affine_code(float value, GroupParams params, int bits);

// Quantizes one row of `cols` values into `words` (packed_words_per_row), `scales` and `biases`
// (cols / group_size BF16 bit patterns each).
void quantize_row(std::span<const float> row, int bits, int group_size, std::span<uint32_t> words,
                  std::span<uint16_t> scales, std::span<uint16_t> biases);

// Writes `codes` (each < 2^bits) as a little-endian bit stream into `words` (zeroed first).
void pack_codes(std::span<const uint8_t> codes, int bits, std::span<uint32_t> words);

struct QuantizedMatrix {
  int64_t rows = 0;
  int64_t cols = 0;
  int bits = 0;
  int group_size = 0;
  std::vector<uint32_t> words;   // [rows, cols * bits / 32]
  std::vector<uint16_t> scales;  // [rows, cols / group_size] BF16
  std::vector<uint16_t> biases;  // [rows, cols / group_size] BF16
};

// Quantizes a row-major [rows, cols] matrix; rows are spread over `pool` when given.
QuantizedMatrix quantize_matrix(std::span<const float> values, int64_t rows, int64_t cols, int bits,
                                int group_size, ThreadPool* pool = nullptr);
// The same for a matrix whose rows are produced one at a time: row_values(r, out) writes row r's cols
// values into out, so a source in another element type is never expanded whole.
QuantizedMatrix quantize_matrix_rows(int64_t rows, int64_t cols, int bits, int group_size, ThreadPool* pool,
                                     const std::function<void(int64_t, std::span<float>)>& row_values);

}  // namespace mtplx

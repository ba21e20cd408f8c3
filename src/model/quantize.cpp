#include "model/quantize.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "base/dtype.h"
#include "base/error.h"

namespace mtplx {

void check_quant_params(int64_t cols, int bits, int group_size, std::string_view where) {
  require(bits >= 2 && bits <= 8 && bits != 7, str("unsupported bit width ", bits), where,
          "MLX affine quantization supports 2, 3, 4, 5, 6 and 8 bits");
  require(group_size == 32 || group_size == 64 || group_size == 128,
          str("unsupported group size ", group_size), where, "use a group size of 32, 64 or 128");
  require(cols > 0 && cols % group_size == 0,
          str("row length ", cols, " is not a multiple of the group size ", group_size), where,
          "only matrices whose input dimension divides into whole groups can be quantized");
}

GroupParams affine_group_params(std::span<const float> group, int bits) {
  const float n_bins = static_cast<float>((1 << bits) - 1);
  constexpr float kEps = 1e-7f;  // MLX's floor on the step, so constant groups still get a usable scale
  float lo = std::numeric_limits<float>::infinity();
  float hi = -lo;
  for (float v : group) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  // Anchor the larger-magnitude edge: it becomes the bias (code 0) and the step is stretched so that an
  // integer number of steps reaches 0.0 exactly, as MLX does.
  const bool anchor_min = std::abs(lo) > std::abs(hi);
  float scale = std::max((hi - lo) / n_bins, kEps);
  if (!anchor_min) scale = -scale;
  const float edge = anchor_min ? lo : hi;
  const float q0 = std::rint(edge / scale);
  GroupParams params{scale, 0.0f};
  if (q0 != 0.0f) {
    params.scale = edge / q0;
    params.bias = edge;
  }
  return params;
}

uint32_t affine_code(float value, GroupParams params, int bits) {
  const float n_bins = static_cast<float>((1 << bits) - 1);
  const float q = std::rint((value - params.bias) / params.scale);
  return static_cast<uint32_t>(std::clamp(q, 0.0f, n_bins));
}

void pack_codes(std::span<const uint8_t> codes, int bits, std::span<uint32_t> words) {
  require(codes.size() * bits <= words.size() * 32, "internal error: packed buffer too small");
  std::fill(words.begin(), words.end(), 0u);
  uint64_t bit = 0;
  for (uint8_t code : codes) {
    const uint64_t word = bit / 32;
    const uint64_t shift = bit % 32;
    const uint64_t wide = static_cast<uint64_t>(code) << shift;  // may straddle two words (3/5/6 bits)
    words[word] |= static_cast<uint32_t>(wide);
    if (shift + bits > 32) words[word + 1] |= static_cast<uint32_t>(wide >> 32);
    bit += bits;
  }
}

void quantize_row(std::span<const float> row, int bits, int group_size, std::span<uint32_t> words,
                  std::span<uint16_t> scales, std::span<uint16_t> biases) {
  const auto cols = static_cast<int64_t>(row.size());
  check_quant_params(cols, bits, group_size);
  const int64_t groups = cols / group_size;
  require(static_cast<int64_t>(words.size()) == packed_words_per_row(cols, bits) &&
              static_cast<int64_t>(scales.size()) == groups && static_cast<int64_t>(biases.size()) == groups,
          "internal error: quantize_row output sizes");
  std::vector<uint8_t> codes(static_cast<size_t>(cols));
  for (int64_t g = 0; g < groups; ++g) {
    const auto group = row.subspan(static_cast<size_t>(g * group_size), static_cast<size_t>(group_size));
    const GroupParams params = affine_group_params(group, bits);
    for (int64_t i = 0; i < group_size; ++i) {
      codes[static_cast<size_t>(g * group_size + i)] =
          static_cast<uint8_t>(affine_code(group[i], params, bits));
    }
    scales[g] = float_to_bf16(params.scale);
    biases[g] = float_to_bf16(params.bias);
  }
  pack_codes(codes, bits, words);
}

QuantizedMatrix quantize_matrix_rows(int64_t rows, int64_t cols, int bits, int group_size, ThreadPool* pool,
                                     const std::function<void(int64_t, std::span<float>)>& row_values) {
  check_quant_params(cols, bits, group_size);
  QuantizedMatrix q;
  q.rows = rows;
  q.cols = cols;
  q.bits = bits;
  q.group_size = group_size;
  const int64_t wpr = packed_words_per_row(cols, bits);
  const int64_t groups = cols / group_size;
  q.words.resize(static_cast<size_t>(rows * wpr));
  q.scales.resize(static_cast<size_t>(rows * groups));
  q.biases.resize(static_cast<size_t>(rows * groups));
  auto body = [&](int64_t begin, int64_t end) {
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = begin; r < end; ++r) {
      row_values(r, row);
      quantize_row(row, bits, group_size,
                   std::span(q.words).subspan(static_cast<size_t>(r * wpr), static_cast<size_t>(wpr)),
                   std::span(q.scales).subspan(static_cast<size_t>(r * groups), static_cast<size_t>(groups)),
                   std::span(q.biases).subspan(static_cast<size_t>(r * groups), static_cast<size_t>(groups)));
    }
  };
  if (pool != nullptr) {
    pool->parallel_for(rows, body);
  } else {
    body(0, rows);
  }
  return q;
}

QuantizedMatrix quantize_matrix(std::span<const float> values, int64_t rows, int64_t cols, int bits,
                                int group_size, ThreadPool* pool) {
  require(static_cast<int64_t>(values.size()) == rows * cols, "internal error: quantize_matrix size");
  return quantize_matrix_rows(rows, cols, bits, group_size, pool, [&](int64_t r, std::span<float> out) {
    const auto row = values.subspan(static_cast<size_t>(r * cols), static_cast<size_t>(cols));
    std::copy(row.begin(), row.end(), out.begin());
  });
}

}  // namespace mtplx

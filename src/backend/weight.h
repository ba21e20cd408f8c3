// A weight matrix as the backends consume it: a logical [rows = out_features, cols = in_features] matrix,
// either dense (F32/F16/BF16) or MLX affine-quantized. Non-owning: the bytes live in the mmapped
// checkpoint (CPU) or in device memory (CUDA); only a backend's own repacked copy (`tiles`) is shared
// ownership.
//
// Affine quantization (MLX "affine" mode): w[r, c] = scales[r, c / G] * q[r, c] + biases[r, c / G], with q an
// unsigned `bits`-bit code. Each row is a little-endian bit stream of `cols * bits` bits stored in uint32
// words (for bits 2/4/8 code j of a word sits at bits [j*bits, (j+1)*bits), LSB first); scales and biases
// are [rows, cols / G] in scale_dtype.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "base/dtype.h"

namespace mtplx {

struct WeightMatrix {
  int64_t rows = 0;
  int64_t cols = 0;
  DType dtype = DType::F32;  // dense element type, or U32 when quantized
  const void* data = nullptr;
  int bits = 0;  // 0: dense; 2..8: affine-quantized
  int group_size = 0;
  DType scale_dtype = DType::BF16;
  const void* scales = nullptr;
  const void* biases = nullptr;
  // The CPU backend's QuantDot::Int8 copy of the codes, scales and biases, regrouped 16 rows to a tile
  // (cpu::with_int8_tiles); null elsewhere. The fields above keep describing the matrix as stored.
  std::shared_ptr<const std::byte> tiles;

  bool quantized() const { return bits > 0; }
  // uint32 words per row of packed codes.
  int64_t words_per_row() const { return cols * bits / 32; }
  // Bytes a full pass over the matrix reads (codes + scales + biases, or the dense values).
  size_t bytes() const {
    if (!quantized()) return static_cast<size_t>(rows * cols) * dtype_size(dtype);
    return static_cast<size_t>(rows * words_per_row()) * 4 +
           2 * static_cast<size_t>(rows * (cols / group_size)) * dtype_size(scale_dtype);
  }
};

}  // namespace mtplx

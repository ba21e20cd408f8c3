// Tensor: a row-major fp32 matrix [rows, cols] in a backend's memory (host for CPU, device for CUDA).
// Model code never dereferences `data`; it hands tensors to Backend ops. Views share the storage.
#pragma once

#include <cstdint>
#include <memory>

namespace mtplx {

struct Tensor {
  std::shared_ptr<void> storage;  // keeps the allocation alive; null for an empty tensor
  float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;

  int64_t numel() const { return rows * cols; }
  bool empty() const { return data == nullptr; }
  // Rows [begin, begin + count) as a view.
  Tensor row_view(int64_t begin, int64_t count) const {
    return Tensor{storage, data + begin * cols, count, cols};
  }
  // The same storage seen as [new_rows, new_cols] (numel must match).
  Tensor reshaped(int64_t new_rows, int64_t new_cols) const {
    return Tensor{storage, data, new_rows, new_cols};
  }
};

}  // namespace mtplx

// CudaBackend::top_k: each logits row's k best entries on the device (top_k.cuh), so a sampled decode step
// under a top-k cut moves k (id, value) pairs per row to the host instead of the row (a 248k vocabulary is
// 1 MB) and skips the host's selection pass.
#include <cstring>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/top_k.cuh"

namespace mtplx {

void CudaBackend::top_k(const Tensor& logits, int k, std::vector<ScoredToken>& out) {
  const int64_t rows = logits.rows, cols = logits.cols;
  require(k >= 0, str("top_k needs k >= 0, got ", k), "Backend::top_k");
  if (!cuda::top_k_fits(rows, cols, k)) {
    Backend::top_k(logits, k, out);
    return;
  }
  const size_t count = static_cast<size_t>(rows) * k;  // candidates out: ids, then values
  const std::shared_ptr<void> scratch = ctx_->scratch(count * 8);
  auto* ids = static_cast<int32_t*>(scratch.get());
  auto* values = reinterpret_cast<float*>(ids + count);
  cuda::queue_top_k(*ctx_, logits.data, rows, cols, k, ids, values);
  const auto* stage = static_cast<const std::byte*>(ctx_->read_back(ids, count * 8));
  out.resize(count);
  for (size_t i = 0; i < count; ++i) {
    std::memcpy(&out[i].id, stage + i * sizeof(int32_t), sizeof(int32_t));
    std::memcpy(&out[i].value, stage + (count + i) * sizeof(float), sizeof(float));
  }
}

}  // namespace mtplx

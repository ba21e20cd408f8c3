#include <algorithm>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_context.h"

namespace mtplx {
namespace {

__global__ void copy_kernel(const uint4* __restrict__ src, uint4* __restrict__ dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    dst[i] = src[i];
}

}  // namespace

double cuda_copy_bandwidth(size_t bytes, int passes) {
  cuda::DeviceBuffer src, dst;
  void* p = nullptr;
  MTPLX_CUDA_CHECK(cudaMalloc(&p, bytes));
  src.reset(p);
  MTPLX_CUDA_CHECK(cudaMalloc(&p, bytes));
  dst.reset(p);
  MTPLX_CUDA_CHECK(cudaMemset(src.get(), 1, bytes));
  int sms = 0;
  MTPLX_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  cudaEvent_t start, stop;
  MTPLX_CUDA_CHECK(cudaEventCreate(&start));
  MTPLX_CUDA_CHECK(cudaEventCreate(&stop));
  const int64_t n = static_cast<int64_t>(bytes / 16);
  double best = 0;
  for (int pass = 0; pass < passes + 1; ++pass) {  // the first pass warms up
    MTPLX_CUDA_CHECK(cudaEventRecord(start));
    copy_kernel<<<sms * 8, 256>>>(static_cast<const uint4*>(src.get()), static_cast<uint4*>(dst.get()), n);
    cuda::check_launch("copy_kernel");
    MTPLX_CUDA_CHECK(cudaEventRecord(stop));
    MTPLX_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    MTPLX_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    if (pass > 0) best = std::max(best, 2.0 * static_cast<double>(bytes) / (ms * 1e-3));
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return best;
}

}  // namespace mtplx

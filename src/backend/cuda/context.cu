#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/matmul_mma.h"

namespace mtplx::cuda {

void check(cudaError_t status, const char* what, const char* where) {
  if (status == cudaSuccess) return;
  fail(str("CUDA error: ", cudaGetErrorString(status), " (", cudaGetErrorName(status), ") in ", what), where,
       "check that the GPU is healthy and has free memory (nvidia-smi); rerun with CUDA_LAUNCH_BLOCKING=1 "
       "to find the failing kernel");
}

void check_launch(const char* kernel) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) check(status, str("launch of ", kernel).c_str(), "cuda backend");
}

Pool::~Pool() {
  for (auto& [size, blocks] : free_)
    for (void* p : blocks) cudaFree(p);
}

// Buckets: 256 B minimum, then four steps per power of two, so a reused block wastes at most 25%.
size_t Pool::bucket(size_t bytes) {
  if (bytes <= 256) return 256;
  size_t power = 256;
  while (power * 2 < bytes) power *= 2;
  const size_t step = power / 4;
  return (bytes + step - 1) / step * step;
}

std::shared_ptr<void> Pool::get(const std::shared_ptr<Pool>& self, size_t bytes) {
  const size_t size = bucket(bytes);
  void* block = nullptr;
  {
    std::lock_guard lock(self->mutex_);
    auto it = self->free_.find(size);
    if (it != self->free_.end() && !it->second.empty()) {
      block = it->second.back();
      it->second.pop_back();
    }
  }
  if (block == nullptr) {
    cudaError_t status = cudaMalloc(&block, size);
    if (status == cudaErrorMemoryAllocation) {
      // Give the cached blocks back and try once more before failing.
      cudaGetLastError();
      std::lock_guard lock(self->mutex_);
      cudaDeviceSynchronize();
      for (auto& [s, blocks] : self->free_) {
        for (void* p : blocks) cudaFree(p);
        self->held_ -= s * blocks.size();
        blocks.clear();
      }
      status = cudaMalloc(&block, size);
    }
    check(status, str("cudaMalloc of ", size, " bytes").c_str(), "cuda backend activation pool");
    std::lock_guard lock(self->mutex_);
    self->held_ += size;
  }
  return std::shared_ptr<void>(block, [pool = self, size](void* p) { pool->put(p, size); });
}

void Pool::put(void* block, size_t size) {
  std::lock_guard lock(mutex_);
  free_[size].push_back(block);
}

size_t Pool::held_bytes() const {
  std::lock_guard lock(mutex_);
  return held_;
}

Context::Context(int dev) : device(dev) {
  int count = 0;
  check(cudaGetDeviceCount(&count), "cudaGetDeviceCount", "cuda backend");
  require(dev >= 0 && dev < count, str("CUDA device ", dev, " does not exist (", count, " present)"), "",
          "pick a device number below the count nvidia-smi shows");
  MTPLX_CUDA_CHECK(cudaSetDevice(dev));
  MTPLX_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, dev));
  MTPLX_CUDA_CHECK(cudaDeviceGetAttribute(&shared_per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  int major = 0, minor = 0;
  MTPLX_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  MTPLX_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
  wgmma_code = major == 9 && minor == 0 && wgmma_code_loaded();
  MTPLX_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (cudaStream_t& s : side) MTPLX_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  for (cudaEvent_t& e : events) MTPLX_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  for (cudaEvent_t& e : download_events)
    MTPLX_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
}

Context::~Context() {
  if (stream != nullptr) {
    cudaStreamSynchronize(stream);
    cudaStreamDestroy(stream);
  }
  for (cudaStream_t s : side)
    if (s != nullptr) cudaStreamDestroy(s);
  for (cudaEvent_t e : events)
    if (e != nullptr) cudaEventDestroy(e);
  for (cudaEvent_t e : download_events)
    if (e != nullptr) cudaEventDestroy(e);
}

void* Context::staging_for(size_t bytes) {
  if (bytes > staging_bytes) {
    staging.reset();
    void* p = nullptr;
    check(cudaMallocHost(&p, bytes), str("cudaMallocHost of ", bytes, " bytes").c_str(),
          "cuda backend download");
    staging.reset(p);
    staging_bytes = bytes;
  }
  return staging.get();
}

const void* Context::read_back(const void* device, size_t bytes) {
  // Through pinned memory: a copy into pageable memory would be staged by the driver anyway.
  void* stage = staging_for(bytes);
  MTPLX_CUDA_CHECK(cudaMemcpyAsync(stage, device, bytes, cudaMemcpyDeviceToHost, stream));
  MTPLX_CUDA_CHECK(cudaStreamSynchronize(stream));
  return stage;
}

const void* Context::keep_upload(const void* host, size_t bytes) {
  // Rounded up to whole 4-byte words (zeros past the data): kernels read 16-bit scales as the aligned word
  // that holds them.
  const size_t padded = (bytes + 3) & ~size_t{3};
  void* p = nullptr;
  check(cudaMalloc(&p, padded == 0 ? 4 : padded), str("cudaMalloc of ", padded, " bytes").c_str(),
        "cuda backend weight upload");
  weights.emplace_back(p);
  weight_bytes += bytes;
  if (padded != bytes) MTPLX_CUDA_CHECK(cudaMemset(p, 0, padded));
  if (bytes > 0) MTPLX_CUDA_CHECK(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice));
  return p;
}

}  // namespace mtplx::cuda

namespace mtplx {

bool cuda_device_present() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return count > 0;
}

std::string cuda_device_description() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    return str("no CUDA device (", cudaGetErrorString(status), ")");
  }
  if (count == 0) return "no CUDA device";
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return "CUDA device 0 (properties unavailable)";
  const double gib = static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0);
  return str(prop.name, ", ", prop.multiProcessorCount, " SMs, ", static_cast<int>(gib * 10) / 10.0,
             " GiB, sm_", prop.major, prop.minor);
}

}  // namespace mtplx

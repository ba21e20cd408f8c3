#include "backend/device.h"

#include <cstdio>

#include "backend/cpu/cpu_backend.h"
#include "base/error.h"
#if MTPLX_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace mtplx {

bool cuda_built() {
#if MTPLX_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

std::string default_device() {
#if MTPLX_HAVE_CUDA
  if (cuda_device_present()) return "cuda";
#endif
  return "cpu";
}

cpu::QuantDot parse_quant_dot(std::string_view name) {
  if (name == "exact") return cpu::QuantDot::Exact;
  if (name == "int8") return cpu::QuantDot::Int8;
  fail(str("unknown CPU matmul mode \"", name, "\""), "--cpu-matmul", "use exact or int8");
}

std::unique_ptr<Backend> make_backend(std::string_view device, int threads, cpu::QuantDot dot) {
  const std::string name = device == "auto" ? default_device() : std::string(device);
  if (name == "cpu") {
    auto backend = std::make_unique<CpuBackend>(threads);
    if (dot == cpu::QuantDot::Int8 && !cpu::int8_dot_supported())
      std::fprintf(stderr,
                   "mtplx: --cpu-matmul int8 needs AVX2, which this CPU lacks; "
                   "running the exact kernels\n");
    backend->set_quant_dot(dot);
    return backend;
  }
  if (name == "cuda") {
#if MTPLX_HAVE_CUDA
    require(cuda_device_present(), str("--device cuda: ", cuda_device_description()), "",
            "run on a machine with an NVIDIA GPU and driver, or use --device cpu");
    return std::make_unique<CudaBackend>(0);
#else
    fail("--device cuda: this mtplx was built without the CUDA backend", "",
         "rebuild with the CUDA toolkit installed (cmake -DMTPLX_CUDA=ON), or use --device cpu");
#endif
  }
  fail(str("unknown device \"", device, "\""), "--device", "use auto, cpu or cuda");
}

}  // namespace mtplx

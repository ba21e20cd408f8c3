#include "backend/device.h"

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

std::unique_ptr<Backend> make_backend(std::string_view device, int threads) {
  const std::string name = device == "auto" ? default_device() : std::string(device);
  if (name == "cpu") return std::make_unique<CpuBackend>(threads);
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

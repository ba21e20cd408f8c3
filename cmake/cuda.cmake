# The CUDA backend (src/backend/cuda/) is compiled into mtplx_core when MTPLX_CUDA allows and nvcc exists.
# It links only the static CUDA runtime (no cuBLAS), so the binaries run on a machine that has the driver
# and nothing else. Code built with it sees MTPLX_HAVE_CUDA=1.
set(MTPLX_HAVE_CUDA OFF)
if(NOT MTPLX_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER AND (MTPLX_CUDA STREQUAL "ON" OR NOT MTPLX_SANITIZE))
    set(MTPLX_HAVE_CUDA ON)
  elseif(MTPLX_CUDA STREQUAL "ON")
    message(FATAL_ERROR "MTPLX_CUDA=ON but no CUDA compiler was found: install the CUDA toolkit "
                        "(/usr/local/cuda/bin/nvcc) or configure with -DMTPLX_CUDA=OFF")
  endif()
endif()

if(MTPLX_HAVE_CUDA)
  # Architectures are given as -gencode flags below (sm_90a machine code plus compute_90 PTX).
  set(CMAKE_CUDA_ARCHITECTURES OFF)
  enable_language(CUDA)
  # CMake 3.25 does not know that nvcc 12+ speaks C++20; tell it the flag.
  if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  endif()
  find_package(CUDAToolkit REQUIRED)
  message(STATUS "mtplx: CUDA backend on (${CMAKE_CUDA_COMPILER})")
else()
  message(STATUS "mtplx: CUDA backend off")
endif()

function(mtplx_add_cuda_backend target)
  if(NOT MTPLX_HAVE_CUDA)
    return()
  endif()
  file(GLOB cuda_sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/backend/cuda/*.cu
       ${PROJECT_SOURCE_DIR}/src/backend/cuda/*.cpp)
  target_sources(${target} PRIVATE ${cuda_sources})
  set(cuda_flags -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_90,code=compute_90
                 --expt-relaxed-constexpr -lineinfo)
  if(MTPLX_WERROR)
    list(APPEND cuda_flags -Werror=all-warnings -Xcompiler=-Wall,-Wextra,-Werror)
  endif()
  target_compile_options(${target} PRIVATE "$<$<COMPILE_LANGUAGE:CUDA>:${cuda_flags}>")
  set_target_properties(${target} PROPERTIES CUDA_STANDARD 20 CUDA_STANDARD_REQUIRED ON
                                             CUDA_EXTENSIONS OFF CUDA_RUNTIME_LIBRARY Static)
  target_compile_definitions(${target} PUBLIC MTPLX_HAVE_CUDA=1)
  target_link_libraries(${target} PUBLIC CUDA::cudart_static)
endfunction()

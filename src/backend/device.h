// Picks the backend a command runs on: "cpu", "cuda", or "auto" (CUDA when this build has the CUDA
// backend and a GPU is present, else the CPU).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "backend/backend.h"
#include "backend/cpu/matmul.h"

namespace mtplx {

// Whether this build includes the CUDA backend.
bool cuda_built();
// "cuda" or "cpu": what "auto" resolves to on this machine.
std::string default_device();
// A backend for `device` ("auto", "cpu", "cuda"); CPU threads (0 = all) and the quantized dot product
// (cpu::QuantDot) apply to the CPU backend.
std::unique_ptr<Backend> make_backend(std::string_view device, int threads,
                                      cpu::QuantDot dot = cpu::QuantDot::Exact);

// "exact" or "int8" (the --cpu-matmul flag) as a cpu::QuantDot; an unknown name is a clear error.
cpu::QuantDot parse_quant_dot(std::string_view name);

}  // namespace mtplx

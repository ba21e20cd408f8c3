// Picks the backend a command runs on: "cpu", "cuda", or "auto" (CUDA when this build has the CUDA
// backend and a GPU is present, else the CPU).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "backend/backend.h"

namespace mtplx {

// Whether this build includes the CUDA backend.
bool cuda_built();
// "cuda" or "cpu": what "auto" resolves to on this machine.
std::string default_device();
// A backend for `device` ("auto", "cpu", "cuda"); CPU threads (0 = all) apply to the CPU backend.
std::unique_ptr<Backend> make_backend(std::string_view device, int threads);

}  // namespace mtplx

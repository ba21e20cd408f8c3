// CPU matrix kernels over WeightMatrix (dense F32/F16/BF16 and affine 2..8-bit). Activations are fp32.
// Multi-threaded over output rows; SIMD (AVX-512 or AVX2/FMA, chosen at run time) with a portable fallback.
// For T rows of input each weight byte is read once (decode and speculative verify widths 1..8), and
// large T is processed in tiles so prefill runs as matrix-matrix products.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "backend/weight.h"
#include "base/huge_pages.h"
#include "base/thread_pool.h"

namespace mtplx::cpu {

// y[t, r] = sum_c x[t, c] * W[r, c] for t < T. x is [T, w.cols] row-major, y is [T, w.rows] row-major.
void matmul(const WeightMatrix& w, const float* x, float* y, int64_t T, ThreadPool& pool);

// out[c] = W[row, c] for c < w.cols (embedding lookup), dequantized to fp32.
void dequantize_row(const WeightMatrix& w, int64_t row, float* out);

// Instruction-set paths of matmul. Auto picks the best one this CPU runs; naming one lets tests and
// benchmarks exercise every path on a single machine.
enum class Isa { Auto, Portable, Avx2, Avx512 };

// Whether this CPU (and build) can run `isa`. Auto and Portable always can.
bool isa_supported(Isa isa);

// matmul on a chosen path. Throws mtplx::Error when `isa` is not supported here.
void matmul(const WeightMatrix& w, const float* x, float* y, int64_t T, ThreadPool& pool, Isa isa);

// How the row path (T <= kMaxRowKernelT: decode and speculative verify) multiplies 4- and 8-bit weights.
//  Exact: codes are dequantized and multiplied with x in fp32; the reference the other backends match.
//  Int8:  each activation row is rounded to int8 per 64 columns (x^ = d * round(x / d), d = max|x| / 127)
//         and multiplied with the codes in integer dot products (AVX-512 VNNI or AVX2), as llama.cpp does for
//         its quantized types: y = W x^ exactly, i.e. |y - W x| <= sum_c |w_c| d / 2; 2-3x fewer instructions
//         per weight, ~0.1-0.5% relative error per product. It applies to 4- and 8-bit codes with group
//         size 64 or 128 that carry their int8 tiles (with_int8_tiles) on CPUs with AVX2
//         (int8_dot_supported(); AVX-512 VNNI dot products on the AVX-512 path where the CPU has them,
//         VPMADDUBSW otherwise, with bit-identical results); other matrices, other CPUs and the prefill path
//         (T > kMaxRowKernelT) stay exact.
enum class QuantDot { Exact, Int8 };

// Whether this CPU runs the QuantDot::Int8 kernels (any x86 CPU with AVX2), and whether it also runs
// their AVX-512 VNNI version (chosen on the Avx512 path; the same results as the AVX2 one).
bool int8_dot_supported();
bool int8_vnni_supported();
// Whether the QuantDot::Int8 kernels take this matrix (its format and its tiles; the CPU aside), and
// whether they can once it has its tiles (4/8-bit codes in groups of 64 or 128, with data).
bool int8_dot_takes(const WeightMatrix& w);
bool int8_dot_format(const WeightMatrix& w);

// `w` with the copy the QuantDot::Int8 kernels read (WeightMatrix::tiles): its codes, scales and biases
// regrouped 16 rows to a tile, built over the pool in memory from `arena` (huge pages: the kernels stream
// it every step). As much memory again as the matrix's bytes(). Throws mtplx::Error for a format the
// kernels do not take (int8_dot_takes of the result is true) or when the memory is not available.
WeightMatrix with_int8_tiles(const WeightMatrix& w, ThreadPool& pool, HugePageArena& arena);

struct MatmulOptions {
  Isa isa = Isa::Auto;
  QuantDot dot = QuantDot::Exact;
  // Software prefetch in the AVX-512 row kernels of quantized weights (the exact 2/4/8-bit kernels and
  // Int8): each step asks for the codes a few KiB ahead of the ones it reads, each row for the scales and
  // biases of a row that far ahead. The dense, AVX2 and portable kernels never prefetch (dense measured
  // slower with it). Off only to measure what it gains.
  bool prefetch = true;
};

// ys[i] = x ws[i]^T for weights sharing one input (merged projections), the same results as one matmul
// per weight; at decode widths all their rows go over the pool as one loop.
void matmul_many(std::span<const WeightMatrix* const> ws, const float* x, std::span<float* const> ys,
                 int64_t T, ThreadPool& pool, const MatmulOptions& options);

// Names of matmul paths for benchmarks and tools: "auto", "portable", "avx2", "avx512" (exact), and
// "int8" (QuantDot::Int8 on the best path), "int8-avx512", "int8-avx2" (QuantDot::Int8 on that path), each
// optionally followed by "-noprefetch" (prefetch = false).
// nullopt for an unknown name; availability is not checked here.
std::optional<MatmulOptions> parse_matmul_path(std::string_view name);
std::string matmul_path_name(const MatmulOptions& options);

// matmul with explicit options. Throws mtplx::Error when `options.isa` is not supported here.
void matmul(const WeightMatrix& w, const float* x, float* y, int64_t T, ThreadPool& pool,
            const MatmulOptions& options);

// Largest T handled by the row kernels (every weight byte read once for all T rows); larger T goes to
// the tiled matrix-matrix path.
inline constexpr int64_t kMaxRowKernelT = 8;

}  // namespace mtplx::cpu

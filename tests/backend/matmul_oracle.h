// The double-precision oracle of the CPU matmul tests: random matrices whose exact values are known
// (w = scale * q + bias for quantized weights, built from the generated codes, never from our packed
// bytes or our dequantizer), packed into the storage the kernels read, and the reference product.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend/weight.h"
#include "base/dtype.h"

namespace mtplx::cpu::matmul_oracle {

struct Format {
  std::string name;
  DType dtype = DType::F32;  // dense type; U32 when quantized
  int bits = 0;
  int group = 0;
  DType scale_dtype = DType::BF16;
};

// A random matrix: its exact values (doubles) plus the storage the kernels read.
struct TestMatrix {
  std::vector<double> values;       // [rows, cols], exactly what the stored bytes encode
  std::vector<double> scale, bias;  // quantized: [rows, cols / group], exactly as stored
  std::vector<uint32_t> words;
  std::vector<uint16_t> halves;
  std::vector<float> floats;
  std::vector<uint32_t> codes;  // quantized: the codes, to perturb in the sensitivity test
  std::vector<uint8_t> scales, biases;
  WeightMatrix w;
};

// (With the int8 tiles when the QuantDot::Int8 kernels take the format; see attach_int8_tiles.)
TestMatrix make_matrix(const Format& f, int64_t rows, int64_t cols, uint64_t seed);

// Gives m.w the copy the QuantDot::Int8 kernels read (cpu::with_int8_tiles) when they take its format;
// other formats are left as they are. Call it again after changing the stored codes.
void attach_int8_tiles(TestMatrix& m);

// [T, cols] uniform in [-1, 1).
std::vector<float> random_x(int64_t T, int64_t cols, uint64_t seed);

// y[t, r] = sum_c values[r, c] * x[t, c] in double.
std::vector<double> reference(const TestMatrix& m, const std::vector<float>& x, int64_t T);

// ||y - ref|| / ||ref||.
double relative_error(const std::vector<float>& y, const std::vector<double>& ref);

}  // namespace mtplx::cpu::matmul_oracle

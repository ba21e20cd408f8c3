#include "matmul_oracle.h"

#include <cmath>
#include <cstring>
#include <random>

#include "backend/cpu/matmul.h"
#include "base/thread_pool.h"

namespace mtplx::cpu::matmul_oracle {
namespace {

// Random values exactly representable in F16, BF16 and F32 (8 significant bits, exponent well inside
// F16's normal range), so every storage type holds the same number and the oracle needs no rounding model.
double representable(std::mt19937_64& rng, int min_exp, int max_exp) {
  std::uniform_int_distribution<int> mantissa(-255, 255), exponent(min_exp, max_exp);
  int m = 0;
  while (m == 0) m = mantissa(rng);  // never zero
  return std::ldexp(static_cast<double>(m), exponent(rng) - 8);
}

void store(std::vector<uint8_t>& out, DType type, double value) {
  const auto f = static_cast<float>(value);
  uint8_t bytes[4];
  size_t n = 2;
  if (type == DType::F32) {
    std::memcpy(bytes, &f, 4);
    n = 4;
  } else {
    const uint16_t h = type == DType::BF16 ? float_to_bf16(f) : float_to_f16(f);
    std::memcpy(bytes, &h, 2);
  }
  out.insert(out.end(), bytes, bytes + n);
}

}  // namespace

void attach_int8_tiles(TestMatrix& m) {
  m.w.tiles = nullptr;
  ThreadPool pool(2);
  HugePageArena arena;
  if (int8_dot_format(m.w)) m.w = with_int8_tiles(m.w, pool, arena);
}

TestMatrix make_matrix(const Format& f, int64_t rows, int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  TestMatrix m;
  m.values.resize(static_cast<size_t>(rows * cols));
  m.w.rows = rows;
  m.w.cols = cols;
  m.w.dtype = f.dtype;
  if (f.bits == 0) {
    for (auto& v : m.values) v = representable(rng, -4, -1);  // |w| < 0.5
    if (f.dtype == DType::F32) {
      for (double v : m.values) m.floats.push_back(static_cast<float>(v));
      m.w.data = m.floats.data();
    } else {
      for (double v : m.values)
        m.halves.push_back(f.dtype == DType::BF16 ? float_to_bf16(static_cast<float>(v))
                                                  : float_to_f16(static_cast<float>(v)));
      m.w.data = m.halves.data();
    }
    return m;
  }
  m.w.bits = f.bits;
  m.w.group_size = f.group;
  m.w.scale_dtype = f.scale_dtype;
  const int64_t groups = cols / f.group;
  std::uniform_int_distribution<uint32_t> code(0, (1u << f.bits) - 1);
  m.codes.resize(static_cast<size_t>(rows * cols));
  for (auto& q : m.codes) q = code(rng);
  std::vector<double>& scale = m.scale;
  std::vector<double>& bias = m.bias;
  scale.resize(static_cast<size_t>(rows * groups));
  bias.resize(scale.size());
  for (size_t i = 0; i < scale.size(); ++i) {
    scale[i] = std::abs(representable(rng, -8, -5));
    bias[i] = representable(rng, -5, -2);
    store(m.scales, f.scale_dtype, scale[i]);
    store(m.biases, f.scale_dtype, bias[i]);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      m.values[r * cols + c] =
          scale[r * groups + c / f.group] * m.codes[r * cols + c] + bias[r * groups + c / f.group];
  // Pack bit by bit: code c of a row occupies stream bits [c*bits, (c+1)*bits), LSB first, the stream
  // laid out in little-endian uint32 words.
  const int64_t words_per_row = cols * f.bits / 32;
  m.words.assign(static_cast<size_t>(rows * words_per_row), 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      for (int b = 0; b < f.bits; ++b)
        if ((m.codes[r * cols + c] >> b) & 1) {
          const int64_t bit = c * f.bits + b;
          m.words[r * words_per_row + bit / 32] |= 1u << (bit % 32);
        }
  m.w.data = m.words.data();
  m.w.scales = m.scales.data();
  m.w.biases = m.biases.data();
  attach_int8_tiles(m);
  return m;
}

std::vector<float> random_x(int64_t T, int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(T * cols));
  for (auto& v : x) v = dist(rng);
  return x;
}

std::vector<double> reference(const TestMatrix& m, const std::vector<float>& x, int64_t T) {
  const int64_t rows = m.w.rows, cols = m.w.cols;
  std::vector<double> y(static_cast<size_t>(T * rows));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      double sum = 0;
      for (int64_t c = 0; c < cols; ++c) sum += m.values[r * cols + c] * x[t * cols + c];
      y[t * rows + r] = sum;
    }
  return y;
}

double relative_error(const std::vector<float>& y, const std::vector<double>& ref) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    err += (y[i] - ref[i]) * (y[i] - ref[i]);
    norm += ref[i] * ref[i];
  }
  return std::sqrt(err / norm);
}

}  // namespace mtplx::cpu::matmul_oracle

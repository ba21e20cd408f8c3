// CPU matmul kernels against a double-precision oracle that builds W straight from the generated values
// (w = scale * q + bias for quantized weights), never from our packed bytes or our dequantizer.
#include "backend/cpu/matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "base/dtype.h"
#include "base/error.h"
#include "base/thread_pool.h"

namespace mtplx::cpu {
namespace {

// fp32 accumulation over up to 2560 products: the relative error of the output (2-norm of the error over
// the 2-norm of the output) is a few 1e-7 in practice; 1e-5 leaves margin for long dot products while a
// single wrong code or scale in a row (see the ...Detects... test) is orders of magnitude above it.
constexpr double kTolerance = 1e-5;

struct Format {
  std::string name;
  DType dtype = DType::F32;  // dense type; U32 when quantized
  int bits = 0;
  int group = 0;
  DType scale_dtype = DType::BF16;
};

// A random matrix: its exact values (doubles) plus the storage the kernels read.
struct TestMatrix {
  std::vector<double> values;  // [rows, cols], exactly what the stored bytes encode
  std::vector<uint32_t> words;
  std::vector<uint16_t> halves;
  std::vector<float> floats;
  std::vector<uint32_t> codes;  // quantized: the codes, to perturb in the sensitivity test
  std::vector<uint8_t> scales, biases;
  WeightMatrix w;
};

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
  std::vector<double> scale(static_cast<size_t>(rows * groups)), bias(scale.size());
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

// ||y - ref|| / ||ref||.
double relative_error(const std::vector<float>& y, const std::vector<double>& ref) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    err += (y[i] - ref[i]) * (y[i] - ref[i]);
    norm += ref[i] * ref[i];
  }
  return std::sqrt(err / norm);
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Portable:
      return "portable";
    case Isa::Avx2:
      return "avx2";
    case Isa::Avx512:
      return "avx512";
    default:
      return "auto";
  }
}

std::vector<Format> formats() {
  std::vector<Format> out{{"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}};
  for (int bits : {2, 3, 4, 5, 6, 8})
    for (int group : {32, 64, 128})
      out.push_back({str("q", bits, "g", group), DType::U32, bits, group, DType::BF16});
  out.push_back({"q4g64_f16scales", DType::U32, 4, 64, DType::F16});
  out.push_back({"q8g64_f32scales", DType::U32, 8, 64, DType::F32});
  out.push_back({"q3g64_f32scales", DType::U32, 3, 64, DType::F32});
  out.push_back({"q2g64_f16scales", DType::U32, 2, 64, DType::F16});
  return out;
}

// Every format on every path: Auto plus each instruction set, skipped where this CPU lacks it.
using Param = std::tuple<Format, Isa>;

class MatmulTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    if (!isa_supported(isa()))
      GTEST_SKIP() << "the " << isa_name(isa()) << " path is not available on this CPU or build";
  }
  const Format& format() const { return std::get<0>(GetParam()); }
  Isa isa() const { return std::get<1>(GetParam()); }
};

// Row kernels (T = 1..8, every width specialised), the first tiled widths (9, 13) and large T; column
// counts with one and many groups, and for dense weights column counts that leave a tail after the
// vector loop.
TEST_P(MatmulTest, MatchesDoubleReference) {
  const Format& f = format();
  ThreadPool pool(3);  // more threads than cores: uneven row splits
  double worst = 0;
  uint64_t seed = 1;
  for (int64_t cols : {37, 64, 100, 128, 320, 2560}) {
    if (f.bits && cols % f.group) continue;
    const int64_t rows = cols == 2560 ? 37 : 53;
    const TestMatrix m = make_matrix(f, rows, cols, ++seed);
    for (int64_t T : {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 64, 200}) {
      const auto x = random_x(T, cols, ++seed);
      const auto ref = reference(m, x, T);
      std::vector<float> y(static_cast<size_t>(T * rows), std::nanf(""));
      matmul(m.w, x.data(), y.data(), T, pool, isa());
      const double err = relative_error(y, ref);
      worst = std::max(worst, err);
      EXPECT_LE(err, kTolerance) << f.name << " cols=" << cols << " T=" << T << " isa=" << isa_name(isa());
    }
  }
  RecordProperty("worst_relative_error", str(worst));
}

// Matrices big enough that the row kernels split over the pool (and tall enough for several row blocks
// of the tiled path), with an odd row count.
TEST_P(MatmulTest, MatchesDoubleReferenceMultiThreaded) {
  const Format& f = format();
  ThreadPool pool(2);
  const int64_t rows = 301, cols = 1024;
  const TestMatrix m = make_matrix(f, rows, cols, 99);
  for (int64_t T : {1, 3, 8, 9, 13}) {
    const auto x = random_x(T, cols, 100 + T);
    const auto ref = reference(m, x, T);
    std::vector<float> y(static_cast<size_t>(T * rows), std::nanf(""));
    matmul(m.w, x.data(), y.data(), T, pool, isa());
    EXPECT_LE(relative_error(y, ref), kTolerance) << f.name << " T=" << T << " isa=" << isa_name(isa());
  }
}

TEST_P(MatmulTest, DequantizeRowIsExact) {
  const Format& f = format();
  const int64_t rows = 7, cols = 320 * (f.bits ? f.group / 32 : 1);
  const TestMatrix m = make_matrix(f, rows, cols, 7);
  std::vector<float> out(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(m.w, r, out.data());
    for (int64_t c = 0; c < cols; ++c)  // scale * q + bias with 8-bit mantissas: exact in fp32
      ASSERT_EQ(out[c], static_cast<float>(m.values[r * cols + c])) << f.name << " row " << r << " col " << c;
  }
}

// The comparison must be able to fail: change one code (or one dense value) after taking the reference
// and every path must miss the tolerance.
TEST_P(MatmulTest, ComparisonDetectsOneWrongWeight) {
  const Format& f = format();
  ThreadPool pool(2);
  const int64_t rows = 5, cols = 256, T = 3;
  TestMatrix m = make_matrix(f, rows, cols, 5);
  const auto x = random_x(T, cols, 6);
  const auto ref = reference(m, x, T);
  if (f.bits) {
    const int64_t c = 77, bit = c * f.bits + f.bits - 1;  // flip the top bit of code 77 in row 2
    m.words[2 * (cols * f.bits / 32) + bit / 32] ^= 1u << (bit % 32);
  } else if (f.dtype == DType::F32) {
    m.floats[2 * cols + 77] = 2.0f;
  } else {
    m.halves[2 * cols + 77] = 0x4000;  // 2.0 in both F16 and BF16, far above the |w| < 0.5 generated
  }
  for (int64_t t_count : {int64_t{1}, T}) {
    std::vector<float> y(static_cast<size_t>(t_count * rows));
    matmul(m.w, x.data(), y.data(), t_count, pool, isa());
    const std::vector<double> ref_t(ref.begin(), ref.begin() + t_count * rows);
    EXPECT_GT(relative_error(y, ref_t), 10 * kTolerance) << f.name << " isa=" << isa_name(isa());
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, MatmulTest,
                         ::testing::Combine(::testing::ValuesIn(formats()),
                                            ::testing::Values(Isa::Auto, Isa::Portable, Isa::Avx2,
                                                              Isa::Avx512)),
                         [](const auto& param_info) {
                           return str(std::get<0>(param_info.param).name, "_",
                                      isa_name(std::get<1>(param_info.param)));
                         });

// Auto must take the widest path this CPU runs: its results are bit-identical to that path's.
TEST(Matmul, AutoPicksTheWidestSupportedPath) {
  const Isa best = isa_supported(Isa::Avx512) ? Isa::Avx512
                   : isa_supported(Isa::Avx2) ? Isa::Avx2
                                              : Isa::Portable;
  ThreadPool pool(2);
  for (const Format& f : {Format{"BF16", DType::BF16}, Format{"q4g64", DType::U32, 4, 64, DType::BF16}}) {
    const TestMatrix m = make_matrix(f, 33, 256, 11);
    for (int64_t T : {1, 4}) {
      const auto x = random_x(T, 256, 12);
      std::vector<float> want(static_cast<size_t>(T * 33)), got(want.size());
      matmul(m.w, x.data(), want.data(), T, pool, best);
      matmul(m.w, x.data(), got.data(), T, pool);
      EXPECT_EQ(std::memcmp(want.data(), got.data(), sizeof(float) * want.size()), 0)
          << f.name << " T=" << T << ": Auto differs from " << isa_name(best);
    }
  }
}

TEST(Matmul, RejectsUnsupportedWeights) {
  ThreadPool pool(1);
  std::vector<uint32_t> words(64, 0x12345678u);
  std::vector<uint16_t> params(8, 0x3f80);
  std::vector<float> x(64, 1.0f), y(2);
  WeightMatrix w{2, 64, DType::U32, words.data(), 4, 64, DType::BF16, params.data(), params.data()};
  matmul(w, x.data(), y.data(), 1, pool);  // the valid baseline
  WeightMatrix bad = w;
  bad.group_size = 48;
  EXPECT_THROW(matmul(bad, x.data(), y.data(), 1, pool), Error);
  bad = w;
  bad.bits = 9;
  EXPECT_THROW(matmul(bad, x.data(), y.data(), 1, pool), Error);
  bad = w;
  bad.scales = nullptr;
  EXPECT_THROW(matmul(bad, x.data(), y.data(), 1, pool), Error);
  bad = w;
  bad.bits = 0;
  bad.dtype = DType::I8;
  EXPECT_THROW(matmul(bad, x.data(), y.data(), 1, pool), Error);
  bad = w;
  bad.cols = 96;  // not a multiple of the group size
  EXPECT_THROW(matmul(bad, x.data(), y.data(), 1, pool), Error);
  EXPECT_THROW(dequantize_row(w, 2, y.data()), Error);
}

}  // namespace
}  // namespace mtplx::cpu

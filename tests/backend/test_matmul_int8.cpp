// QuantDot::Int8 (int8 activations, integer dot products) against two oracles:
// - its definition, computed here in double from the generated codes, scales and biases: each activation
//   row rounded to int8 per 64 columns with d = max|x| / 127 (x * (127 / max) in fp32, rounded to nearest
//   even, as documented in matmul.h), y = sum_j s_j d_j sum_c q_c xi_c + sum_g b_g sum_c x_c;
// - the exact product, within the rounding bound of that method: |y - exact| <= sum_j (d_j / 2) sum_c |s
// q_c|. And: rows are bit-identical for every verify width and thread split, formats the kernels do not take
// fall back to the exact path, non-finite activations give NaN, and one wrong code is caught.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/matmul.h"
#include "base/error.h"
#include "base/thread_pool.h"
#include "matmul_oracle.h"

namespace mtplx::cpu {
namespace {

using namespace matmul_oracle;  // NOLINT: the oracle's matrices and reference

constexpr MatmulOptions kInt8{Isa::Auto, QuantDot::Int8};

// fp32 accumulation of the integer block sums against the double-precision definition: a few 1e-7.
constexpr double kDefinitionTolerance = 1e-5;

class Int8Matmul : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!int8_dot_supported()) GTEST_SKIP() << "this CPU lacks AVX2";
  }
};

// The int8 rounding of one activation row, as matmul.h defines it.
struct RoundedRow {
  std::vector<double> d;  // per 64-column block
  std::vector<int> xi;    // per column
};

RoundedRow round_row(const float* x, int64_t cols) {
  RoundedRow out;
  out.xi.resize(static_cast<size_t>(cols));
  for (int64_t j = 0; j * 64 < cols; ++j) {
    float largest = 0;
    for (int64_t c = j * 64; c < std::min(cols, (j + 1) * 64); ++c)
      largest = std::max(largest, std::fabs(x[c]));
    const float inverse = largest > 0 ? 127.0f / largest : 0.0f;
    out.d.push_back(static_cast<double>(largest / 127.0f));
    for (int64_t c = j * 64; c < std::min(cols, (j + 1) * 64); ++c)
      out.xi[c] = std::clamp(static_cast<int>(std::nearbyint(x[c] * inverse)), -127, 127);
  }
  return out;
}

// The definition in double, and the rounding bound around the exact product.
struct Int8Reference {
  std::vector<double> y, bound;
};

Int8Reference int8_reference(const TestMatrix& m, const std::vector<float>& x, int64_t T) {
  const int64_t rows = m.w.rows, cols = m.w.cols;
  Int8Reference ref;
  for (int64_t t = 0; t < T; ++t) {
    const RoundedRow rounded = round_row(x.data() + t * cols, cols);
    for (int64_t r = 0; r < rows; ++r) {
      double y = 0, bound = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const double w = m.values[r * cols + c], d = rounded.d[c / 64];
        y += w * d * rounded.xi[c];
        bound += std::fabs(w) * d / 2;
      }
      ref.y.push_back(y);
      ref.bound.push_back(bound);
    }
  }
  return ref;
}

std::vector<Format> int8_formats() {
  return {{"q4g64", DType::U32, 4, 64, DType::BF16},    {"q4g128", DType::U32, 4, 128, DType::BF16},
          {"q8g64", DType::U32, 8, 64, DType::BF16},    {"q8g128", DType::U32, 8, 128, DType::BF16},
          {"q4g64_f16", DType::U32, 4, 64, DType::F16}, {"q8g64_f32", DType::U32, 8, 64, DType::F32}};
}

// Column counts with one block, an odd number of blocks (the 4-bit kernel's half pair), and many; row
// counts that leave 1..3 rows after the four-row blocks; every verify width.
TEST_F(Int8Matmul, MatchesItsDefinitionAndStaysWithinTheRoundingBound) {
  ThreadPool pool(3);
  uint64_t seed = 1;
  for (const Format& f : int8_formats())
    for (int64_t cols : {64, 192, 256, 1024, 2560}) {
      if (cols % f.group) continue;
      for (int64_t rows : {1, 7, 53}) {
        const TestMatrix m = make_matrix(f, rows, cols, ++seed);
        for (int64_t T = 1; T <= 8; ++T) {
          const auto x = random_x(T, cols, ++seed);
          const auto exact = reference(m, x, T);
          const auto ref = int8_reference(m, x, T);
          std::vector<float> y(static_cast<size_t>(T * rows), std::nanf(""));
          matmul(m.w, x.data(), y.data(), T, pool, kInt8);
          EXPECT_LE(relative_error(y, ref.y), kDefinitionTolerance)
              << f.name << " rows=" << rows << " cols=" << cols << " T=" << T;
          for (size_t i = 0; i < y.size(); ++i)
            ASSERT_LE(std::fabs(y[i] - exact[i]), ref.bound[i] * 1.001 + 1e-5 * std::fabs(exact[i]))
                << f.name << " rows=" << rows << " cols=" << cols << " T=" << T << " output " << i;
        }
      }
    }
}

// How far int8 moves the product: about 1e-3 relative to the exact one (reported), and never zero (the
// int8 path really ran).
TEST_F(Int8Matmul, ErrorAgainstTheExactProductIsSmallButNotZero) {
  ThreadPool pool(2);
  for (const Format& f : int8_formats()) {
    const TestMatrix m = make_matrix(f, 301, 1024, 77);
    const auto x = random_x(1, 1024, 78);
    std::vector<float> y(301);
    matmul(m.w, x.data(), y.data(), 1, pool, kInt8);
    const double error = relative_error(y, reference(m, x, 1));
    std::printf("[int8 %s] relative error vs exact %.3g\n", f.name.c_str(), error);
    EXPECT_LT(error, 1e-2) << f.name;
    EXPECT_GT(error, 1e-6) << f.name;
  }
}

// Decode (T = 1) and every verify width give bit-identical rows, whatever the thread split; 2560 columns
// take two and a half panels (the sums wait in y between them).
TEST_F(Int8Matmul, RowsAreBitIdenticalForEveryWidthAndThreadCount) {
  for (const Format& f : int8_formats()) {
    for (const int64_t cols : {1024, 2560}) {
      const int64_t rows = 203;
      const TestMatrix m = make_matrix(f, rows, cols, 5);
      const auto x = random_x(8, cols, 6);
      ThreadPool one(1), three(3);
      std::vector<float> single(static_cast<size_t>(8 * rows));
      for (int64_t t = 0; t < 8; ++t)
        matmul(m.w, x.data() + t * cols, single.data() + t * rows, 1, one, kInt8);
      for (int64_t T = 2; T <= 8; ++T) {
        std::vector<float> wide(static_cast<size_t>(T * rows));
        matmul(m.w, x.data(), wide.data(), T, three, kInt8);
        EXPECT_EQ(std::memcmp(wide.data(), single.data(), sizeof(float) * wide.size()), 0)
            << f.name << " cols=" << cols << " T=" << T;
      }
    }
  }
}

// Formats without int8 kernels (2/3/5/6-bit, group 32, dense) and the prefill path (T > 8) run the exact
// kernels: bit-identical to QuantDot::Exact.
TEST_F(Int8Matmul, OtherFormatsAndPrefillStayExact) {
  ThreadPool pool(2);
  const std::vector<Format> others = {{"q3g64", DType::U32, 3, 64, DType::BF16},
                                      {"q4g32", DType::U32, 4, 32, DType::BF16},
                                      {"q6g64", DType::U32, 6, 64, DType::BF16},
                                      {"BF16", DType::BF16}};
  for (const Format& f : others)
    for (int64_t T : {1, 4}) {
      const TestMatrix m = make_matrix(f, 37, 256, 9);
      const auto x = random_x(T, 256, 10);
      std::vector<float> want(static_cast<size_t>(T * 37)), got(want.size());
      matmul(m.w, x.data(), want.data(), T, pool, MatmulOptions{});
      matmul(m.w, x.data(), got.data(), T, pool, kInt8);
      EXPECT_EQ(std::memcmp(want.data(), got.data(), sizeof(float) * want.size()), 0) << f.name << " T=" << T;
    }
  const TestMatrix m = make_matrix(int8_formats()[0], 37, 256, 11);
  const auto x = random_x(9, 256, 12);
  std::vector<float> want(9 * 37), got(want.size());
  matmul(m.w, x.data(), want.data(), 9, pool, MatmulOptions{});
  matmul(m.w, x.data(), got.data(), 9, pool, kInt8);
  EXPECT_EQ(std::memcmp(want.data(), got.data(), sizeof(float) * want.size()), 0) << "T=9";
}

// A NaN or an infinity in an activation row makes that row's outputs NaN, as the fp32 kernels would;
// the other rows are untouched.
TEST_F(Int8Matmul, NonFiniteActivationsGiveNaN) {
  ThreadPool pool(1);
  for (const Format& f : {int8_formats()[0], int8_formats()[2]})
    for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
      const TestMatrix m = make_matrix(f, 9, 256, 13);
      auto x = random_x(2, 256, 14);
      x[256 + 70] = bad;  // row 1
      std::vector<float> y(18);
      matmul(m.w, x.data(), y.data(), 2, pool, kInt8);
      for (int r = 0; r < 9; ++r) {
        EXPECT_TRUE(std::isfinite(y[r])) << f.name << " row 0, output " << r;
        EXPECT_TRUE(std::isnan(y[9 + r])) << f.name << " row 1, output " << r << " = " << y[9 + r];
      }
    }
}

// The AVX2 kernel (VPMADDUBSW in int16 chains) and the VNNI one give the same bits: the integer block sums
// are exact in both and every float operation comes in the same order. Runs where the CPU has both.
TEST_F(Int8Matmul, AvxTwoAndVnniKernelsGiveTheSameBits) {
  if (!int8_vnni_supported()) GTEST_SKIP() << "this CPU lacks AVX-512 VNNI / GFNI";
  ThreadPool pool(2);
  for (const Format& f : int8_formats())
    for (int64_t T = 1; T <= 8; ++T) {
      const TestMatrix m = make_matrix(f, 53, 2560, 40 + T);
      const auto x = random_x(T, 2560, 50 + T);
      std::vector<float> vnni(static_cast<size_t>(T * 53)), avx2(vnni.size());
      matmul(m.w, x.data(), vnni.data(), T, pool, MatmulOptions{Isa::Avx512, QuantDot::Int8});
      matmul(m.w, x.data(), avx2.data(), T, pool, MatmulOptions{Isa::Avx2, QuantDot::Int8});
      EXPECT_EQ(std::memcmp(vnni.data(), avx2.data(), sizeof(float) * vnni.size()), 0)
          << f.name << " T=" << T;
    }
}

// The comparison must be able to fail: one code changed after taking the reference is caught.
TEST_F(Int8Matmul, ComparisonDetectsOneWrongCode) {
  ThreadPool pool(2);
  for (const Format& f : int8_formats()) {
    const int64_t rows = 5, cols = 256;
    TestMatrix m = make_matrix(f, rows, cols, 15);
    const auto x = random_x(1, cols, 16);
    const auto ref = int8_reference(m, x, 1);
    const int64_t c = 77, bit = c * f.bits + f.bits - 1;  // flip the top bit of code 77 in row 2
    m.words[2 * (cols * f.bits / 32) + bit / 32] ^= 1u << (bit % 32);
    attach_int8_tiles(m);  // the int8 kernels read their own copy of the codes
    std::vector<float> y(rows);
    matmul(m.w, x.data(), y.data(), 1, pool, kInt8);
    EXPECT_GT(relative_error(y, ref.y), 10 * kDefinitionTolerance) << f.name;
  }
}

}  // namespace
}  // namespace mtplx::cpu

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

#include "backend/cpu/cpu_backend.h"
#include "base/dtype.h"
#include "base/error.h"
#include "base/thread_pool.h"
#include "matmul_oracle.h"

namespace mtplx::cpu {
namespace {

using namespace matmul_oracle;  // NOLINT: the oracle's matrices and reference

// fp32 accumulation over up to 2560 products: the relative error of the output (2-norm of the error over
// the 2-norm of the output) is a few 1e-7 in practice; 1e-5 leaves margin for long dot products while a
// single wrong code or scale in a row (see the ...Detects... test) is orders of magnitude above it.
constexpr double kTolerance = 1e-5;

std::string isa_name(Isa isa) {
  return matmul_path_name(MatmulOptions{isa});
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

// Software prefetch only moves data earlier: with it off every kernel that prefetches gives the same bits
// (a prefetching branch that diverged from the plain one would show here). Shapes reach each such branch:
// rows shorter and longer than the prefetch distance (the row ahead past the last row), an odd number of
// 64-column blocks (the 4-bit Int8 half step), 2- and 4-byte scales, and T x cols large enough for the
// two-row exact kernels.
TEST(Matmul, PrefetchChangesNoResult) {
  if (!isa_supported(Isa::Avx512)) GTEST_SKIP() << "only the AVX-512 kernels prefetch";
  ThreadPool pool(2);
  for (const Format& f :
       {Format{"q4g64", DType::U32, 4, 64, DType::BF16}, Format{"q8g64", DType::U32, 8, 64, DType::F16},
        Format{"q4g128", DType::U32, 4, 128, DType::F32}, Format{"q2g64", DType::U32, 2, 64, DType::BF16}})
    for (const int64_t cols : {256, 320, 2560}) {
      if (cols % f.group != 0) continue;
      const TestMatrix m = make_matrix(f, 37, cols, 21);
      for (const QuantDot dot : {QuantDot::Exact, QuantDot::Int8})
        for (int64_t T : {1, 4}) {
          const auto x = random_x(T, cols, 22);
          std::vector<float> want(static_cast<size_t>(T * 37)), got(want.size());
          MatmulOptions options{Isa::Auto, dot};
          matmul(m.w, x.data(), want.data(), T, pool, options);
          options.prefetch = false;
          matmul(m.w, x.data(), got.data(), T, pool, options);
          EXPECT_EQ(std::memcmp(want.data(), got.data(), sizeof(float) * want.size()), 0)
              << f.name << " cols=" << cols << " T=" << T << " " << matmul_path_name(options);
        }
    }
}

// The backend keeps the whole option set a caller gives it (bench_decode compares paths through it).
TEST(Matmul, BackendKeepsEveryOption) {
  CpuBackend backend(1);
  MatmulOptions options{Isa::Portable, QuantDot::Int8};
  options.prefetch = false;
  backend.set_matmul_options(options);
  EXPECT_EQ(backend.matmul_options().isa, Isa::Portable);
  EXPECT_EQ(backend.matmul_options().dot, QuantDot::Int8);
  EXPECT_FALSE(backend.matmul_options().prefetch);
}

TEST(Matmul, PathNamesRoundTrip) {
  for (const char* name :
       {"auto", "portable", "avx2", "avx512", "int8", "avx512-noprefetch", "int8-noprefetch"}) {
    const auto options = parse_matmul_path(name);
    ASSERT_TRUE(options.has_value()) << name;
    EXPECT_EQ(matmul_path_name(*options), name);
  }
  EXPECT_FALSE(parse_matmul_path("int8-noprefetch-noprefetch").has_value());
  EXPECT_FALSE(parse_matmul_path("-noprefetch").has_value());
  EXPECT_FALSE(parse_matmul_path("avx1024").has_value());
}

// Several weights sharing one input (one loop over the pool at decode widths) give bit-identical results
// to one matmul per weight, on the exact and the int8 path, for mixed formats and sizes. Weights of one
// format share the rounded x on the int8 path (q4g64 and q4g128 must not: their group sums differ).
TEST(Matmul, ManyEqualsOneByOne) {
  ThreadPool pool(3);
  const int64_t cols = 512;
  constexpr int kWeights = 6;
  const Format formats[kWeights] = {{"q4g64", DType::U32, 4, 64, DType::BF16},
                                    {"q8g64", DType::U32, 8, 64, DType::BF16},
                                    {"BF16", DType::BF16},
                                    {"q4g128", DType::U32, 4, 128, DType::F16},
                                    {"q4g64 (2)", DType::U32, 4, 64, DType::BF16},
                                    {"q8g64 (2)", DType::U32, 8, 64, DType::BF16}};
  const int64_t rows[kWeights] = {301, 16, 1000, 3, 40, 77};
  std::vector<TestMatrix> matrices;
  std::vector<const WeightMatrix*> ws;
  for (int i = 0; i < kWeights; ++i) matrices.push_back(make_matrix(formats[i], rows[i], cols, 40 + i));
  for (const TestMatrix& m : matrices) ws.push_back(&m.w);
  for (const QuantDot dot : {QuantDot::Exact, QuantDot::Int8})
    for (int64_t T : {1, 4, 9}) {
      const auto x = random_x(T, cols, 50 + T);
      std::vector<std::vector<float>> want(kWeights), got(kWeights);
      std::vector<float*> outputs;
      for (int i = 0; i < kWeights; ++i) {
        want[i].resize(static_cast<size_t>(T * rows[i]));
        got[i].resize(want[i].size(), std::nanf(""));
        matmul(*ws[i], x.data(), want[i].data(), T, pool, MatmulOptions{Isa::Auto, dot});
        outputs.push_back(got[i].data());
      }
      matmul_many(ws, x.data(), outputs, T, pool, MatmulOptions{Isa::Auto, dot});
      for (int i = 0; i < kWeights; ++i)
        EXPECT_EQ(std::memcmp(want[i].data(), got[i].data(), sizeof(float) * want[i].size()), 0)
            << formats[i].name << " T=" << T << (dot == QuantDot::Int8 ? " int8" : " exact");
    }
}

TEST(Matmul, RejectsUnsupportedWeights) {
  ThreadPool pool(1);
  std::vector<uint32_t> words(64, 0x12345678u);
  std::vector<uint16_t> params(8, 0x3f80);
  std::vector<float> x(64, 1.0f), y(2);
  WeightMatrix w{2, 64, DType::U32, words.data(), 4, 64, DType::BF16, params.data(), params.data(), {}};
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

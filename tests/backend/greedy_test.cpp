// Backend::greedy_tokens, the default implementation (download + host pick) the CPU backend uses, against
// an independent host loop (tests/support/greedy_rows.h) on rows with ties, -inf, NaN and +inf, at the
// Qwen3.5 vocabulary and at sizes around the CUDA kernel's chunk.
#include <gtest/gtest.h>

#include <limits>
#include <span>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "base/error.h"
#include "support/greedy_rows.h"

namespace mtplx {
namespace {

void expect_oracle(Backend& backend, int64_t rows, int64_t cols, uint32_t seed) {
  const std::vector<float> x = test::greedy_rows(rows, cols, seed);
  const std::vector<int32_t> ids = backend.greedy_tokens(backend.upload(x, rows, cols));
  ASSERT_EQ(ids.size(), static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r)
    EXPECT_EQ(ids[r], test::oracle_greedy(std::span(x).subspan(r * cols, cols)))
        << "row " << r << " of " << rows << " x " << cols;
}

TEST(GreedyTokens, CpuMatchesOracle) {
  CpuBackend cpu(1);
  for (const int64_t cols : {1, 7, 8, 9, 2047, 2048, 2049, 4100, 248320}) expect_oracle(cpu, 9, cols, 17);
  expect_oracle(cpu, 1, 248320, 3);  // one AR row
  expect_oracle(cpu, 16, 300, 5);    // every planted case twice
}

TEST(GreedyTokens, CpuRejectsRowWithoutComparableValue) {
  CpuBackend cpu(1);
  std::vector<float> x(2 * 100, 1.0f);
  for (int c = 100; c < 200; ++c) x[c] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(cpu.greedy_tokens(cpu.upload(x, 2, 100)), Error);
  EXPECT_TRUE(cpu.greedy_tokens(cpu.alloc(0, 100)).empty());
}

}  // namespace
}  // namespace mtplx

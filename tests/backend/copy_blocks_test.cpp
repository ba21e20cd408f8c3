// Backend::copy_blocks on the CPU backend: blocks of many sizes (past its 64 KiB pieces, one float, none)
// land where they should, and nothing outside them is written.
#include <gtest/gtest.h>

#include <vector>

#include "backend/cpu/cpu_backend.h"

namespace mtplx {
namespace {

TEST(CopyBlocks, CopiesEveryBlockAndNothingElse) {
  CpuBackend cpu(2);
  const std::vector<int64_t> sizes = {1, 0, 16384, 16385, 100000, 3, 40000};
  int64_t total = 0;
  for (int64_t n : sizes) total += n + 5;  // 5 untouched floats after each destination
  std::vector<float> src(static_cast<size_t>(total)), dst(static_cast<size_t>(total), -1.0f);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<float>(i);
  std::vector<BlockCopy> blocks;
  int64_t at = 0;
  for (int64_t n : sizes) {
    // Destinations in reverse order of the sources, so a copy to the wrong place shows.
    blocks.push_back({src.data() + at, dst.data() + (total - at - n - 5), n});
    at += n + 5;
  }
  cpu.copy_blocks(blocks);
  std::vector<float> expected(dst.size(), -1.0f);
  for (const BlockCopy& b : blocks)
    for (int64_t i = 0; i < b.count; ++i) expected[static_cast<size_t>(b.dst - dst.data() + i)] = b.src[i];
  EXPECT_EQ(dst, expected);
}

}  // namespace
}  // namespace mtplx

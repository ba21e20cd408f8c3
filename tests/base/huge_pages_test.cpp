#include "base/huge_pages.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace mtplx {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;

uintptr_t address(const std::shared_ptr<std::byte>& p) {
  return reinterpret_cast<uintptr_t>(p.get());
}

// Fills [p, p + n) with a pattern and checks it back: the whole block is mapped and writable.
void expect_usable(std::byte* p, size_t n, uint8_t seed) {
  for (size_t i = 0; i < n; i += 4093) p[i] = static_cast<std::byte>(seed + i);
  p[n - 1] = static_cast<std::byte>(seed);
  for (size_t i = 0; i < n - 1; i += 4093) ASSERT_EQ(p[i], static_cast<std::byte>(seed + i)) << i;
  ASSERT_EQ(p[n - 1], static_cast<std::byte>(seed));
}

TEST(HugePages, OneMappingIsAlignedToAHugePageAndUsable) {
  for (size_t bytes : {size_t{1}, size_t{4096}, kHugePage, 3 * kHugePage + 17}) {
    auto block = allocate_huge_pages(bytes);
    ASSERT_NE(block, nullptr) << bytes;
    EXPECT_EQ(address(block) % kHugePage, 0u) << bytes;
    expect_usable(block.get(), bytes, 7);
  }
}

TEST(HugePages, ArenaBlocksAreAlignedDisjointAndInOrder) {
  HugePageArena arena(size_t{4} << 20);
  std::vector<std::pair<std::shared_ptr<std::byte>, size_t>> blocks;
  // 200 blocks of 1..~40 KiB overflow the 4 MiB chunk, so the arena starts new chunks on the way.
  for (size_t i = 0; i < 200; ++i) {
    const size_t bytes = 1 + (i * 7919) % 40000;
    blocks.emplace_back(arena.allocate(bytes), bytes);
    ASSERT_NE(blocks.back().first, nullptr);
    EXPECT_EQ(address(blocks.back().first) % 64, 0u) << i;
  }
  size_t next_in_chunk = 0;
  for (size_t i = 0; i < blocks.size(); ++i) {
    expect_usable(blocks[i].first.get(), blocks[i].second, static_cast<uint8_t>(i));
    // Within a chunk a block follows the previous one, 64-byte rounded; a new chunk starts a huge page.
    const uintptr_t at = address(blocks[i].first);
    if (at != next_in_chunk) {
      EXPECT_EQ(at % kHugePage, 0u) << i;
    }
    next_in_chunk = at + (blocks[i].second + 63) / 64 * 64;
  }
  // Every block still holds its own pattern: none overlaps a later one.
  for (size_t i = 0; i < blocks.size(); ++i)
    ASSERT_EQ(blocks[i].first.get()[0], static_cast<std::byte>(static_cast<uint8_t>(i))) << i;
}

TEST(HugePages, ALargeBlockGetsAMappingOfItsOwn) {
  HugePageArena arena(size_t{4} << 20);
  auto small = arena.allocate(1000);
  auto large = arena.allocate((size_t{1} << 20) + 64);  // more than a quarter of the chunk
  auto after = arena.allocate(1000);
  ASSERT_NE(large, nullptr);
  EXPECT_EQ(address(large) % kHugePage, 0u);
  EXPECT_EQ(address(after), address(small) + 1024);  // the chunk goes on after the large block
  expect_usable(large.get(), size_t{1} << 20, 3);
}

TEST(HugePages, BlocksOutliveTheArena) {
  std::shared_ptr<std::byte> block;
  {
    HugePageArena arena(size_t{4} << 20);
    block = arena.allocate(100000);
    std::memset(block.get(), 0x5a, 100000);
  }
  for (size_t i = 0; i < 100000; i += 997) ASSERT_EQ(block.get()[i], std::byte{0x5a}) << i;
}

#if defined(__linux__)
// The kernel's transparent huge page mode: "always", "madvise" or "never" (empty when unknown).
std::string thp_mode() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  std::getline(in, line);
  const size_t open = line.find('['), close = line.find(']');
  return open == std::string::npos || close == std::string::npos ? ""
                                                                 : line.substr(open + 1, close - open - 1);
}

// The THPeligible field of the /proc/self/smaps entry of the mapping that holds `p` (-1 when absent).
int thp_eligible(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto at = reinterpret_cast<uintptr_t>(p);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    uintptr_t begin = 0, end = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &begin, &end) == 2) {
      inside = begin <= at && at < end;
    } else if (inside && line.starts_with("THPeligible:")) {
      return std::stoi(line.substr(12));
    }
  }
  return -1;
}

// Where the kernel gives huge pages only on request (Debian's default), the arena's chunks ask for them.
TEST(HugePages, ChunksAskForHugePages) {
  if (thp_mode() != "madvise") GTEST_SKIP() << "transparent huge pages are '" << thp_mode() << "' here";
  HugePageArena arena;
  auto block = arena.allocate(4096);
  auto own = allocate_huge_pages(3 * kHugePage);
  EXPECT_EQ(thp_eligible(block.get()), 1);
  EXPECT_EQ(thp_eligible(own.get()), 1);
}
#endif

}  // namespace
}  // namespace mtplx

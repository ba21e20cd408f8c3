// Memory for buffers that every decode step streams through (the CPU backend's int8 weight tiles).
//
// Why: a decode step reads every weight once, 0.4-1.6 GB for a 0.8B model, and on 4 KiB pages that is a TLB
// miss every 4 KiB (in a virtual machine a two-level page walk each). Where Linux runs transparent huge
// pages in "madvise" mode (Debian's default), memory asked for with MADV_HUGEPAGE gets 2 MiB pages;
// elsewhere it falls back to ordinary pages, so only the speed differs.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>

namespace mtplx {

// One anonymous mapping of at least `bytes` bytes, 2 MiB-aligned, advised to use huge pages (its whole
// 2 MiB ranges get them); unmapped when the last pointer goes. Returns null when the memory is not
// available.
std::shared_ptr<std::byte> allocate_huge_pages(size_t bytes);

// Hands out 64-byte-aligned blocks of huge-page chunks, one after another, so many medium buffers share
// whole 2 MiB pages and lie in memory in the order they were asked for. A block keeps its chunk alive; a
// chunk is unmapped once the arena has moved on and its blocks are gone. Thread-safe.
class HugePageArena {
 public:
  explicit HugePageArena(size_t chunk_bytes = size_t{64} << 20) : chunk_bytes_(chunk_bytes) {}

  // Null when the memory is not available. Blocks larger than a quarter chunk get a mapping of their own.
  std::shared_ptr<std::byte> allocate(size_t bytes);

 private:
  size_t chunk_bytes_;
  std::mutex mutex_;
  std::shared_ptr<std::byte> chunk_;  // the chunk being filled
  size_t used_ = 0;                   // bytes of chunk_ handed out
};

}  // namespace mtplx

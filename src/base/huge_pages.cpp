#include "base/huge_pages.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace mtplx {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kSmallPage = 4096;
constexpr size_t kBlockAlign = 64;

constexpr size_t round_up(size_t n, size_t to) {
  return (n + to - 1) / to * to;
}

}  // namespace

#if defined(__linux__)

std::shared_ptr<std::byte> allocate_huge_pages(size_t bytes) {
  // Whole 4 KiB pages: a last, partial 2 MiB range stays on small pages instead of taking a whole huge
  // page for its few bytes.
  const size_t size = round_up(std::max<size_t>(bytes, 1), kSmallPage);
  // Map one huge page more than needed, then cut the ends so the kept range starts on a 2 MiB boundary:
  // only whole aligned 2 MiB ranges can become huge pages.
  void* raw = mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const auto start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = round_up(start, kHugePage);
  if (aligned > start) munmap(raw, aligned - start);
  const uintptr_t tail = aligned + size, end = start + size + kHugePage;
  if (end > tail) munmap(reinterpret_cast<void*>(tail), end - tail);
  auto* base = reinterpret_cast<std::byte*>(aligned);
  // Advice only: a kernel without transparent huge pages (or with them off) keeps 4 KiB pages.
  madvise(base, size, MADV_HUGEPAGE);
  return std::shared_ptr<std::byte>(base, [size](std::byte* p) { munmap(p, size); });
}

#else

std::shared_ptr<std::byte> allocate_huge_pages(size_t bytes) {
  const size_t size = round_up(std::max<size_t>(bytes, 1), kHugePage);
  auto* raw = static_cast<std::byte*>(std::aligned_alloc(kHugePage, size));
  if (raw == nullptr) return nullptr;
  return std::shared_ptr<std::byte>(raw, [](std::byte* p) { std::free(p); });
}

#endif

std::shared_ptr<std::byte> HugePageArena::allocate(size_t bytes) {
  const size_t size = round_up(std::max<size_t>(bytes, 1), kBlockAlign);
  if (size > chunk_bytes_ / 4) return allocate_huge_pages(size);
  std::lock_guard lock(mutex_);
  if (chunk_ == nullptr || used_ + size > chunk_bytes_) {
    chunk_ = allocate_huge_pages(chunk_bytes_);
    used_ = 0;
    if (chunk_ == nullptr) return nullptr;
  }
  std::shared_ptr<std::byte> block(chunk_, chunk_.get() + used_);  // shares the chunk's ownership
  used_ += size;
  return block;
}

}  // namespace mtplx

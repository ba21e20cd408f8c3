#include "base/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>

namespace mtplx {
namespace {

// Runs one loop and checks that the ranges cover [0, n) exactly once, are non-empty and start on a grain
// boundary, and that only the last one may be shorter than a whole number of grains.
void expect_exact_cover(ThreadPool& pool, int64_t n, int64_t grain) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  std::mutex mutex;
  std::vector<std::pair<int64_t, int64_t>> ranges;
  pool.parallel_for(
      n,
      [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
        std::lock_guard lock(mutex);
        ranges.emplace_back(begin, end);
      },
      grain);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "index " << i << " of " << n;
  for (const auto& [begin, end] : ranges) {
    EXPECT_LT(begin, end);
    EXPECT_EQ(begin % grain, 0) << "range [" << begin << ", " << end << ")";
    if (end != n) {
      EXPECT_EQ((end - begin) % grain, 0) << "range [" << begin << ", " << end << ")";
    }
  }
}

TEST(ThreadPool, CoversEveryIndexOnceForAnySizeAndGrain) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int64_t n : {1, 2, 7, 8, 9, 63, 64, 65, 1000, 4097})
      for (int64_t grain : {1, 3, 8, 16, 5000}) expect_exact_cover(pool, n, grain);
  }
}

TEST(ThreadPool, EmptyLoopCallsNothing) {
  ThreadPool pool(4);
  int calls = 0;
  pool.parallel_for(0, [&](int64_t, int64_t) { ++calls; });
  pool.parallel_for(-5, [&](int64_t, int64_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

// Many short loops back to back with more threads than cores: workers are often descheduled or still
// finishing the previous loop when the next one is published. Every loop must still see each index once,
// with its own body (the sums would differ otherwise).
TEST(ThreadPool, ManyShortLoopsOversubscribed) {
  ThreadPool pool(6);
  for (int loop = 0; loop < 20000; ++loop) {
    const int64_t n = 1 + loop % 97;
    std::atomic<int64_t> sum{0};
    pool.parallel_for(n, [&, loop](int64_t begin, int64_t end) {
      int64_t local = 0;
      for (int64_t i = begin; i < end; ++i) local += i + loop;
      sum.fetch_add(local);
    });
    ASSERT_EQ(sum.load(), n * (n - 1) / 2 + n * loop) << "loop " << loop;
  }
}

TEST(ThreadPool, ExceptionFromAChunkIsRethrownAfterTheLoop) {
  ThreadPool pool(4);
  std::atomic<int> running{0};
  EXPECT_THROW(pool.parallel_for(
                   1000,
                   [&](int64_t begin, int64_t) {
                     running.fetch_add(1);
                     if (begin == 0) {
                       running.fetch_sub(1);
                       throw std::runtime_error("chunk failed");
                     }
                     running.fetch_sub(1);
                   },
                   10),
               std::runtime_error);
  // parallel_for returned only after every call finished.
  EXPECT_EQ(running.load(), 0);
  // The pool stays usable.
  expect_exact_cover(pool, 500, 4);
}

}  // namespace
}  // namespace mtplx

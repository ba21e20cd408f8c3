#include "base/thread_pool.h"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace mtplx {
namespace {

// How long an idle worker keeps polling before it sleeps: longer than the gaps between the loops of one
// decode step (small single-threaded ops), far shorter than a human-visible pause.
constexpr auto kSpinTime = std::chrono::microseconds(200);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Polls `done` with pauses, checking the clock every 64 polls; returns whether it became true in time.
template <typename Done>
bool spin_until(Done&& done, std::chrono::microseconds budget) {
  const auto deadline = std::chrono::steady_clock::now() + budget;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= deadline) return done();
  }
}

// Ticket layout: generation in bits 32..63, the loop's chunk count in bits 16..31, the next unclaimed chunk
// in bits 0..15.
constexpr uint32_t kMaxChunks = 0xffff;
constexpr uint32_t generation_of(uint64_t ticket) {
  return static_cast<uint32_t>(ticket >> 32);
}
constexpr uint32_t chunk_count_of(uint64_t ticket) {
  return static_cast<uint32_t>(ticket >> 16) & kMaxChunks;
}
constexpr uint32_t chunk_of(uint64_t ticket) {
  return static_cast<uint32_t>(ticket) & kMaxChunks;
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
  workers_.reserve(threads - 1);
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_.store(true);
  }
  wake_.notify_all();
  for (auto& worker : workers_) worker.join();
}

void ThreadPool::run_chunks(uint32_t generation) {
  uint64_t ticket = ticket_.load(std::memory_order_acquire);
  for (;;) {
    // The chunk count travels in the ticket: a late worker must compare the index against its own loop's
    // count, never against a newer loop's (that let it claim a chunk past the end of a finished loop).
    if (generation_of(ticket) != generation) return;
    const uint32_t chunk = chunk_of(ticket);
    if (chunk >= chunk_count_of(ticket)) return;
    if (!ticket_.compare_exchange_weak(ticket, ticket + 1, std::memory_order_acq_rel)) continue;
    // This loop cannot finish before our chunk does, so the caller has not replaced the fields yet.
    const auto* body = body_.load(std::memory_order_relaxed);
    const int64_t begin = bounds_[chunk].load(std::memory_order_relaxed);
    const int64_t end = bounds_[chunk + 1].load(std::memory_order_relaxed);
    if (!failed_.load(std::memory_order_relaxed)) {
      try {
        (*body)(begin, end);
      } catch (...) {
        std::lock_guard lock(mutex_);
        if (!error_) error_ = std::current_exception();
        failed_.store(true, std::memory_order_relaxed);
      }
    }
    done_.fetch_add(1, std::memory_order_release);
    ticket = ticket_.load(std::memory_order_acquire);
  }
}

uint32_t ThreadPool::plan_chunks(int64_t n, int64_t grain) {
  // Guided: each chunk takes 1 / (2 x threads) of the blocks not yet handed out, down to a floor of
  // 1 / (16 x threads) of the loop. The first chunks are long (few starts of a weight stream, which cost a
  // prefetch ramp each) and the last ones short, so the thread that ends first waits at most a short chunk.
  const int64_t blocks = (n + grain - 1) / grain, threads = size();
  const int64_t floor_blocks =
      std::max({int64_t{1}, blocks / (16 * threads), (blocks + kMaxPlanned - 1) / kMaxPlanned});
  uint32_t chunks = 0;
  int64_t given = 0;
  while (given < blocks) {
    const int64_t left = blocks - given;
    int64_t take = std::max(floor_blocks, (left + 2 * threads - 1) / (2 * threads));
    if (chunks + 1 == kMaxPlanned) take = left;  // the bound array is full: the rest in one chunk
    bounds_[chunks].store(std::min(n, given * grain), std::memory_order_relaxed);
    given += std::min(take, left);
    ++chunks;
  }
  bounds_[chunks].store(n, std::memory_order_relaxed);
  return chunks;
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& body, int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t blocks = (n + grain - 1) / grain;
  if (workers_.empty() || blocks <= 1) {
    body(0, n);
    return;
  }
  const uint32_t chunks = plan_chunks(n, grain);
  body_.store(&body, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  failed_.store(false, std::memory_order_relaxed);
  const uint32_t generation = generation_of(ticket_.load(std::memory_order_relaxed)) + 1;
  // seq_cst publish, then seq_cst load of sleepers_: paired with the worker's increment-then-check in
  // wait_for_work, either the worker sees the new loop or we see it asleep and notify it.
  ticket_.store(static_cast<uint64_t>(generation) << 32 | static_cast<uint64_t>(chunks) << 16);
  if (sleepers_.load() > 0) {
    std::lock_guard lock(mutex_);
    wake_.notify_all();
  }
  run_chunks(generation);
  // Only chunks that a worker claimed and is running remain: spin, then yield the core in case that
  // worker waits for it.
  auto all_done = [&] { return done_.load(std::memory_order_acquire) == chunks; };
  while (!spin_until(all_done, kSpinTime)) std::this_thread::yield();
  if (failed_.load(std::memory_order_relaxed)) {
    std::exception_ptr error;
    {
      std::lock_guard lock(mutex_);
      std::swap(error, error_);
    }
    std::rethrow_exception(error);
  }
}

bool ThreadPool::wait_for_work(uint32_t seen) {
  auto has_work = [&] {
    return generation_of(ticket_.load(std::memory_order_acquire)) != seen ||
           stopping_.load(std::memory_order_relaxed);
  };
  if (!spin_until(has_work, kSpinTime)) {
    std::unique_lock lock(mutex_);
    sleepers_.fetch_add(1);
    wake_.wait(lock, [&] { return generation_of(ticket_.load()) != seen || stopping_.load(); });
    sleepers_.fetch_sub(1);
  }
  return !stopping_.load();
}

void ThreadPool::worker_loop() {
  uint32_t seen = 0;
  while (wait_for_work(seen)) {
    seen = generation_of(ticket_.load(std::memory_order_acquire));
    run_chunks(seen);
  }
}

}  // namespace mtplx

// A fixed pool of worker threads for data-parallel loops. parallel_for splits [0, n) into chunks that the
// caller and the workers claim one at a time, and returns when all chunks are done. One loop runs at a time.
//
// Decode issues a few hundred short loops per token (each 10-300 us), so two things matter:
//  - waking sleeping workers through the kernel on every loop would cost as much as the work, so workers
//    poll for a short while after each loop before they block;
//  - a worker may be descheduled (a busy machine, more threads than free cores): chunks are claimed
//    dynamically, so the caller does the work itself instead of waiting for a worker that has not started.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace mtplx {

class ThreadPool {
 public:
  // threads <= 0 means one per hardware thread.
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls body(begin, end) on disjoint ranges covering [0, n), possibly several per thread. Ranges are
  // multiples of `grain` in size (except the last) so kernels can work on whole blocks. If a call of body
  // throws, the remaining chunks are skipped and the first exception is rethrown here once every running
  // call has returned.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& body, int64_t grain = 1);

 private:
  void worker_loop();
  // Claims and runs chunks of loop `generation` until none is left.
  void run_chunks(uint32_t generation);
  // Splits [0, n) into chunks of whole grains (bounds_), returns their count.
  uint32_t plan_chunks(int64_t n, int64_t grain);
  // Waits until a loop newer than `seen` is published (or the pool stops); returns false when stopping.
  bool wait_for_work(uint32_t seen);

  std::vector<std::thread> workers_;
  // The current loop. Written by the caller only after every chunk of the previous loop is done, and read
  // by a worker only after it has claimed a chunk of the current loop through ticket_, so it always sees
  // its own loop's values. Atomic (relaxed) for the formal data-race rules only.
  std::atomic<const std::function<void(int64_t, int64_t)>*> body_{nullptr};
  static constexpr uint32_t kMaxPlanned = 64;                   // chunks per loop at most
  std::array<std::atomic<int64_t>, kMaxPlanned + 1> bounds_{};  // chunk i is [bounds_[i], bounds_[i + 1])
  // Generation of the current loop (bits 32..63), its chunk count (16..31) and next unclaimed chunk (0..15),
  // claimed by compare-exchange so a claim can never cross into another loop.
  std::atomic<uint64_t> ticket_{0};
  std::atomic<uint32_t> done_{0};  // chunks of the current loop finished
  std::atomic<bool> stopping_{false};
  std::atomic<bool> failed_{false};  // a chunk of the current loop threw: skip the rest
  std::exception_ptr error_;         // the first exception, guarded by mutex_
  // Workers that sleep (after polling) count themselves in sleepers_ so the caller knows it must notify.
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<int> sleepers_{0};
};

}  // namespace mtplx

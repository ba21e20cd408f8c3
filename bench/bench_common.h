// Pieces the benchmark programs share: option lists, repeat statistics, weight bytes a decode step reads,
// a deterministic prompt, size formatting.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "backend/tensor.h"
#include "base/error.h"
#include "base/huge_pages.h"
#include "base/thread_pool.h"
#include "base/timing.h"
#include "model/weights.h"

namespace mtplx::bench {

// "1,2,3" -> {1, 2, 3}; empty items are skipped.
inline std::vector<int> parse_int_list(const std::string& text) {
  std::vector<int> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(std::stoi(item));
  return out;
}

struct Stats {
  double mean = 0;
  double sd = 0;  // sample standard deviation (0 for one sample)
};

inline Stats stats(const std::vector<double>& v) {
  Stats s;
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  if (v.size() > 1) {
    double sq = 0;
    for (double x : v) sq += (x - s.mean) * (x - s.mean);
    s.sd = std::sqrt(sq / static_cast<double>(v.size() - 1));
  }
  return s;
}

// One untimed warm-up call of `once` (which returns a measurement), then `repeats` samples.
template <typename F>
Stats measure(int repeats, F&& once) {
  once();
  std::vector<double> samples;
  for (int r = 0; r < repeats; ++r) samples.push_back(once());
  return stats(samples);
}

// Seconds of each of `passes` passes of chunk(begin, end) over [0, bytes) split over the pool in 64 KiB
// grains, after one untimed pass that faults the pages in.
template <typename Chunk>
std::vector<double> pass_seconds(ThreadPool& pool, size_t bytes, int passes, const Chunk& chunk) {
  std::vector<double> seconds;
  for (int pass = 0; pass <= passes; ++pass) {
    Stopwatch clock;
    pool.parallel_for(static_cast<int64_t>(bytes), chunk, int64_t{1} << 16);
    if (pass > 0) seconds.push_back(clock.seconds());
  }
  return seconds;
}

// Seconds of each of `passes` memcpy passes of `bytes` bytes. The buffers are on huge pages as the CPU
// backend's int8 tiles are (allocate_huge_pages), so the bandwidth bound is measured on the memory the
// kernels stream.
inline std::vector<double> copy_pass_seconds(ThreadPool& pool, size_t bytes, int passes) {
  const auto src = allocate_huge_pages(bytes), dst = allocate_huge_pages(bytes);
  require(src != nullptr && dst != nullptr, str("no memory for two ", bytes >> 20, " MiB copy buffers"));
  std::memset(src.get(), 1, bytes);
  return pass_seconds(pool, bytes, passes, [&](int64_t begin, int64_t end) {
    std::memcpy(dst.get() + begin, src.get() + begin, static_cast<size_t>(end - begin));
  });
}

// Seconds of each of `passes` read passes over `bytes` bytes (every 64-bit word added into eight running
// sums, prefetched 2 KiB ahead), on huge pages. A decode step mostly reads, and on the development VM two
// threads read less than memcpy moves in reads and writes together (47-55 against 53-63 GB/s in the same
// bench_decode runs).
inline std::vector<double> read_pass_seconds(ThreadPool& pool, size_t bytes, int passes) {
  const auto src = allocate_huge_pages(bytes);
  require(src != nullptr, str("no memory for a ", bytes >> 20, " MiB read buffer"));
  std::memset(src.get(), 1, bytes);
  std::atomic<uint64_t> sink{0};  // keeps the sums alive
  return pass_seconds(pool, bytes, passes, [&](int64_t begin, int64_t end) {
    const auto* words = reinterpret_cast<const uint64_t*>(src.get() + begin);
    const size_t count = static_cast<size_t>(end - begin) / 8;
    uint64_t sums[8] = {};
    for (size_t i = 0; i + 8 <= count; i += 8) {
      __builtin_prefetch(words + i + 256);
      for (int l = 0; l < 8; ++l) sums[l] += words[i + l];
    }
    uint64_t total = 0;
    for (uint64_t sum : sums) total += sum;
    sink.fetch_add(total, std::memory_order_relaxed);
  });
}

inline uint64_t vector_bytes(const Tensor& t) {
  return static_cast<uint64_t>(t.numel()) * 4;
}

inline uint64_t layer_bytes(const LayerWeights& l) {
  uint64_t b = vector_bytes(l.input_norm) + vector_bytes(l.post_norm);
  for (const WeightMatrix* m : layer_matrices(l)) b += m->bytes();
  if (l.kind == LayerKind::kFullAttention) {
    b += vector_bytes(l.attn.q_norm) + vector_bytes(l.attn.k_norm);
  } else {
    const auto& g = l.gdn;
    for (const Tensor* t : {&g.conv1d, &g.a_log, &g.dt_bias, &g.norm}) b += vector_bytes(*t);
  }
  return b;
}

// Weight bytes one decode step reads: every trunk layer, the final norm, the LM head and one embedding row.
inline uint64_t decode_bytes_per_token(const ModelWeights& w) {
  uint64_t b = 0;
  for (const auto& layer : w.layers) b += layer_bytes(layer);
  b += vector_bytes(w.final_norm) + w.lm_head.bytes();
  b += w.embed.rows > 0 ? w.embed.bytes() / static_cast<uint64_t>(w.embed.rows) : 0;
  return b;
}

// Bytes of recurrent state one decode step reads and writes back.
inline uint64_t decode_state_bytes_per_token(const ModelConfig& c) {
  return static_cast<uint64_t>(2 * c.recurrent_state_bytes());
}

inline std::string human(double bytes) {
  const char* units[] = {"B", "KB", "MB", "GB"};
  int unit = 0;
  while (bytes >= 1000 && unit < 3) {
    bytes /= 1000;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.2f %s", bytes, units[unit]);
  return text;
}

inline int32_t argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// n pseudo-random token ids below `vocab`, the same in every run.
inline std::vector<int32_t> prompt(int n, int64_t vocab) {
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  uint64_t x = 12345;
  for (auto& t : tokens) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    t = static_cast<int32_t>((x >> 33) % static_cast<uint64_t>(vocab));
  }
  return tokens;
}

// main() of a benchmark program: runs `run`, turning an exception into a one-line error and exit status 1.
template <typename Run>
int guarded_main(const char* program, Run&& run, int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    return 1;
  }
}

}  // namespace mtplx::bench

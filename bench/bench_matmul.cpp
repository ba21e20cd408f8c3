// CPU matmul throughput against the memory-copy bound. Decode (T = 1) streams every weight byte once per
// token, so its ceiling is memory bandwidth; the table reports weight bytes / time next to the measured
// copy bandwidth (bytes read + written by a large memcpy on all pool threads).
//
// Each shape is allocated in enough copies to exceed the last-level cache (>= 512 MB in all) and the
// calls rotate through them, so every call reads its weights from DRAM as a model's decode step would.
//
// With several paths (--isa avx2,avx512,int8; int8 = QuantDot::Int8 on AVX-512) every shape is timed on each
// of them in the same run, alternating call by call, and the table gains a column with the time ratio to the
// first one: under a noisy shared machine the ratio is steadier than the absolute figures.
//
// Usage: bench_matmul [--threads N] [--isa LIST] [--reps N] [--no-lm-head-prefill] [--dtypes LIST]
//                     [--shapes LIST]
//   LIST: comma-separated; --isa from auto, portable, avx2, avx512, int8, each optionally with the suffix
//   -noprefetch (the same kernels without software prefetch); --dtypes from BF16, q8, q4;
//   --shapes from gate/up, down, lm_head
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "backend/cpu/matmul.h"
#include "base/dtype.h"
#include "base/thread_pool.h"
#include "base/timing.h"
#include "bench_common.h"

namespace {

using mtplx::DType;
using mtplx::ThreadPool;
using mtplx::WeightMatrix;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// GB/s of a large copy split over the pool, counting bytes read plus bytes written (median of `reps`).
double copy_bandwidth(ThreadPool& pool, size_t bytes, int reps) {
  return 2.0 * static_cast<double>(bytes) / median(mtplx::bench::copy_pass_seconds(pool, bytes, reps)) / 1e9;
}

struct Storage {
  std::vector<uint32_t> data;  // codes or dense halves / floats, as raw words
  std::vector<uint16_t> scales, biases;
  WeightMatrix w;
};

// A random matrix (never zeros): random codes, BF16 scales in a realistic range, or random BF16 values.
Storage make_weight(std::string_view dtype, int64_t rows, int64_t cols, std::mt19937& rng) {
  Storage s;
  std::uniform_int_distribution<uint32_t> word;
  std::uniform_real_distribution<float> val(-0.05f, 0.05f);
  s.w.rows = rows;
  s.w.cols = cols;
  if (dtype == "BF16") {
    s.w.dtype = DType::BF16;
    s.data.resize(static_cast<size_t>(rows * cols / 2));
    for (auto& v : s.data)
      v = mtplx::float_to_bf16(val(rng)) | static_cast<uint32_t>(mtplx::float_to_bf16(val(rng))) << 16;
  } else {
    s.w.dtype = DType::U32;
    s.w.bits = dtype == "q8" ? 8 : 4;
    s.w.group_size = 64;
    s.w.scale_dtype = DType::BF16;
    s.data.resize(static_cast<size_t>(rows * cols * s.w.bits / 32));
    for (auto& v : s.data) v = word(rng);
    s.scales.resize(static_cast<size_t>(rows * cols / 64));
    s.biases.resize(s.scales.size());
    for (auto& v : s.scales) v = mtplx::float_to_bf16(std::abs(val(rng)) * 0.1f + 1e-3f);
    for (auto& v : s.biases) v = mtplx::float_to_bf16(val(rng));
    s.w.scales = s.scales.data();
    s.w.biases = s.biases.data();
  }
  s.w.data = s.data.data();
  return s;
}

std::vector<std::string> split(std::string_view text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find(',', start), text.size());
    if (end > start) out.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

struct Shape {
  const char* name;
  int64_t rows, cols;
};

}  // namespace

int main(int argc, char** argv) {
  int threads = 0, reps = 15;
  bool lm_head_prefill = true;
  std::vector<mtplx::cpu::MatmulOptions> isas;
  std::vector<std::string> dtypes = {"BF16", "q8", "q4"};
  std::vector<std::string> shape_names = {"gate/up", "down", "lm_head"};
  const char* usage =
      "usage: bench_matmul [--threads N] [--isa auto|portable|avx2|avx512|int8[,...]] [--reps N] "
      "[--no-lm-head-prefill] [--dtypes BF16,q8,q4] [--shapes gate/up,down,lm_head]\n";
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--threads" && i + 1 < argc)
      threads = std::stoi(argv[++i]);
    else if (arg == "--reps" && i + 1 < argc)
      reps = std::stoi(argv[++i]);
    else if (arg == "--no-lm-head-prefill")
      lm_head_prefill = false;
    else if (arg == "--dtypes" && i + 1 < argc)
      dtypes = split(argv[++i]);
    else if (arg == "--shapes" && i + 1 < argc)
      shape_names = split(argv[++i]);
    else if (arg == "--isa" && i + 1 < argc) {
      for (const std::string& v : split(argv[++i])) {
        const auto path = mtplx::cpu::parse_matmul_path(v);
        if (!path) {
          std::fprintf(stderr, "%s", usage);
          return 2;
        }
        if (!mtplx::cpu::isa_supported(path->isa) ||
            (path->dot == mtplx::cpu::QuantDot::Int8 && !mtplx::cpu::int8_dot_supported())) {
          std::fprintf(stderr, "bench_matmul: %s is not available on this CPU\n", v.c_str());
          return 2;
        }
        isas.push_back(*path);
      }
    } else {
      std::fprintf(stderr, "%s", usage);
      return 2;
    }
  }
  if (isas.empty()) isas.push_back({});
  ThreadPool pool(threads);
  const double copy1 = [&] {
    ThreadPool single(1);
    return copy_bandwidth(single, size_t{1} << 29, 5);
  }();
  const double copy = copy_bandwidth(pool, size_t{1} << 29, 5);
  std::printf(
      "threads: %d\nmemcpy bandwidth (read + write, 512 MiB): %.1f GB/s on 1 thread, %.1f GB/s on %d\n\n",
      pool.size(), copy1, copy, pool.size());

  // Qwen3.5-0.8B: hidden 1024, MLP intermediate 3584, vocabulary 248320.
  const Shape shapes[] = {{"gate/up 3584x1024", 3584, 1024},
                          {"down 1024x3584", 1024, 3584},
                          {"lm_head 248320x1024", 248320, 1024}};
  const bool compare = isas.size() > 1;
  std::printf("| dtype | shape | T | isa | time ms | GB/s | %% of copy bw | GFLOP/s |%s\n",
              compare ? " time / first isa |" : "");
  std::printf("|---|---|---:|---|---:|---:|---:|---:|%s\n", compare ? "---:|" : "");
  std::mt19937 rng(42);
  for (const std::string& dtype : dtypes) {
    for (const Shape& shape : shapes) {
      if (std::none_of(shape_names.begin(), shape_names.end(), [&](const std::string& n) {
            return std::string_view(shape.name).starts_with(n + " ");
          }))
        continue;
      const size_t one = make_weight(dtype, 1, shape.cols, rng).w.bytes() * static_cast<size_t>(shape.rows);
      const size_t copies = std::max<size_t>(1, ((size_t{1} << 29) + one - 1) / one);
      std::vector<Storage> weights;
      for (size_t i = 0; i < copies; ++i) weights.push_back(make_weight(dtype, shape.rows, shape.cols, rng));
      // The int8 paths read their own tiled copy of each (cpu::with_int8_tiles), as a model loaded with
      // --cpu-matmul int8 does; the exact paths read the matrix as stored.
      const bool any_int8 = std::any_of(isas.begin(), isas.end(), [](const mtplx::cpu::MatmulOptions& o) {
        return o.dot == mtplx::cpu::QuantDot::Int8;
      });
      mtplx::HugePageArena arena;
      if (any_int8)
        for (Storage& s : weights)
          if (mtplx::cpu::int8_dot_format(s.w)) s.w = mtplx::cpu::with_int8_tiles(s.w, pool, arena);
      for (int64_t T : {1, 4, 512}) {
        if (T == 512 && shape.rows > 100000 && !lm_head_prefill) continue;
        std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
        std::vector<float> x(static_cast<size_t>(T * shape.cols)), y(static_cast<size_t>(T * shape.rows));
        for (auto& v : x) v = dist(rng);
        const int n = T == 512 ? (shape.rows > 100000 ? 3 : 5) : std::max(reps, static_cast<int>(2 * copies));
        std::vector<std::vector<double>> times(isas.size());
        // Alternate the instruction sets call by call so load from other processes hits them alike; the
        // first round warms code and page tables and is not counted.
        size_t call = 0;
        for (int i = 0; i < n + 1; ++i)
          for (size_t k = 0; k < isas.size(); ++k) {
            const WeightMatrix& w = weights[call++ % copies].w;
            mtplx::Stopwatch sw;
            mtplx::cpu::matmul(w, x.data(), y.data(), T, pool, isas[k]);
            if (i > 0) times[k].push_back(sw.seconds());
          }
        const double first = median(times[0]);
        for (size_t k = 0; k < isas.size(); ++k) {
          const double t = median(times[k]);
          const double gbs = static_cast<double>(one) / t / 1e9;
          const double flops = 2.0 * static_cast<double>(shape.rows * shape.cols * T) / t / 1e9;
          std::printf("| %s | %s | %lld | %s | %.3f | %.1f | %.0f%% | %.1f |", dtype.c_str(), shape.name,
                      static_cast<long long>(T), std::string(mtplx::cpu::matmul_path_name(isas[k])).c_str(),
                      t * 1e3, gbs, 100.0 * gbs / copy, flops);
          if (compare) std::printf(" %.2f |", t / first);
          std::printf("\n");
        }
        std::fflush(stdout);
      }
    }
  }
  return 0;
}

// matmul driver: validates the weight, picks the instruction-set path, prepares activations once per call
// and splits the work over the thread pool. The per-ISA inner loops live in matmul_portable.cpp,
// matmul_avx2.cpp and matmul_avx512.cpp.
#include "backend/cpu/matmul.h"

#include <algorithm>
#include <array>
#include <vector>

#include "backend/cpu/matmul_internal.h"
#include "base/error.h"

namespace mtplx::cpu {
namespace {

using detail::kTileM;
using detail::kTileN;

void validate(const WeightMatrix& w) {
  const std::string where = str("weight matrix [", w.rows, ", ", w.cols, "]");
  require(w.rows > 0 && w.cols > 0, "matmul needs a non-empty weight matrix", where);
  require(w.data != nullptr, "weight matrix has no data", where);
  if (!w.quantized()) {
    require(w.dtype == DType::F32 || w.dtype == DType::F16 || w.dtype == DType::BF16,
            str("dense weights of type ", dtype_name(w.dtype), " are not supported"), where,
            "convert the checkpoint to F32, F16 or BF16, or quantize it");
    return;
  }
  require(w.bits >= 2 && w.bits <= 8, str("quantized weights with ", w.bits, " bits are not supported"),
          where, "use 2, 3, 4, 5, 6 or 8 bits");
  require(w.group_size == 32 || w.group_size == 64 || w.group_size == 128,
          str("quantization group size ", w.group_size, " is not supported"), where, "use 32, 64 or 128");
  require(w.cols % w.group_size == 0,
          str("column count ", w.cols, " is not a multiple of the group size ", w.group_size), where);
  require(w.dtype == DType::U32, "packed quantized codes must be stored as U32", where);
  require(w.scales != nullptr && w.biases != nullptr, "quantized weights need scales and biases", where);
  require(w.scale_dtype == DType::F32 || w.scale_dtype == DType::F16 || w.scale_dtype == DType::BF16,
          str("scales of type ", dtype_name(w.scale_dtype), " are not supported"), where,
          "store scales and biases as BF16, F16 or F32");
}

bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  // Function-local static: the CPUID query runs once.
  static const bool has =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  return has;
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(__x86_64__) || defined(__i386__)
  // libgcc's CPU model also checks (XGETBV) that the OS saves the AVX-512 register state.
  static const bool has = cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512dq");
  return has;
#else
  return false;
#endif
}

bool cpu_has_vnni() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has =
      cpu_has_avx512() && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("gfni");
  return has;
#else
  return false;
#endif
}

// Whether QuantDot::Int8 on path `isa` runs the VNNI kernel (else the AVX2 one).
bool int8_vnni(Isa isa) {
  return isa == Isa::Avx512 && cpu_has_vnni();
}

Isa resolve(Isa isa) {
  if (isa == Isa::Auto) return cpu_has_avx512() ? Isa::Avx512 : cpu_has_avx2() ? Isa::Avx2 : Isa::Portable;
  require(isa_supported(isa), "the requested CPU instruction set is not available on this machine", {},
          "use Isa::Auto");
  return isa;
}

// Below this many weight bytes a matrix is done on the calling thread: waking the pool costs more
// (tens of microseconds) than the work.
constexpr size_t kParallelBytes = 96 * 1024;

// One weight's row-kernel call: the activations prepared for its kernel (RowArgs points into the
// buffers here, which a move keeps in place) and the kernel that runs it.
struct RowJob {
  const WeightMatrix* w = nullptr;
  Isa isa = Isa::Portable;
  bool int8 = false;  // QuantDot::Int8: the VNNI kernel on the AVX-512 path with VNNI, else the AVX2 one
  detail::RowArgs args;
  std::vector<float> xq, xsum, xi_scale;
  std::vector<int8_t> xi;
};

RowJob prepare_rows(const WeightMatrix& w, const float* x, float* y, int64_t T, Isa isa, bool int8,
                    bool prefetch) {
  RowJob job;
  job.w = &w;
  job.isa = isa;
  job.int8 = int8;
  detail::RowArgs& args = job.args;
  args.x = x;
  args.xq = x;  // unless the kernel asks for a permuted order below
  args.y = y;
  args.T = T;
  args.prefetch = prefetch;
  if (w.quantized()) {
    // Per-group sums of x carry the bias term: sum_c (s q_c + b) x_c = s sum q_c x_c + b sum x_c.
    const int64_t groups = w.cols / w.group_size;
    job.xsum.resize(static_cast<size_t>(T * groups));
    if (int8) {  // the rounded x, its scales and its sums
      args.xi_stride = w.cols;
      args.xi_blocks = w.cols / 64;
      job.xi.resize(static_cast<size_t>(T * args.xi_stride));
      job.xi_scale.resize(static_cast<size_t>(T * args.xi_blocks));
      const auto quantize = int8_vnni(isa) ? detail::quantize_x_int8 : detail::quantize_x_int8_avx2;
      quantize(w, x, T, job.xi.data(), job.xi_scale.data(), job.xsum.data());
      args.xi = job.xi.data();
      args.xi_scale = job.xi_scale.data();
    } else {
      for (int64_t t = 0; t < T; ++t)
        for (int64_t g = 0; g < groups; ++g) {
          const float* xs = x + t * w.cols + g * w.group_size;
          float sum = 0;
          for (int i = 0; i < w.group_size; ++i) sum += xs[i];
          job.xsum[t * groups + g] = sum;
        }
    }
    args.xsum = job.xsum.data();
  }
  const detail::XOrder order = int8                 ? detail::XOrder{}
                               : isa == Isa::Avx512 ? detail::x_order_avx512(w)
                               : isa == Isa::Avx2   ? detail::x_order_avx2(w)
                                                    : detail::XOrder{};
  if (order.per_lane > 1) {
    // Whole pieces are permuted; a tail shorter than a piece (dense columns only: quantized rows are whole
    // groups, which hold whole pieces) stays in natural order.
    const int piece = order.piece();
    std::vector<int> natural(static_cast<size_t>(piece));
    for (int i = 0; i < piece; ++i) natural[i] = order.natural(i);
    job.xq.resize(static_cast<size_t>(T * w.cols));
    for (int64_t t = 0; t < T; ++t) {
      const float* xt = x + t * w.cols;
      float* out = job.xq.data() + t * w.cols;
      int64_t c = 0;
      for (; c + piece <= w.cols; c += piece)
        for (int i = 0; i < piece; ++i) out[c + i] = xt[c + natural[i]];
      for (; c < w.cols; ++c) out[c] = xt[c];
    }
    args.xq = job.xq.data();
  }
  return job;
}

// Whether two int8 weights read the same rounded x: its layout depends on the bit width, its group sums
// on the group size.
bool same_int8_x(const WeightMatrix& a, const WeightMatrix& b) {
  return a.cols == b.cols && a.bits == b.bits && a.group_size == b.group_size;
}

// A job for `w` over the activations `prepared` already rounded (merged projections of one input: gate and
// up both read x).
RowJob share_rows(const RowJob& prepared, const WeightMatrix& w, float* y) {
  RowJob job;
  job.w = &w;
  job.isa = prepared.isa;
  job.int8 = true;
  job.args = prepared.args;
  job.args.y = y;
  return job;
}

// The units the pool splits a job into: tiles of rows for the int8 kernels, rows otherwise.
int64_t units(const RowJob& job) {
  return job.int8 ? detail::int8_tile_layout(*job.w).tiles : job.w->rows;
}

// Units [r0, r1) of the job's weight. `scratch` holds at least w.cols floats (row kernels; int8 tiles
// use none).
void run_rows(const RowJob& job, int64_t r0, int64_t r1, std::span<float> scratch) {
  if (job.int8 && int8_vnni(job.isa))
    detail::tiles_int8(*job.w, job.args, r0, r1);
  else if (job.int8)
    detail::tiles_int8_avx2(*job.w, job.args, r0, r1);
  else if (job.isa == Isa::Avx512)
    detail::rows_avx512(*job.w, job.args, r0, r1, scratch);
  else if (job.isa == Isa::Avx2)
    detail::rows_avx2(*job.w, job.args, r0, r1, scratch);
  else
    detail::rows_portable(*job.w, job.args, r0, r1, scratch);
}

// All units of several jobs as one loop over the pool (one wake-up and one tail for all of them): units
// are numbered through the jobs in order and each chunk is cut at job boundaries.
void run_jobs(std::span<const RowJob> jobs, ThreadPool& pool) {
  int64_t total = 0, scratch_cols = 0;  // scratch: for the row kernels only, the int8 tiles need none
  size_t bytes = 0;
  bool tiled = false;
  for (const RowJob& job : jobs) {
    total += units(job);
    if (!job.int8) scratch_cols = std::max(scratch_cols, job.w->cols);
    bytes += job.w->bytes();
    tiled = tiled || job.int8;
  }
  auto body = [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(static_cast<size_t>(scratch_cols));  // per chunk, never per row
    int64_t first = 0;                                              // global index of the job's unit 0
    for (const RowJob& job : jobs) {
      const int64_t n = units(job);
      const int64_t r0 = std::max(begin, first) - first, r1 = std::min(end, first + n) - first;
      if (r0 < r1) run_rows(job, r0, r1, scratch);
      first += n;
    }
  };
  if (bytes < kParallelBytes || pool.size() == 1)
    body(0, total);
  else
    pool.parallel_for(total, body, tiled ? 1 : 8);  // a tile is 16 rows
}

// Matrix-matrix path (prefill). Each thread owns a range of output rows. For a block of kRowBlock rows and
// kDepth columns it dequantizes the weights once into panels of kTileN rows (stored column-major, so the
// tile kernel reads kTileN consecutive floats per column), then sweeps all T activation rows in tiles of
// kTileM. The panels (64 KB) stay in L2 and each x tile (6 KB) in L1 while it is reused across panels.
constexpr int64_t kRowBlock = 64;
constexpr int64_t kDepth = 256;

void run_tiles(const WeightMatrix& w, const float* x, float* y, int64_t T, ThreadPool& pool, Isa isa) {
  // The AVX2 tile kernel also serves the AVX-512 path (a wider tile did not pay yet).
  const auto tile = isa == Isa::Portable ? detail::tile_portable : detail::tile_avx2;
  auto body = [&](int64_t r_begin, int64_t r_end) {
    std::vector<float> panels(static_cast<size_t>(kRowBlock * kDepth));
    std::vector<float> row(static_cast<size_t>(kDepth));
    std::array<float, kTileM * kTileN> c{};
    std::array<const float*, kTileM> xrows{};
    for (int64_t r0 = r_begin; r0 < r_end; r0 += kRowBlock) {
      const int64_t nr = std::min(kRowBlock, r_end - r0);
      const int64_t npanels = (nr + kTileN - 1) / kTileN;
      for (int64_t k0 = 0; k0 < w.cols; k0 += kDepth) {
        const int64_t kc = std::min(kDepth, w.cols - k0);
        for (int64_t i = 0; i < npanels * kTileN; ++i) {
          float* panel = panels.data() + (i / kTileN) * kDepth * kTileN + i % kTileN;
          if (i < nr) {
            detail::dequantize_span(w, r0 + i, k0, std::span(row.data(), static_cast<size_t>(kc)));
            for (int64_t k = 0; k < kc; ++k) panel[k * kTileN] = row[k];
          } else {
            for (int64_t k = 0; k < kc; ++k) panel[k * kTileN] = 0;  // padding rows, results dropped
          }
        }
        for (int64_t t0 = 0; t0 < T; t0 += kTileM) {
          const int64_t nt = std::min<int64_t>(kTileM, T - t0);
          // Rows past T repeat the last row; their results are dropped, so the kernel needs no edge case.
          for (int i = 0; i < kTileM; ++i) xrows[i] = x + std::min(t0 + i, T - 1) * w.cols + k0;
          for (int64_t p = 0; p < npanels; ++p) {
            tile(xrows.data(), panels.data() + p * kDepth * kTileN, kc, c.data());
            const int64_t rp = r0 + p * kTileN;
            const int64_t nj = std::min<int64_t>(kTileN, r0 + nr - rp);
            for (int64_t i = 0; i < nt; ++i) {
              float* yr = y + (t0 + i) * w.rows + rp;
              const float* cr = c.data() + i * kTileN;
              if (k0 == 0)
                for (int64_t j = 0; j < nj; ++j) yr[j] = cr[j];
              else
                for (int64_t j = 0; j < nj; ++j) yr[j] += cr[j];
            }
          }
        }
      }
    }
  };
  pool.parallel_for(w.rows, body, kTileN);
}

}  // namespace

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::Avx2:
      return cpu_has_avx2();
    case Isa::Avx512:
      return cpu_has_avx512();
    default:
      return true;
  }
}

namespace {
// Whether QuantDot::Int8 applies to this weight on this path.
bool use_int8(const WeightMatrix& w, Isa isa, const MatmulOptions& options) {
  return options.dot == QuantDot::Int8 && (isa == Isa::Avx512 || isa == Isa::Avx2) && int8_dot_supported() &&
         int8_dot_takes(w);
}

constexpr std::string_view kNoPrefetch = "-noprefetch";  // path-name suffix: MatmulOptions::prefetch off
}  // namespace

std::optional<MatmulOptions> parse_matmul_path(std::string_view name) {
  const bool prefetch = !name.ends_with(kNoPrefetch);
  if (!prefetch) name.remove_suffix(kNoPrefetch.size());
  std::optional<MatmulOptions> options;
  if (name == "auto") options = MatmulOptions{};
  if (name == "portable") options = MatmulOptions{Isa::Portable};
  if (name == "avx2") options = MatmulOptions{Isa::Avx2};
  if (name == "avx512") options = MatmulOptions{Isa::Avx512};
  if (name == "int8") options = MatmulOptions{Isa::Auto, QuantDot::Int8};
  if (name == "int8-avx512") options = MatmulOptions{Isa::Avx512, QuantDot::Int8};
  if (name == "int8-avx2") options = MatmulOptions{Isa::Avx2, QuantDot::Int8};
  if (options) options->prefetch = prefetch;
  return options;
}

std::string matmul_path_name(const MatmulOptions& options) {
  std::string name;
  if (options.dot == QuantDot::Int8)
    name = options.isa == Isa::Avx512 ? "int8-avx512" : options.isa == Isa::Avx2 ? "int8-avx2" : "int8";
  else if (options.isa == Isa::Portable)
    name = "portable";
  else if (options.isa == Isa::Avx2)
    name = "avx2";
  else if (options.isa == Isa::Avx512)
    name = "avx512";
  else
    name = "auto";
  return options.prefetch ? name : name + std::string(kNoPrefetch);
}

bool int8_dot_supported() {
  return cpu_has_avx2();
}

bool int8_vnni_supported() {
  return cpu_has_vnni();
}

bool int8_dot_takes(const WeightMatrix& w) {
  return int8_dot_format(w) && w.tiles != nullptr;
}

bool int8_dot_format(const WeightMatrix& w) {
  return detail::int8_format(w) && w.data != nullptr && w.scales != nullptr && w.biases != nullptr;
}

void matmul(const WeightMatrix& w, const float* x, float* y, int64_t T, ThreadPool& pool,
            const MatmulOptions& options) {
  const WeightMatrix* ws[] = {&w};
  float* ys[] = {y};
  matmul_many(ws, x, ys, T, pool, options);
}

void matmul_many(std::span<const WeightMatrix* const> ws, const float* x, std::span<float* const> ys,
                 int64_t T, ThreadPool& pool, const MatmulOptions& options) {
  require(ws.size() == ys.size(), "matmul_many needs one output per weight");
  for (const WeightMatrix* w : ws) validate(*w);
  require(T >= 0, str("matmul got a negative row count T = ", T));
  if (T == 0 || ws.empty()) return;
  require(x != nullptr, "matmul needs an input buffer");
  for (float* y : ys) require(y != nullptr, "matmul needs output buffers");
  const Isa isa = resolve(options.isa);
  if (T > kMaxRowKernelT) {
    for (size_t i = 0; i < ws.size(); ++i) run_tiles(*ws[i], x, ys[i], T, pool, isa);
    return;
  }
  std::vector<RowJob> jobs;
  jobs.reserve(ws.size());  // no reallocation: a job's RowArgs may point into an earlier job's buffers
  for (size_t i = 0; i < ws.size(); ++i) {
    const bool int8 = use_int8(*ws[i], isa, options);
    const RowJob* same_x = nullptr;  // an earlier int8 job whose rounded x this weight can read as is
    for (const RowJob& job : jobs)
      if (int8 && job.int8 && same_int8_x(*job.w, *ws[i])) same_x = &job;
    jobs.push_back(same_x ? share_rows(*same_x, *ws[i], ys[i])
                          : prepare_rows(*ws[i], x, ys[i], T, isa, int8, options.prefetch));
  }
  run_jobs(jobs, pool);
}

void matmul(const WeightMatrix& w, const float* x, float* y, int64_t T, ThreadPool& pool, Isa isa) {
  matmul(w, x, y, T, pool, MatmulOptions{isa, QuantDot::Exact});
}

void matmul(const WeightMatrix& w, const float* x, float* y, int64_t T, ThreadPool& pool) {
  matmul(w, x, y, T, pool, Isa::Auto);
}

void dequantize_row(const WeightMatrix& w, int64_t row, float* out) {
  validate(w);
  require(row >= 0 && row < w.rows, str("row ", row, " is outside the matrix (0..", w.rows - 1, ")"));
  detail::dequantize_span(w, row, 0, std::span(out, static_cast<size_t>(w.cols)));
}

}  // namespace mtplx::cpu

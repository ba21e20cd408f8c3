// y = x W^T for T > 8 rows (prefill) with Hopper's warpgroup MMAs (wgmma, sm_90a), for MLX affine 8- and
// 4-bit codes: the same arithmetic as gemm_mma (matmul_mma.cu) — exact integer codes times activations
// split into two fp16 halves (x P = hi + lo), fp32 sums per 64-column slice, scale and bias applied per
// slice in fp32 — on an instruction that keeps a whole warpgroup's 64 x 128 tile in flight.
//
// Roles: the weights are the A operand (64 rows per warpgroup), built in registers from the codes as gemm_mma
// builds its B fragments (a lane holds columns 16c + 4s .. + 3 of rows g and g + 8 for k step s); the split
// activations are the B operand, read by the tensor cores from shared memory (K-major, 128-byte swizzle: a
// token's 64 hi values of a slice are one 128-byte row), hi and lo as two instructions into one product. So
// the output tile is transposed: a thread holds weight rows and token columns.
//
// Block: 128 weight rows x 128 tokens, warp-specialised. A producer warp fills 4 shared-memory stages, one
// 64-column slice each: the activation tile in one bulk copy (the split kernel writes it in the operand's
// swizzled form), the codes, scales, biases and sums by cp.async, each stage completing on an mbarrier. Two
// consumer warpgroups of 64 rows take the stages as they land, each at its own pace (full/empty barriers, no
// block barrier), so one warpgroup's scaling overlaps the other's MMAs: per slice 8 wgmma (4 k steps x hi,
// lo) into a fresh fp32 product, a wait, then acc += scale * product + bias * sum(x).
// (Why this form: docs/benchmarks.md, "Prefill on warpgroup MMAs": a lockstep form with a block barrier per
// slice, at 128 or 256 rows a block, and two products in flight per warpgroup measured slower or no faster.)
#include <algorithm>

#include "backend/cuda/device_util.cuh"
#include "backend/cuda/matmul_mma.h"
#include "backend/cuda/mma_util.cuh"

namespace mtplx::cuda {
namespace {

constexpr int kRowsPerMma = 64;                   // the wgmma M: weight rows of one warpgroup's product
constexpr int kBlockTokens = 128;                 // the wgmma N
constexpr int kConsumers = 2;                     // consumer warpgroups
constexpr int kRows = kConsumers * kRowsPerMma;   // weight rows per block
constexpr int kThreads = (kConsumers + 1) * 128;  // and the producer warpgroup
constexpr int kStages = 4;
constexpr int kPlaneBytes = kBlockTokens * 128;  // one slice of hi (or lo) for the block's tokens
static_assert(kBlockTokens == kTileTokens && 2 * kPlaneBytes == kTileBytes, "a stage holds one split tile");
// A stage: the hi plane, the lo plane (each 1024-byte aligned, as the swizzle needs), the codes, then the
// scales, biases and activation sums; rounded up to 1024 bytes.
template <int kBits>
constexpr int stage_bytes() {
  const int bytes = 2 * kPlaneBytes + kRows * slice_row_bytes<kBits>() + (2 * kRows + kBlockTokens) * 4;
  return (bytes + 1023) / 1024 * 1024;
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// Shared-memory matrix descriptor of a K-major operand with 128-byte swizzle: rows of 128 bytes, 8-row groups
// 1024 bytes apart (the stride field); the leading-dimension field is unused for this layout (1 by custom).
__device__ __forceinline__ uint64_t swizzled_descriptor(const void* shared) {
  const auto address = static_cast<uint64_t>(__cvta_generic_to_shared(shared));
  return ((address & 0x3FFFF) >> 4) | (uint64_t{1} << 16) | (uint64_t{1024 >> 4} << 32) | (uint64_t{1} << 62);
}

__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}
// Until at most `Pending` committed groups of this warpgroup's wgmma are still running.
template <int Pending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(Pending) : "memory");
}
// Keeps the compiler from moving reads of d across the asynchronous MMA's issue and wait.
__device__ __forceinline__ void pin(float (&d)[64]) {
#pragma unroll
  for (float& v : d) asm volatile("" : "+f"(v)::"memory");
}

// d (+)= A B for a 64 x 128 x 16 step: A from registers (this thread's fragment), B from shared memory.
// accumulate = false writes d = A B.
__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[64], const uint32_t (&a)[4], uint64_t b,
                                                 bool accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "{%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]),
        "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
        "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]),
        "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]),
        "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]),
        "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]),
        "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate ? 1 : 0));
}
#endif

// This thread's A fragments for the 4 k steps of a slice, from the codes of rows `row` and row + 8:
// frag[s] = {row, columns 16c + 4s + 0, 1 | row + 8, the same | row, + 2, 3 | row + 8, + 2, 3}.
template <int kBits>
__device__ __forceinline__ void code_fragments(const uint8_t* codes, int row, int c, uint32_t (&frag)[4][4]) {
  constexpr int kRowBytes = slice_row_bytes<kBits>();
  uint32_t top[kBits / 2], bottom[kBits / 2];
  lane_code_words<kBits>(codes + row * kRowBytes, c, top);
  lane_code_words<kBits>(codes + (row + 8) * kRowBytes, c, bottom);
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    const uint2 t = code_pairs<kBits>(top, s), b = code_pairs<kBits>(bottom, s);
    frag[s][0] = t.x, frag[s][1] = b.x, frag[s][2] = t.y, frag[s][3] = b.y;
  }
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// Queues a stage's slice for block rows `row`, row + 8 (this thread's; the warpgroup's 64 from the warp's
// first): 8 wgmma (4 k steps x hi, lo) into a fresh product `part`, committed as one group.
template <int kBits>
__device__ __forceinline__ void issue_slice(const uint8_t* stage, int row, int c, float (&part)[64]) {
  uint32_t frag[4][4];
  code_fragments<kBits>(stage + 2 * kPlaneBytes, row, c, frag);
  wgmma_fence();
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    wgmma_m64n128k16(part, frag[s], swizzled_descriptor(stage + 32 * s), s > 0);
    wgmma_m64n128k16(part, frag[s], swizzled_descriptor(stage + kPlaneBytes + 32 * s), true);
  }
  wgmma_commit();
}

// Once slice j's product has landed in `part`: acc += scale * part + bias * sum(x) per token, with the
// scales, biases and sums the stage holds.
template <int kBits>
__device__ __forceinline__ void finish_slice(const uint8_t* stage, const GemmArgs& a, int64_t n0, int row,
                                             int c, int64_t j, float (&acc)[64], float (&part)[64]) {
  const auto* words =
      reinterpret_cast<const uint32_t*>(stage + 2 * kPlaneBytes + kRows * slice_row_bytes<kBits>());
  const auto* sums = reinterpret_cast<const float*>(words + 2 * kRows);
  const int64_t groups = a.cols / a.group_size, group = j * kSlice / a.group_size;
  float scale[2], bias[2];
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const float2 scale_bias = stage_scale_bias(words, kRows, row + 8 * e, a, n0, groups, group);
    scale[e] = scale_bias.x;
    bias[e] = scale_bias.y;
  }
  pin(part);
  // part[4i + e]: weight row `row` + 8 (e / 2), token 8i + 2c + e % 2.
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    const float2 xs = *reinterpret_cast<const float2*>(sums + 8 * i + 2 * c);
#pragma unroll
    for (int e = 0; e < 4; ++e)
      acc[4 * i + e] =
          fmaf(scale[e / 2], part[4 * i + e], fmaf(bias[e / 2], e % 2 ? xs.y : xs.x, acc[4 * i + e]));
  }
}

// y for weight row n and n + 8 of this thread's tokens m0 + 8i + 2c + {0, 1}, times 1 / P of each token.
__device__ __forceinline__ void store_rows(const float (&acc)[64], const GemmArgs& a, int64_t n, int64_t m0,
                                           int c) {
#pragma unroll
  for (int i = 0; i < 16; ++i)
#pragma unroll
    for (int t = 0; t < 2; ++t) {
      const int64_t m = m0 + 8 * i + 2 * c + t;
      if (m >= a.T) continue;
      const float inverse = a.inverse[m];
#pragma unroll
      for (int e = 0; e < 2; ++e)
        if (n + 8 * e < a.rows) a.y[m * a.rows + n + 8 * e] = acc[4 * i + 2 * e + t] * inverse;
    }
}

// A producer lane's share of the cp.async copies of a stage (codes, scales, biases, sums), as sources at
// slice 0 worked out once: per slice only an offset is added (one producer warp issues them all, so their
// address arithmetic is on the critical path).
template <int kBits>
struct ProducerLane {
  static constexpr int kRowBytes = slice_row_bytes<kBits>();
  static constexpr int kChunks = kRows * kRowBytes / 16 / 32, kScales = kRows / 32, kSums = kBlockTokens / 32;
  // 32-bit offsets, so the lane fits the few registers the producer warpgroup keeps: gemm_wgmma_supported
  // keeps a matrix's codes (its last row block included) and a split's sums within them.
  uint32_t code;             // chunk lane (row lane / (kRowBytes / 16)): byte offset at slice 0
  uint32_t code_step;        // from chunk lane + 32k to lane + 32 (k + 1): rows of bytes
  uint32_t last_code;        // the same chunk of the matrix's last row (rows past the matrix repeat it)
  uint32_t group0[kScales];  // row lane + 32k: the index of its first group's scale
  uint32_t sum[kSums];       // token lane + 32k: index of its slice-0 sum

  __device__ ProducerLane(const GemmArgs& a, int64_t n0, int64_t m0, int lane) {
    const int64_t weight_row_bytes = a.cols * kBits / 8, groups = a.cols / a.group_size;
    constexpr int kPerRow = kRowBytes / 16;
    code = static_cast<uint32_t>((n0 + lane / kPerRow) * weight_row_bytes + lane % kPerRow * 16);
    code_step = static_cast<uint32_t>(32 / kPerRow * weight_row_bytes);
    last_code = static_cast<uint32_t>((a.rows - 1) * weight_row_bytes + lane % kPerRow * 16);
#pragma unroll
    for (int k = 0; k < kScales; ++k)
      group0[k] = static_cast<uint32_t>(std::min(n0 + lane + 32 * k, a.rows - 1) * groups);
#pragma unroll
    for (int k = 0; k < kSums; ++k)
      sum[k] = static_cast<uint32_t>(std::min(m0 + lane + 32 * k, a.T - 1) * (a.cols / kSlice));
  }

  // Slice j into a stage's codes (then scales, biases, sums behind them, as finish_slice reads them).
  __device__ void load(uint8_t* codes, const GemmArgs& a, int64_t j, int lane) const {
#pragma unroll
    for (int k = 0; k < kChunks; ++k)
      copy_async16(codes + (lane + 32 * k) * 16,
                   a.w + min(code + k * code_step, last_code) + static_cast<uint32_t>(j) * kRowBytes);
    auto* words = reinterpret_cast<uint32_t*>(codes + kRows * kRowBytes);
    const auto group = static_cast<uint32_t>(j * kSlice / a.group_size);
#pragma unroll
    for (int k = 0; k < kScales; ++k) {
      const uint32_t offset = scale_word_offset(group0[k] + group, a.scale_dtype);
      copy_async4(words + lane + 32 * k, a.scales + offset);
      copy_async4(words + kRows + lane + 32 * k, a.biases + offset);
    }
#pragma unroll
    for (int k = 0; k < kSums; ++k)
      copy_async4(words + 2 * kRows + lane + 32 * k, a.sums + sum[k] + static_cast<uint32_t>(j));
  }
};

// The activation tile of slice j for token tile `tile` (SplitLayout::kTiles).
__device__ __forceinline__ const uint8_t* activation_tile(const GemmArgs& a, int64_t tile, int64_t j) {
  return reinterpret_cast<const uint8_t*>(a.split) + (tile * (a.cols / kSlice) + j) * kTileBytes;
}

// 1024-byte aligned start of dynamic shared memory (the swizzle works on address bits).
__device__ __forceinline__ uint8_t* aligned_shared(uint8_t* raw) {
  return raw + ((1024 - (__cvta_generic_to_shared(raw) & 1023)) & 1023);
}

// mbarrier operations on a shared-memory barrier word.
__device__ __forceinline__ unsigned shared_address(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void barrier_init(uint64_t* bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(shared_address(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void barrier_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(shared_address(bar)) : "memory");
}
__device__ __forceinline__ void barrier_arrive_expect_bytes(uint64_t* bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(shared_address(bar)), "r"(bytes)
               : "memory");
}
// An arrival once this thread's earlier cp.async copies have landed (counted in the barrier's init count).
__device__ __forceinline__ void barrier_arrive_after_copies(uint64_t* bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(shared_address(bar)) : "memory");
}
__device__ __forceinline__ void barrier_wait(uint64_t* bar, unsigned parity) {
  unsigned done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(shared_address(bar)), "r"(parity)
        : "memory");
  } while (done == 0);
}
// `bytes` from global to shared memory on the bulk copy engine, completing on `bar`.
__device__ __forceinline__ void bulk_copy(void* shared, const void* global, unsigned bytes, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
          shared_address(shared)),
      "l"(global), "r"(bytes), "r"(shared_address(bar))
      : "memory");
}
#endif

// Why the producer is a warpgroup of its own (one warp copies): so that it can hand registers to the
// consumers (setmaxnreg); at 384 threads a block the compiler caps every thread at 168, under what a
// consumer holds (128 accumulators and product registers).
template <int kBits>
__global__ void __launch_bounds__(kThreads, 1) gemm_wgmma_kernel(GemmArgs a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int kStage = stage_bytes<kBits>();
  constexpr int kProducerRegisters = 40, kConsumerRegisters = 232;
  // Within what the block holds at launch: kThreads at the compiler's cap (65,536 / kThreads in steps of 8).
  static_assert(128 * kProducerRegisters + kConsumers * 128 * kConsumerRegisters <=
                kThreads * ((65536 / kThreads) & ~7));
  extern __shared__ uint8_t shared_raw[];
  uint8_t* shared = aligned_shared(shared_raw);
  auto* full = reinterpret_cast<uint64_t*>(shared + kStages * kStage);  // stage landed
  uint64_t* empty = full + kStages;                                     // stage read by all 8 consumer warps
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t n0 = int64_t{blockIdx.x} * kRows, m0 = int64_t{blockIdx.y} * kBlockTokens;
  const int64_t slices = a.cols / kSlice;
  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) {
      barrier_init(&full[s], 32 + 1);  // the producer's lanes after their copies, and the bulk copy's arrival
      barrier_init(&empty[s], kConsumers * 4);
    }
    // The copy engine, which completes the bulk copies on these barriers, sees them initialised.
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  begin_dependent();
  if (warp >= kConsumers * 4) {  // the producer warpgroup
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(kProducerRegisters));
    if (warp > kConsumers * 4) return;
    const ProducerLane<kBits> sources(a, n0, m0, lane);
    for (int64_t j = 0; j < slices; ++j) {
      const int s = static_cast<int>(j % kStages);
      if (j >= kStages) barrier_wait(&empty[s], static_cast<unsigned>((j / kStages - 1) & 1));
      uint8_t* base = shared + s * kStage;
      if (lane == 0) {
        barrier_arrive_expect_bytes(&full[s], kTileBytes);
        bulk_copy(base, activation_tile(a, blockIdx.y, j), kTileBytes, &full[s]);
      }
      sources.load(base + 2 * kPlaneBytes, a, j, lane);
      barrier_arrive_after_copies(&full[s]);
    }
    return;  // copies still in flight land on their barriers, which the consumers wait for
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(kConsumerRegisters));
  const int c = lane % 4;
  const int row = (warp / 4) * kRowsPerMma + (warp % 4) * 16 + lane / 4;
  float acc[64], part[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = part[i] = 0;  // part: the first MMA of a slice overwrites it
  for (int64_t j = 0; j < slices; ++j) {
    const int s = static_cast<int>(j % kStages);
    barrier_wait(&full[s], static_cast<unsigned>((j / kStages) & 1));
    issue_slice<kBits>(shared + s * kStage, row, c, part);
    wgmma_wait<0>();
    finish_slice<kBits>(shared + s * kStage, a, n0, row, c, j, acc, part);
    __syncwarp();
    if (lane == 0) barrier_arrive(&empty[s]);
  }
  store_rows(acc, a, n0 + row, m0, c);
#else
  __trap();  // gemm_wgmma_supported keeps other devices off this kernel
#endif
}

template <int kBits>
void launch_wgmma(const GemmArgs& args, Queue queue) {
  // The stages (1024-byte aligned, with room to align the first), then a full and an empty barrier each.
  constexpr int kShared = kStages * stage_bytes<kBits>() + 1024 + kStages * 16;
  check(cudaFuncSetAttribute(gemm_wgmma_kernel<kBits>, cudaFuncAttributeMaxDynamicSharedMemorySize, kShared),
        "cudaFuncSetAttribute", "gemm_wgmma");
  const dim3 grid(static_cast<unsigned>((args.rows + kRows - 1) / kRows),
                  static_cast<unsigned>((args.T + kBlockTokens - 1) / kBlockTokens));
  launch(gemm_wgmma_kernel<kBits>, grid, kThreads, kShared, queue, args);
}

}  // namespace

bool gemm_wgmma_supported(const WeightMatrix& w, int64_t T, const Context& context) {
  constexpr int64_t kOffsets = int64_t{1} << 32;  // the producer's 32-bit offsets (ProducerLane)
  return context.wgmma_code && w.cols % kSlice == 0 && w.quantized() && (w.bits == 8 || w.bits == 4) &&
         w.group_size % kSlice == 0 && (w.rows + kRows) * w.cols < kOffsets &&
         T * (w.cols / kSlice) < kOffsets;
}

namespace {

__global__ void sm90a_probe_kernel(int* answer) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  *answer = 1;
#else
  *answer = 0;
#endif
}

}  // namespace

bool wgmma_code_loaded() {
  void* memory = nullptr;
  check(cudaMalloc(&memory, sizeof(int)), "cudaMalloc", "sm_90a probe");
  const DeviceBuffer owned(memory);
  auto* answer = static_cast<int*>(memory);
  int host = 0;
  sm90a_probe_kernel<<<1, 1>>>(answer);
  check(cudaGetLastError(), "sm90a_probe_kernel", "sm_90a probe");
  check(cudaMemcpy(&host, answer, sizeof(int), cudaMemcpyDeviceToHost), "cudaMemcpy", "sm_90a probe");
  return host == 1;
}

void gemm_wgmma(const WeightMatrix& w, const SplitActivations& split, float* y, int64_t T, Queue queue) {
  const GemmArgs args = gemm_args(w, split, y, T);
  if (w.bits == 8)
    launch_wgmma<8>(args, queue);
  else
    launch_wgmma<4>(args, queue);
  check_launch("gemm_wgmma");
}

}  // namespace mtplx::cuda

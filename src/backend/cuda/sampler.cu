// CudaBackend::device_sampler: top-k sampling and speculative acceptance where the logits are, so a sampled
// decode step brings only token ids and the accepted count to the host.
//
// Per draft step: the top-k kernels (top_k.cuh) select the head row's k best entries, and in the same launch
// as the selection's last kernel one warp filters them (temperature, top-p, min-p, renormalised), keeps q
// for the verify and draws the token. Per verify: the top-k kernels over the K + 1 target rows; the block
// that finishes its row last filters every row (a warp per row) into shared memory, and its thread 0 runs
// the acceptance rule (decode/accept.h) and draws the recovered or bonus token. The lanes compute a row's
// weights (exp) and the kept tokens' places; the sums over k <= 132 entries stay on one thread each, in
// the host's order (sampling.cpp, accept.cpp, rng.cpp), so the same uniforms give the same tokens as the
// host path. Measured and replaced (default model, temperature 0.6, H200): the same work as a kernel of its
// own after the selection made decoding 1-8% slower than the host path (one more launch on the critical path
// of every draft and verify).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/device_util.cuh"
#include "backend/cuda/top_k.cuh"
#include "base/error.h"

namespace mtplx {
namespace cuda {
namespace {

constexpr int kMaxRows = 17;  // drafts per cycle (decode/accept.h's kMaxDraftTokens) + 1

struct Filter {
  int k;
  float inv_t;   // 1 / temperature in fp32, as Sampler computes it
  double top_p;  // INFINITY when off: top_p = 1 must not cut anything
  float min_p;
};

// Sampler's weight(): exp((logit - top) / T) of an fp32 argument, widened to double. exp in double then
// rounded to fp32 is the correctly rounded fp32 exp but in rare double-rounding cases.
__device__ __forceinline__ double weight(float logit, float top, float inv_t) {
  const float x = (logit - top) * inv_t;
  return static_cast<double>(static_cast<float>(exp(static_cast<double>(x))));
}

// Shared memory of one row's filter, [k] each; rows are laid out `bytes(k)` apart (a multiple of 8, so every
// row's doubles are aligned for an odd k too).
struct RowSpace {
  int32_t* ids;      // the candidates' ids, best first
  double* w;         // their weights
  int32_t* out_ids;  // the kept tokens, ascending
  float* out_probs;  // their normalised probabilities

  __host__ __device__ static constexpr size_t bytes(int k) {
    return (static_cast<size_t>(k) * (8 + 4 + 4 + 4) + 7) & ~size_t{7};
  }
  // Row r of rows laid out from `base` (8-byte aligned).
  __device__ static RowSpace at(unsigned char* base, int k, int r = 0) {
    auto* w = reinterpret_cast<double*>(base + r * bytes(k));
    auto* ids = reinterpret_cast<int32_t*>(w + k);
    return {ids, w, ids + k, reinterpret_cast<float*>(ids + 2 * k)};
  }
};

// Distribution::normalize's factor: 1 / the fp64 sum of probs[0..n), in fp32.
__device__ float normalizer(const float* probs, int n) {
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += probs[i];
  return static_cast<float>(1.0 / sum);
}

// Sampler::filter_top_k over one row's candidates in global memory (ids and values best first; id -1 ends
// them), by one warp; every lane returns the kept count (0 when the row has no finite best value). The lanes
// compute the weights and each kept token's place in id order; lane 0 walks the sums in the host's order.
__device__ int filter_row(const int32_t* ids, const float* values, const Filter f, RowSpace s) {
  constexpr unsigned kAll = 0xffffffffu;
  const int lane = threadIdx.x & 31;
  const float top = __ldcg(values);  // through L2: other blocks of this launch may have written them
  int valid = 0;                     // valid ids are a prefix
  for (int i = lane; i < f.k; i += 32) {
    const int32_t id = __ldcg(ids + i);
    s.ids[i] = id;
    s.w[i] = id >= 0 ? weight(__ldcg(values + i), top, f.inv_t) : 0.0;
    valid += id >= 0;
  }
  for (int o = 16; o > 0; o >>= 1) valid += __shfl_xor_sync(kAll, valid, o);
  __syncwarp();
  int keep = 0;
  if (lane == 0 && valid > 0 && isfinite(top)) {
    double total = 0;
    for (int i = 0; i < valid; ++i) total += s.w[i];
    double before = 0;
    for (; keep < valid; ++keep) {
      const double w = s.w[keep];
      if (keep > 0 && (before >= f.top_p || w < f.min_p || w == 0)) break;
      before += w / total;
    }
  }
  keep = __shfl_sync(kAll, keep, 0);
  for (int i = lane; i < keep; i += 32) {  // ids are distinct: a token's place is the count of smaller ones
    const int32_t id = s.ids[i];
    int place = 0;
    for (int j = 0; j < keep; ++j) place += s.ids[j] < id;
    s.out_ids[place] = id;
    s.out_probs[place] = static_cast<float>(s.w[i]);
  }
  __syncwarp();
  const float scale = __shfl_sync(kAll, lane == 0 && keep > 0 ? normalizer(s.out_probs, keep) : 0.0f, 0);
  for (int i = lane; i < keep; i += 32) s.out_probs[i] *= scale;
  __syncwarp();
  return keep;
}

// Rng::categorical: the first entry whose running fp64 sum passes uniform x total.
__device__ int categorical(const float* probs, int n, float uniform) {
  double total = 0;
  for (int i = 0; i < n; ++i) total += probs[i];
  const double target = static_cast<double>(uniform) * total;
  double acc = 0;
  for (int i = 0; i < n; ++i) {
    acc += probs[i];
    if (target < acc) return i;
  }
  for (int i = n; i-- > 0;)
    if (probs[i] > 0) return i;
  return 0;
}

// Distribution::prob over ascending ids.
__device__ float prob_of(const int32_t* ids, const float* probs, int n, int32_t token) {
  int lo = 0, hi = n;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (ids[mid] < token)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < n && ids[lo] == token ? probs[lo] : 0.0f;
}

// q of every draft step of a cycle, in device memory.
struct DraftSlots {
  int32_t* ids;    // [max_drafts, k]
  float* probs;    // [max_drafts, k]
  int32_t* count;  // [max_drafts]
};

// Draft step, as the epilogue of the head row's top-k selection (one block; its first warp): filter the
// candidates, draw, and keep q in the step's slot (ids mapped through `map` when trimmed). result[0] = the
// token, or -1 when the row had no finite best value.
struct DrawStep {
  Filter f;
  const int32_t* map;  // null: head rows are token ids
  DraftSlots slots;
  int step;
  float uniform;
  int32_t* result;

  static size_t shared_bytes(int k) { return RowSpace::bytes(k); }

  __device__ void operator()(const int32_t* ids, const float* values) const {
    if (threadIdx.x >= 32) return;
    extern __shared__ __align__(8) unsigned char shared[];
    const RowSpace s = RowSpace::at(shared, f.k);
    const int n = filter_row(ids, values, f, s);
    const int64_t slot = static_cast<int64_t>(step) * f.k;
    for (int i = threadIdx.x; i < n; i += 32) {  // ascending head rows map to ascending token ids
      slots.ids[slot + i] = map != nullptr ? map[s.out_ids[i]] : s.out_ids[i];
      slots.probs[slot + i] = s.out_probs[i];
    }
    if (threadIdx.x != 0) return;
    slots.count[step] = n;
    if (n == 0) {
      result[0] = -1;
      return;
    }
    const int32_t row = s.out_ids[categorical(s.out_probs, n, uniform)];
    result[0] = map != nullptr ? map[row] : row;
  }
};

struct Cycle {
  int drafts;
  bool greedy_drafts;  // q_i is the point mass on drafts[i]
  int32_t tokens[kMaxRows];
  float uniforms[kMaxRows];
};

// Verify, as the epilogue of the target rows' top-k selection (a block per row): the block that finishes
// last (a counter) filters every row and copies q of every draft into shared memory, a warp per row, then
// its thread 0 accepts (verify_sampled) and resets the counter. result[0] = the accepted count, result[1 ..]
// the emitted tokens; result[0] = -1 - r when row r had no finite best value, kNoDraft - i when draft i
// (read from device token slots) is -1, a pick or draw from a row without one (checked for every draft
// first, so a bad draft past a rejection is reported too).
constexpr int32_t kNoDraft = -1000;

struct AcceptStep {
  Filter f;
  DraftSlots slots;
  int draft_k;
  Cycle cycle;
  const int32_t* draft_ids;  // the drafts in device memory (token slots), or null: cycle.tokens
  unsigned* finished;        // blocks done; 0 between launches
  int32_t* result;

  // A RowSpace per target row, q of each draft (ids, probs), the residual.
  static size_t shared_bytes(int rows, int k, int draft_k) {
    return rows * RowSpace::bytes(k) + static_cast<size_t>(rows - 1) * draft_k * 8 +
           static_cast<size_t>(k) * 8;
  }

  __device__ void operator()(const int32_t* ids, const float* values) const {
    __shared__ bool last;
    if (threadIdx.x == 0) {
      __threadfence();  // this row's candidates before the count
      last = atomicAdd(finished, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    accept_all(ids, values);
  }

  __device__ void accept_all(const int32_t* ids, const float* values) const {
    extern __shared__ __align__(8) unsigned char shared[];
    const int rows = cycle.drafts + 1, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const auto row_space = [&](int r) { return RowSpace::at(shared, f.k, r); };
    auto* q_ids = reinterpret_cast<int32_t*>(shared + rows * RowSpace::bytes(f.k));
    auto* q_probs = reinterpret_cast<float*>(q_ids + cycle.drafts * draft_k);
    auto* res_ids = reinterpret_cast<int32_t*>(q_probs + cycle.drafts * draft_k);  // [k]
    auto* res_probs = reinterpret_cast<float*>(res_ids + f.k);                     // [k]
    __shared__ int p_count[kMaxRows];
    for (int r = warp; r < rows; r += blockDim.x / 32) {
      const int n = filter_row(ids + r * f.k, values + r * f.k, f, row_space(r));
      if (lane == 0) p_count[r] = n;
      if (!cycle.greedy_drafts && r < cycle.drafts)
        for (int i = lane; i < slots.count[r]; i += 32) {
          q_ids[r * draft_k + i] = slots.ids[int64_t{r} * draft_k + i];
          q_probs[r * draft_k + i] = slots.probs[int64_t{r} * draft_k + i];
        }
    }
    __syncthreads();
    if (threadIdx.x != 0) return;
    *finished = 0;
    for (int r = 0; r < rows; ++r) {
      if (p_count[r] == 0) {
        result[0] = -1 - r;
        return;
      }
    }
    const auto draft = [&](int i) { return draft_ids != nullptr ? draft_ids[i] : cycle.tokens[i]; };
    for (int i = 0; i < cycle.drafts; ++i) {  // every draft, also those past a rejection
      if (draft(i) < 0) {
        result[0] = kNoDraft - i;
        return;
      }
    }
    for (int i = 0; i < cycle.drafts; ++i) {
      const int32_t d = draft(i);
      const RowSpace p = row_space(i);
      const float one = 1.0f;
      const int32_t* qi_ids = cycle.greedy_drafts ? &d : q_ids + i * draft_k;
      const float* qi_probs = cycle.greedy_drafts ? &one : q_probs + i * draft_k;
      const int qn = cycle.greedy_drafts ? 1 : slots.count[i];
      const float qd = prob_of(qi_ids, qi_probs, qn, d);
      const float pd = prob_of(p.out_ids, p.out_probs, p_count[i], d);
      const float accept_p = qd <= pd ? 1.0f : pd / qd;  // acceptance_probability
      if (cycle.uniforms[i] < accept_p) {
        result[1 + i] = d;
        continue;
      }
      // residual_distribution: (p - q)+ over p's support (ids only in q have p = 0); p itself when empty.
      int m = 0;
      for (int t = 0; t < p_count[i]; ++t) {
        const float diff = p.out_probs[t] - prob_of(qi_ids, qi_probs, qn, p.out_ids[t]);
        if (diff > 0) res_ids[m] = p.out_ids[t], res_probs[m++] = diff;
      }
      if (m == 0)
        for (int t = 0; t < p_count[i]; ++t)
          if (p.out_probs[t] > 0) res_ids[m] = p.out_ids[t], res_probs[m++] = p.out_probs[t];
      const float scale = normalizer(res_probs, m);
      for (int t = 0; t < m; ++t) res_probs[t] *= scale;
      result[1 + i] = res_ids[categorical(res_probs, m, cycle.uniforms[i + 1])];
      result[0] = i;
      return;
    }
    const RowSpace p = row_space(cycle.drafts);
    result[1 + cycle.drafts] =
        p.out_ids[categorical(p.out_probs, p_count[cycle.drafts], cycle.uniforms[cycle.drafts])];
    result[0] = cycle.drafts;
  }
};

Filter filter_of(const TopKFilter& f) {
  return {f.k, 1.0f / f.temperature, f.top_p < 1 ? static_cast<double>(f.top_p) : INFINITY, f.min_p};
}

class CudaSampler final : public DeviceSampler {
 public:
  CudaSampler(Context& ctx, const TopKFilter& target, const TopKFilter* draft,
              std::span<const int32_t> draft_ids, int max_drafts)
      : ctx_(ctx),
        target_(filter_of(target)),
        greedy_drafts_(draft == nullptr),
        host_map_(draft_ids.begin(), draft_ids.end()) {
    if (draft) draft_ = filter_of(*draft);
    const int k = std::max(target_.k, draft_.k);
    const size_t slots = static_cast<size_t>(max_drafts) * draft_.k;
    // ids and probs of q, q's counts, candidates of up to max_drafts + 1 rows, the result, AcceptStep's
    // counter.
    const size_t candidates = static_cast<size_t>(max_drafts + 1) * k;
    const size_t words = 2 * slots + max_drafts + 2 * candidates + (kMaxRows + 1) + 1;
    memory_ = ctx.scratch(words * 4);  // from the pool for the sampler's life (one generation)
    auto* next = static_cast<int32_t*>(memory_.get());
    const auto take = [&](size_t n) {
      int32_t* p = next;
      next += n;
      return p;
    };
    slots_.ids = take(slots);
    slots_.probs = reinterpret_cast<float*>(take(slots));
    slots_.count = take(max_drafts);
    cand_ids_ = take(candidates);
    cand_values_ = reinterpret_cast<float*>(take(candidates));
    result_ = take(kMaxRows + 1);
    finished_ = reinterpret_cast<unsigned*>(take(1));
    MTPLX_CUDA_CHECK(cudaMemsetAsync(finished_, 0, sizeof(unsigned), ctx.stream));
    max_drafts_ = max_drafts;
    // Dynamic shared memory of the selection's last kernel with each epilogue, set once (past 48 KB a kernel
    // must ask; CudaBackend::device_sampler checks the device's limit).
    using top_k_detail::top_k_rows_kernel;
    check(
        cudaFuncSetAttribute(top_k_rows_kernel<AcceptStep>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(AcceptStep::shared_bytes(max_drafts + 1, target_.k, draft_.k))),
        "cudaFuncSetAttribute", "device sampler");
    check(cudaFuncSetAttribute(top_k_rows_kernel<DrawStep>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(DrawStep::shared_bytes(draft_.k))),
          "cudaFuncSetAttribute", "device sampler");
  }

  int32_t draw_draft(const Tensor& head_logits, int step, float uniform) override {
    queue_draw(head_logits, step, uniform, host_path_map(), result_);
    const int32_t token = fetch(1)[0];
    require(token >= 0, "logits have no finite maximum (all -inf, NaN or +inf)", "draft sampler");
    return token;
  }

  void draw_draft_into(const Tensor& head_logits, int step, float uniform, TokenSlots& slots,
                       int slot) override {
    // The slots hold the same id map on the device (DraftHead::token_slots): no copy of the sampler's own.
    const int32_t* map = host_map_.empty() ? nullptr : slot_id_map(slots, std::ssize(host_map_));
    queue_draw(head_logits, step, uniform, map, slot_ids(slots, slot, 1));
  }

  int accept(const Tensor& logits, std::span<const int32_t> drafts, std::span<const float> uniforms,
             std::span<int32_t> tokens, TokenSlots* draft_slots) override {
    const int rows = static_cast<int>(drafts.size()) + 1;
    require(rows <= kMaxRows && rows <= max_drafts_ + 1 && logits.rows == rows &&
                uniforms.size() >= static_cast<size_t>(rows) && tokens.size() >= static_cast<size_t>(rows),
            "internal error: accept's rows, drafts, uniforms and tokens disagree");
    require(top_k_fits(rows, logits.cols, target_.k),
            "internal error: target top-k past the device's limits");
    Cycle cycle{};
    cycle.drafts = rows - 1;
    cycle.greedy_drafts = greedy_drafts_;
    std::copy(drafts.begin(), drafts.end(), cycle.tokens);
    std::copy(uniforms.begin(), uniforms.begin() + rows, cycle.uniforms);
    const int32_t* draft_ids = draft_slots != nullptr ? slot_ids(*draft_slots, 0, rows - 1) : nullptr;
    const AcceptStep verify{target_, slots_, draft_.k, cycle, draft_ids, finished_, result_};
    queue_top_k(ctx_, logits.data, rows, logits.cols, target_.k, cand_ids_, cand_values_, verify,
                AcceptStep::shared_bytes(rows, target_.k, draft_.k));
    const int32_t* out = fetch(rows + 1);
    require(out[0] > kNoDraft,
            str("draft ", kNoDraft - out[0],
                " has no token: its logits row had no finite maximum (all -inf, NaN or +inf)"),
            "device sampler");
    require(out[0] >= 0, str("target row ", -1 - out[0], " has no finite maximum (all -inf, NaN or +inf)"),
            "device sampler");
    std::copy(out + 1, out + 2 + out[0], tokens.begin());
    return out[0];
  }

 private:
  // Draft `step`'s draw from its head row into *token (device memory).
  void queue_draw(const Tensor& head_logits, int step, float uniform, const int32_t* map, int32_t* token) {
    require(!greedy_drafts_ && step >= 0 && step < max_drafts_,
            "internal error: draw_draft on a greedy-draft sampler or past its depth");
    require(top_k_fits(1, head_logits.cols, draft_.k),
            "internal error: draft top-k past the device's limits");
    const DrawStep draw{draft_, map, slots_, step, uniform, token};
    queue_top_k(ctx_, head_logits.data, 1, head_logits.cols, draft_.k, cand_ids_, cand_values_, draw,
                DrawStep::shared_bytes(draft_.k));
  }

  // The draft id map on the device for draws that come to the host (null for a full head), uploaded on the
  // first: drafts kept in token slots use the slots' copy.
  const int32_t* host_path_map() {
    if (host_map_.empty() || map_ != nullptr) return static_cast<const int32_t*>(map_.get());
    map_ = ctx_.scratch(host_map_.size() * sizeof(int32_t));
    MTPLX_CUDA_CHECK(cudaMemcpyAsync(map_.get(), host_map_.data(), host_map_.size() * sizeof(int32_t),
                                     cudaMemcpyHostToDevice, ctx_.stream));
    return static_cast<const int32_t*>(map_.get());
  }

  // The first n result words (the step's one wait for the device).
  const int32_t* fetch(int n) {
    const size_t bytes = static_cast<size_t>(n) * sizeof(int32_t);
    std::memcpy(host_.data(), ctx_.read_back(result_, bytes), bytes);
    return host_.data();
  }

  Context& ctx_;
  Filter target_;
  Filter draft_{0, 1, INFINITY, 0};
  bool greedy_drafts_;
  int max_drafts_ = 0;
  std::shared_ptr<void> memory_;
  DraftSlots slots_{};
  int32_t* cand_ids_ = nullptr;
  float* cand_values_ = nullptr;
  int32_t* result_ = nullptr;
  unsigned* finished_ = nullptr;   // AcceptStep's counter
  std::vector<int32_t> host_map_;  // the trimmed head's ids (empty: a full head)
  std::shared_ptr<void> map_;      // host_map_ on the device, once a draw needs it there
  std::array<int32_t, kMaxRows + 1> host_{};
};

}  // namespace
}  // namespace cuda

std::unique_ptr<DeviceSampler> CudaBackend::device_sampler(const TopKFilter& target, const TopKFilter* draft,
                                                           std::span<const int32_t> draft_ids,
                                                           int max_drafts) {
  require(max_drafts >= 0 && max_drafts < cuda::kMaxRows,
          "internal error: device_sampler takes <= 16 drafts");
  if (!cuda::top_k_fits(max_drafts + 1, target.columns, target.k) ||
      (draft != nullptr && !cuda::top_k_fits(1, draft->columns, draft->k)))
    return nullptr;
  // The verify's epilogue holds every row's candidates and every q in shared memory: past the device's
  // limit for one block (227 KB on Hopper, less 1 KB for the kernels' static arrays) the host path serves.
  int limit = 0;
  MTPLX_CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, ctx_->device));
  if (cuda::AcceptStep::shared_bytes(max_drafts + 1, target.k, draft ? draft->k : 0) + 1024 >
      static_cast<size_t>(limit))
    return nullptr;
  return std::make_unique<cuda::CudaSampler>(*ctx_, target, draft, draft_ids, max_drafts);
}

}  // namespace mtplx

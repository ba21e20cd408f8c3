// bench_cuda: batch-1 speed of checkpoints on the CUDA backend, against the memory roofline.
//
//   bench_cuda --model DIR [--model DIR ...] [--prefill 512,4096] [--decode 128] [--repeats 3]
//   [--prefill-only 1] [--matmul-only 1] [--draft-only 1]
//
// Per model:
//   bytes/token   weight bytes one AR decode step reads: every trunk matrix and vector, the final norm, the
//                 LM head and one embedding row (as bench_decode counts them; the GDN state and KV cache
//                 are not counted).
//   roofline      copy bandwidth / bytes per token, with the copy bandwidth measured in the same run by a
//                 device-to-device copy kernel (bytes read + written).
//   ar            decode steps after a 16-token prompt: forward(1) + full logits row + the greedy token
//                 picked on the GPU (Backend::greedy_tokens; only the id is downloaded), and in the same
//                 process with the row downloaded and the argmax taken on the host (as before 2026-11-26);
//                 t/s and % of roofline; with step graphs (the default) and in the same process with every
//                 op queued from the host (graphs off), without programmatic dependent launch, with the MLP's
//                 gate and up as two GEMVs and a silu_mul kernel (before the paired GEMV), with the
//                 projections that share an input on parallel streams (before one grouped GEMV), with the
//                 classic GEMV, with the loop norm kernels, with both, with merged projections one after
//                 another, with the T = 1 GEMV's first weights loaded before / after the PDL wait, and with
//                 the classic GEMV's warps per row group forced to 1, 2, 4, and with the logits downloaded
//                 straight into pageable memory (CudaBackend::set_pinned_downloads), with 4-bit codes at one
//                 row on the classic GEMV and with the classic GEMV keeping one chunk in flight per lane
//                 (both as before 2026-11-27); and sampled (temperature 0.6, top-k 20, top-p 0.95: the
//                 artifacts' default) from the downloaded row, from the row's top-20 picked on the GPU
//                 (Backend::top_k), or drawn on the GPU (Backend::device_sampler).
//   logits row    download of a ready logits row, pageable and through pinned staging, and the host argmax;
//                 the host sampler's filter over the row; top-20 on the GPU and the filter over those.
//   matmul        single matmuls of the step's shapes at T = 1, 3, 8, cycling through that matrix of every
//                 layer (weights from device memory, not L2): classic GEMV, the default, the classic GEMV
//                 with one chunk in flight per lane (classic-1), and forced variants
//                 of the word-interleaved GEMV (CudaBackend::set_gemv), and the tensor-core GEMV (mma,
//                 matmul_imma.cu: 2 slices in flight per warp, mma-dN: N; mma-global: its activations read
//                 from global memory, not shared); --matmul-only 1: these rows alone (for profilers).
//   verify N      one captured forward of N rows + logits + the greedy tokens of the N rows picked on the
//                 GPU, rolled back, N = 1..5 (median ms and the ratio to N = 1), with the classic GEMV and
//                 loop norm kernels, with 8-bit codes at 2..4 rows on the classic GEMV (as at a0e9d0a), with
//                 the GEMV's first weights after the PDL wait, with the rows downloaded (the host's argmax
//                 not timed, as before), with each row's top-20 picked on the GPU, with the tensor-core GEMV
//                 (every width, from 2 rows, large matrices off), with the interleaved GEMV's registers as
//                 the compiler chose (before 2026-11-29) and under register bound 2, then the default.
//   draft         one MTP head step (mtp_forward of one slot + the draft head's logits + download), median
//                 ms and the ratio to one AR step, for the full, q4, trimmed (vocab / 8 rows) and trimmed +
//                 4-bit (trim:N:q4) draft heads;
//                 the same with the greedy token picked on the GPU, and sampled (t 0.7, top-k 20, top-p 0.95)
//                 from the downloaded row, from the top-20 picked on the GPU, or drawn on the GPU (the
//                 device sampler, q kept there); the greedy step with 4-bit
//                 codes at one row on the classic GEMV, with the classic GEMV unpipelined, and with the
//                 step's input copied before the graph instead of in its params kernel (as before
//                 2026-11-27), and its split (MTP forward, head GEMV, pick); greedy and device-sampled drafts
//                 as the generator runs them, 1..4 steps with the ids kept on the GPU and one wait at the
//                 end (ms per step).
//                 --draft-only 1: the AR step and these rows alone.
//   rollback      a 3-row verify's rollback to 1 row: in one copy_blocks launch, and a copy per state tensor.
//   projected     MTP speedup from these step costs at published acceptance (see docs/benchmarks.md):
//                 E[tokens/cycle] / ((K t_draft + t_verify(K+1)) / t_AR), for each head with t_draft the
//                 downloaded-logits step and ("greedy chained") the per-step time of 3 chained greedy steps.
//   ppN           prefill of N tokens + the logits of the last row; t/s = N / time (one run past 8192); with
//                 the paths before 2026-11-26 and with the tensor-core GEMM, tiled attention and the GDN
//                 column kernel added in turn (the default has all three), and the split of the longest
//                 one's time over the backend's ops (bench/op_timer.h; --prefill-only 1: these rows alone).
// Every time is wall-clock around work that ends with a download (a host sync), after one warm-up run.
#include <algorithm>
#include <cstdio>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/timing.h"
#include "bench_common.h"
#include "io/checkpoint.h"
#include "model/qwen35.h"
#include "op_timer.h"
#if MTPLX_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#include "decode/accept.h"
#include "decode/draft_head.h"
#include "decode/rng.h"
#include "decode/sampling.h"
#endif

namespace mtplx {
namespace {

using namespace bench;  // NOLINT: the shared benchmark helpers

struct Args {
  std::vector<std::string> models;
  std::vector<int> prefill = {512, 4096};
  int decode = 128;
  int repeats = 3;
  bool prefill_only = false;  // --prefill-only 1: load, then the prefill rows alone
  bool matmul_only = false;   // --matmul-only 1: load, then the single-matmul rows alone (for profilers)
  bool draft_only = false;    // --draft-only 1: load, then the AR step and the draft rows alone
};

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    require(i + 1 < argc, str("option ", key, " needs a value"), "", "see the usage in bench/bench_cuda.cpp");
    const std::string value = argv[++i];
    if (key == "--model")
      a.models.push_back(value);
    else if (key == "--prefill")
      a.prefill = parse_int_list(value);
    else if (key == "--decode")
      a.decode = std::stoi(value);
    else if (key == "--repeats")
      a.repeats = std::stoi(value);
    else if (key == "--prefill-only")
      a.prefill_only = value == "1";
    else if (key == "--matmul-only")
      a.matmul_only = value == "1";
    else if (key == "--draft-only")
      a.draft_only = value == "1";
    else
      fail(str("unknown option ", key), "",
           "options: --model --prefill --decode --repeats --prefill-only --matmul-only --draft-only");
  }
  require(!a.models.empty(), "no --model given", "", "pass --model DIR (repeatable)");
  require(a.repeats >= 1 && a.decode >= 1, "--repeats and --decode must be at least 1");
  return a;
}

#if MTPLX_HAVE_CUDA

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Prefill of N tokens + the logits of the last row: as before 2026-11-26 (fp32 tiled GEMM, attention with a
// block per row and head, GDN on the block kernel), with each later path added in turn (the mma.sync GEMM,
// tiled attention, the GDN column kernel, the warpgroup-MMA GEMM, attention tiles on tensor cores, GDN in
// chunks: the default); then where the default's time goes, op by op.
void bench_prefill(CudaBackend& gpu, const Checkpoint& ckpt, Qwen35Model& model, const Args& args) {
  const int64_t V = model.config().vocab_size;
  std::vector<float> host(static_cast<size_t>(V));
  struct Variant {
    const char* what;
    bool mma, tiles, columns;    // set_mma_gemm, set_attention_tiles, set_gdn_columns
    int tile_rows = 64;          // set_mma_gemm
    bool wgmma = false;          // set_wgmma_gemm
    bool attention_mma = false;  // set_attention_mma
    bool gdn_chunks = false;     // set_gdn_chunks
    int64_t chunks_from = 1024;
  };
  for (int n : args.prefill) {
    for (const auto& [what, mma, tiles, columns, tile_rows, wgmma, attention_mma, gdn_chunks, chunks_from] :
         {Variant{" (fp32 tiled GEMM, attention block per row, GDN block kernel: as before)", false, false,
                  false},
          Variant{" (tensor-core GEMM only)", true, false, false},
          Variant{" (tensor-core GEMM, tiled attention)", true, true, false},
          Variant{" (tensor-core GEMM with 128 T rows a block)", true, true, true, 128},
          Variant{" (mma.sync GEMM: the default before the warpgroup-MMA GEMM)", true, true, true},
          Variant{" (warpgroup-MMA GEMM, fp32 attention tiles: the default before tensor-core attention)",
                  true, true, true, 64, true},
          Variant{" (tensor-core attention tiles, GDN token by token)", true, true, true, 64, true, true},
          Variant{" (GDN in chunks from 64 rows)", true, true, true, 64, true, true, true, 64},
          Variant{"", true, true, true, 64, true, true, true}}) {
      gpu.set_mma_gemm(mma, tile_rows);
      gpu.set_wgmma_gemm(wgmma);
      gpu.set_attention_mma(attention_mma);
      gpu.set_gdn_chunks(gdn_chunks, chunks_from);
      gpu.set_attention_tiles(tiles);
      gpu.set_gdn_columns(columns);
      std::vector<double> tps;
      const int runs = n > 8192 ? 1 : args.repeats + 1;
      for (int rep = 0; rep < runs; ++rep) {
        ModelState state = model.new_state(n + 1);
        const auto tokens = prompt(n, V);
        Stopwatch clock;
        const Tensor hidden = model.forward(tokens, state);
        gpu.download(model.logits(hidden.row_view(n - 1, 1)), host);
        if (rep > 0 || runs == 1) tps.push_back(n / clock.seconds());
      }
      std::printf("pp%d%s: %.0f tok/s (%.1f ms)\n", n, what, median(tps), n * 1e3 / median(tps));
    }
  }
  gpu.set_mma_gemm(true);
  gpu.set_wgmma_gemm(true);
  gpu.set_attention_mma(true);
  gpu.set_gdn_chunks(true);
  gpu.set_attention_tiles(true);
  gpu.set_gdn_columns(true);
  // Where the default's time goes at the longest N: every op of one prefill timed on its own (OpTimer waits
  // for the device around each), through a second copy of the model built over the timer.
  const int n = *std::max_element(args.prefill.begin(), args.prefill.end());
  OpTimer timer(gpu, [&] { gpu.synchronize(); });
  Qwen35Model timed(ckpt, timer);
  for (int rep = 0; rep < 2; ++rep) {
    timer.clear();
    ModelState state = timed.new_state(n + 1);
    const auto tokens = prompt(n, V);
    Stopwatch clock;
    const Tensor hidden = timed.forward(tokens, state);
    gpu.download(timed.logits(hidden.row_view(n - 1, 1)), host);
    if (rep == 0) continue;
    const double total = clock.seconds();
    std::vector<std::pair<double, std::string>> ops;
    for (const auto& [name, seconds] : timer.seconds()) ops.push_back({seconds, name});
    std::sort(ops.rbegin(), ops.rend());
    std::printf("pp%d split (ops timed one by one, %.1f ms in all):", n, total * 1e3);
    for (const auto& [seconds, name] : ops)
      std::printf(" %s %.1f ms (%.0f%%)", name.c_str(), seconds * 1e3, 100 * seconds / total);
    std::printf("\n");
  }
}

// Single matmuls of the step's shapes, back to back, cycling through that matrix of every layer (so the
// weights come from device memory, not L2): microseconds per call and GB/s of weight bytes, for the
// classic GEMV, the word-interleaved GEMV as chosen by shape, and with its words per unit (w) and units
// per lane and batch (b) forced.
void bench_matmuls(CudaBackend& gpu, const Qwen35Model& model) {
  std::vector<std::pair<std::string, std::vector<const WeightMatrix*>>> mats = {
      {"lm_head", {&model.weights().lm_head}}};
  const auto add = [&](const char* name, auto pick, LayerKind kind) {
    std::vector<const WeightMatrix*> ws;
    for (const auto& l : model.weights().layers)
      if ((l.kind == LayerKind::kFullAttention) == (kind == LayerKind::kFullAttention)) ws.push_back(pick(l));
    if (!ws.empty()) mats.push_back({name, ws});
  };
  const LayerKind gdn = LayerKind::kLinearAttention, attn = LayerKind::kFullAttention;
  add(
      "gdn.in_proj_qkv", [](const LayerWeights& l) { return &l.gdn.in_proj_qkv; }, gdn);
  add(
      "gdn.in_proj_z", [](const LayerWeights& l) { return &l.gdn.in_proj_z; }, gdn);
  add(
      "gdn.in_proj_a", [](const LayerWeights& l) { return &l.gdn.in_proj_a; }, gdn);
  add(
      "gdn.out_proj", [](const LayerWeights& l) { return &l.gdn.out_proj; }, gdn);
  add(
      "mlp.gate_proj", [](const LayerWeights& l) { return &l.mlp.gate_proj; }, gdn);
  add(
      "mlp.down_proj", [](const LayerWeights& l) { return &l.mlp.down_proj; }, gdn);
  add(
      "attn.q_proj", [](const LayerWeights& l) { return &l.attn.q_proj; }, attn);
  add(
      "attn.k_proj", [](const LayerWeights& l) { return &l.attn.k_proj; }, attn);
  add(
      "attn.o_proj", [](const LayerWeights& l) { return &l.attn.o_proj; }, attn);
  struct Variant {
    const char* name;
    bool classic;
    int batch, words;
    bool mma = false;       // the tensor-core GEMV (pieces pre-pass + matmul_imma.cu)
    bool pipelined = true;  // GemvOptions::pipelined (the classic kernel)
  };
  const Variant variants[] = {
      {"classic", true, 0, 0},       {"interleaved", false, 0, 0},  {"classic-1", true, 0, 0, false, false},
      {"w1b2", false, 2, 1},         {"w1b4", false, 4, 1},         {"w1b8", false, 8, 1},
      {"w2b1", false, 1, 2},         {"w2b2", false, 2, 2},         {"w2b4", false, 4, 2},
      {"w4b1", false, 1, 4},         {"w4b2", false, 2, 4},         {"mma", false, 0, 0, true},
      {"mma-d4", false, 4, 0, true}, {"mma-d8", false, 8, 0, true}, {"mma-global", false, 0, 1, true}};
  for (const auto& [name, ws] : mats) {
    const WeightMatrix& w0 = *ws.front();
    for (int64_t T : {1, 3, 8}) {
      std::printf("matmul %-16s [%6lld x %5lld] q%-2d T=%lld:", name.c_str(), static_cast<long long>(w0.rows),
                  static_cast<long long>(w0.cols), w0.bits, static_cast<long long>(T));
      Tensor x = gpu.alloc(T, w0.cols), y = gpu.alloc(T, w0.rows);
      gpu.fill(x, 0.01f);
      for (const Variant& v : variants) {
        if (w0.bits == 4 && v.words > 1) continue;  // 4-bit codes always take one word per unit
        if (w0.bits == 8 && v.words == 1 && !v.mma) continue;
        gpu.set_gemv(v.classic, v.batch, 0, v.words);
        gpu.set_gemv_mma_from(v.mma ? 1 : 0);
        gpu.set_gemv_mma_large_from(0);  // each column its own kernel
        gpu.set_gemv_pipelined(v.pipelined);
        const int reps = std::max<int>(50, static_cast<int>(ws.size()) * 4);
        for (const WeightMatrix* w : ws) gpu.matmul(*w, x, y);
        gpu.synchronize();
        Stopwatch clock;
        for (int i = 0; i < reps; ++i) gpu.matmul(*ws[static_cast<size_t>(i) % ws.size()], x, y);
        gpu.synchronize();
        const double us = clock.seconds() * 1e6 / reps;
        std::printf("  %s %.1f us %.0f GB/s", v.name, us, static_cast<double>(w0.bytes()) / (us * 1e3));
      }
      gpu.set_gemv(false);
      gpu.set_gemv_mma_from(0);
      gpu.set_gemv_mma_large_from(3);
      gpu.set_gemv_pipelined(true);
      std::printf("\n");
    }
  }
}

// Rollback after a 3-row verify to 1 row (the GDN states after row 0 restored): Qwen35Model::rollback (all
// layers' conv and recurrent states in one copy_blocks launch) against a copy per tensor as before
// 2026-11-28 (two cudaMemcpyAsync per GDN layer). Median of 21 (after one), each waited for.
void bench_rollback(CudaBackend& gpu, Qwen35Model& model, int capacity, int kPrompt, int64_t V) {
  ModelState state = model.new_state(capacity);
  model.forward(prompt(kPrompt, V), state);
  const auto rows = prompt(3, V);
  for (bool one_launch : {true, false}) {
    std::vector<double> us;
    for (int rep = 0; rep < 22; ++rep) {
      model.forward(rows, state, {GdnMode::kAuto, true});
      gpu.synchronize();
      Stopwatch clock;
      if (one_launch) {
        model.rollback(state, 1);
      } else {
        for (LayerState& layer : state.layers) {
          if (layer.recurrent.empty()) continue;
          gpu.copy_rows(layer.conv_rows.row_view(0, 1).reshaped(layer.conv.rows, layer.conv.cols), layer.conv,
                        0);
          gpu.copy_rows(
              layer.recurrent_rows.row_view(0, 1).reshaped(layer.recurrent.rows, layer.recurrent.cols),
              layer.recurrent, 0);
        }
        state.position = state.captured_from + 1;
        state.captured_from = -1;
        state.captured_rows = 0;
      }
      gpu.synchronize();
      if (rep > 0) us.push_back(clock.seconds() * 1e6);
      state.position -= 1;  // the next verify overwrites the same rows
    }
    std::printf("rollback of a 3-row verify to 1 row%s: %.1f us\n",
                one_launch ? " (one copy_blocks launch)" : " (a copy per state tensor, as before)",
                median(us));
  }
}

// Draft step: one MTP slot + draft head logits (downloaded), per draft head; returns (head, ms) of each.
std::vector<std::pair<std::string, double>> bench_drafts(CudaBackend& gpu, Qwen35Model& model, double ar,
                                                         int capacity, int kPrompt) {
  std::vector<std::pair<std::string, double>> drafts;
  if (!model.has_mtp()) return drafts;
  const int64_t V = model.config().vocab_size;
  Distribution dist;
  std::vector<ScoredToken> candidates;
  std::vector<int32_t> ids(static_cast<size_t>(V));
  std::iota(ids.begin(), ids.end(), 0);
  for (const std::string& spec :
       {std::string("full"), std::string("q4"), str("trim:", V / 8), str("trim:", V / 8, ":q4")}) {
    DraftHead head(model, parse_draft_head(spec), ids);
    ModelState state = model.new_state(capacity);
    const auto tokens = prompt(kPrompt, V);
    const Tensor hidden = model.forward(tokens, state);
    // Median ms of one MTP slot + `pick` (the head's work on its output row), over 30 steps after one.
    const auto step_ms = [&](const auto& pick) {
      std::vector<double> ms;
      for (int rep = 0; rep < 31; ++rep) {
        const int32_t token = tokens[rep % kPrompt];
        Stopwatch clock;
        pick(model.mtp_forward(std::span(&token, 1), hidden.row_view(kPrompt - 1, 1), 0, state));
        ms.push_back(clock.seconds() * 1e3);
      }
      ms.erase(ms.begin());
      return median(ms);
    };
    const double draft = step_ms([&](const Tensor& h) {
      if (head.logits(h).empty()) std::printf("?");
    });
    // The same step when the draft is greedy: its token picked where the logits are
    // (DraftHead::greedy_token).
    const auto greedy_pick = [&](const Tensor& h) {
      if (head.greedy_token(h) < 0) std::printf("?");
    };
    const double greedy = step_ms(greedy_pick);
    // The greedy step with one GEMV choice as before 2026-11-27 (the MTP step graph recorded again).
    const auto greedy_as_before = [&](const auto& set) {
      set(true);
      state.graphs->clear();
      const double ms = step_ms(greedy_pick);
      set(false);
      state.graphs->clear();
      return ms;
    };
    const double greedy_classic4 =
        greedy_as_before([&](bool before) { gpu.set_gemv_wide4_from(before ? 2 : 1); });
    const double greedy_unpipelined = greedy_as_before([&](bool before) { gpu.set_gemv_pipelined(!before); });
    const double greedy_input_copy =
        greedy_as_before([&](bool before) { gpu.set_graph_input_in_params(!before); });
    std::printf(
        "draft %s greedy as before: 4-bit codes at one row on the classic GEMV %.3f ms (%.3fx), classic GEMV "
        "not pipelined %.3f ms (%.3fx), the step's input copied before the graph %.3f ms (%.3fx); now %.3f "
        "ms\n",
        spec.c_str(), greedy_classic4, greedy_classic4 * ar / 1e3, greedy_unpipelined,
        greedy_unpipelined * ar / 1e3, greedy_input_copy, greedy_input_copy * ar / 1e3, greedy);
    // A sampled draft (the artifacts' default draft sampler): q from the downloaded row or from the
    // row's top-20 picked on the GPU.
    Sampler draft_sampler({0.7f, 20, 0.95f}, static_cast<int>(head.size()));
    const double sampled_row = step_ms([&](const Tensor& h) { draft_sampler.filter(head.logits(h), dist); });
    const double sampled_top_k = step_ms([&](const Tensor& h) {
      head.top_k(h, 20, candidates);
      draft_sampler.filter_top_k(candidates, dist);
    });
    const TopKFilter draft_filter{20, 0.7f, 0.95f, 0.0f, head.size()};
    const auto device_sampler = gpu.device_sampler(draft_filter, &draft_filter, head.ids(), 1);
    require(device_sampler != nullptr, "no device sampler for the draft head");
    Rng rng(1);
    const double sampled_device =
        step_ms([&](const Tensor& h) { device_sampler->draw_draft(head.project(h), 0, rng.uniform()); });
    drafts.push_back({spec, draft});
    // Drafts as the generator runs them (GenerationConfig::device_draft_ids): `steps` draft steps whose ids
    // stay in token slots (`pick` puts step s's there), each step reading the previous one's there, then
    // one wait for the device (`finish`); median ms per step.
    const auto slots = head.token_slots(kMaxDraftTokens);
    const auto chained_ms = [&](int steps, const auto& pick, const auto& finish) {
      std::vector<double> ms;
      const int32_t placeholder = 0;
      for (int rep = 0; rep < 16; ++rep) {
        const int32_t token = tokens[rep % kPrompt];
        Stopwatch clock;
        Tensor h = model.mtp_forward(std::span(&token, 1), hidden.row_view(kPrompt - 1, 1), 0, state);
        for (int s = 0; s < steps; ++s) {
          pick(h, s);
          const SlotRows previous{slots.get(), s, 0, 1};
          if (s + 1 < steps) h = model.mtp_forward(std::span(&placeholder, 1), h, s + 1, state, &previous);
        }
        finish(steps);
        ms.push_back(clock.seconds() * 1e3 / steps);
      }
      ms.erase(ms.begin());
      return median(ms);
    };
    // Greedy: the ids read at the end. Sampled on the device: each draw left in its slot, then a wait.
    const auto chained_sampler = gpu.device_sampler(draft_filter, &draft_filter, head.ids(), 4);
    require(chained_sampler != nullptr, "no device sampler for the draft head");
    const auto greedy_into_slot = [&](const Tensor& h, int s) { head.greedy_pick(h, *slots, s); };
    const auto draw_into_slot = [&](const Tensor& h, int s) {
      chained_sampler->draw_draft_into(head.project(h), s, rng.uniform(), *slots, s);
    };
    const auto read_ids = [&](int steps) { slots->read(0, steps); };
    const auto wait = [&](int) { gpu.synchronize(); };
    for (const bool picked : {true, false}) {
      std::printf("draft %s %s, ids kept on the device (per step):", spec.c_str(),
                  picked ? "greedy" : "sampled (device sampler)");
      for (const int steps : {1, 2, 3, 4}) {
        const double per_step =
            picked ? chained_ms(steps, greedy_into_slot, read_ids) : chained_ms(steps, draw_into_slot, wait);
        std::printf(" %d steps %.3f ms (%.3fx)%s", steps, per_step, per_step * ar / 1e3,
                    steps < 4 ? "," : "\n");
        if (steps == 3 && picked) drafts.push_back({spec + " greedy chained", per_step});
      }
    }
    // Where a greedy draft step's time goes: the MTP forward alone (graph replay, waited for), then with
    // the head's GEMV (waited for); the rest of the greedy row is the pick and the id's download.
    const double forward = step_ms([&](const Tensor&) { gpu.synchronize(); });
    const double projected = step_ms([&](const Tensor& h) {
      model.project(h, head.matrix());
      gpu.synchronize();
    });
    std::printf("draft %s split: MTP forward %.3f ms, head GEMV %.3f ms, greedy pick + id download %.3f ms\n",
                spec.c_str(), forward, projected - forward, greedy - projected);
    std::printf(
        "draft %s: %.3f ms per MTP step (%.3fx an AR step); greedy draft, token picked on the GPU: "
        "%.3f ms (%.3fx); sampled draft (t 0.7, top-k 20, top-p 0.95), row downloaded: %.3f ms (%.3fx), "
        "top-20 picked on the GPU: %.3f ms (%.3fx), drawn on the GPU (device sampler): %.3f ms (%.3fx)\n",
        spec.c_str(), draft, draft * ar / 1e3, greedy, greedy * ar / 1e3, sampled_row, sampled_row * ar / 1e3,
        sampled_top_k, sampled_top_k * ar / 1e3, sampled_device, sampled_device * ar / 1e3);
  }

  return drafts;
}

void bench_model(const std::string& dir, const Args& args, double copy_bw) {
  CudaBackend gpu(0);
  const Checkpoint ckpt = open_checkpoint(dir);
  Stopwatch load_clock;
  Qwen35Model model(ckpt, gpu);
  gpu.synchronize();
  const double load_s = load_clock.seconds();
  const ModelConfig& c = model.config();
  const uint64_t per_token = decode_bytes_per_token(model.weights());
  const double roofline = copy_bw / static_cast<double>(per_token);
  std::printf("\n## %s\nload %.1f s, %.2f GB on the GPU; bytes/token %.3f GB; roofline %.0f tok/s\n",
              dir.c_str(), load_s, static_cast<double>(gpu.weight_bytes()) / 1e9,
              static_cast<double>(per_token) / 1e9, roofline);
  if (args.prefill_only) {
    bench_prefill(gpu, ckpt, model, args);
    return;
  }
  if (args.matmul_only) {
    bench_matmuls(gpu, model);
    return;
  }
  const int64_t V = c.vocab_size;
  std::vector<float> host(static_cast<size_t>(V));
  const int kPrompt = 16;
  const int capacity = kPrompt + args.decode + 64;

  // AR decode, with step graphs (default) and without; the greedy token picked on the GPU (default) or
  // from the downloaded row on the host; or a sampled token (the artifacts' default target sampler) from
  // the downloaded row, from the row's top-k candidates picked on the GPU, or drawn on the GPU.
  enum class Pick { kGreedyGpu, kGreedyHost, kSampledRow, kSampledTopK, kSampledDevice };
  const SamplerConfig sampled{0.6f, 20, 0.95f};
  Sampler sampler(sampled, static_cast<int>(V));
  const TopKFilter sampled_filter{sampled.top_k, sampled.temperature, sampled.top_p, sampled.min_p, V};
  const auto device_sampler = gpu.device_sampler(sampled_filter, nullptr, {}, 0);
  require(device_sampler != nullptr, "no device sampler for top-k 20");
  Distribution dist;
  std::vector<ScoredToken> candidates;
  Rng rng(1);
  const auto pick_token = [&](const Tensor& logits, Pick pick) -> int32_t {
    switch (pick) {
      case Pick::kGreedyGpu:
        return gpu.greedy_tokens(logits)[0];
      case Pick::kGreedyHost:
        gpu.download(logits, host);
        return argmax(host);
      case Pick::kSampledRow:
        gpu.download(logits, host);
        sampler.filter(host, dist);
        return sample(dist, rng);
      case Pick::kSampledTopK:
        gpu.top_k(logits, sampled.top_k, candidates);
        sampler.filter_top_k(candidates, dist);
        return sample(dist, rng);
      case Pick::kSampledDevice: {
        const float uniform = rng.uniform();
        int32_t token = -1;
        device_sampler->accept(logits, {}, {&uniform, 1}, {&token, 1});
        return token;
      }
    }
    return -1;
  };
  const auto ar_run = [&](bool graphs, Pick pick = Pick::kGreedyGpu) {
    gpu.set_graphs(graphs);
    std::vector<double> tps;
    for (int rep = 0; rep < args.repeats + 1; ++rep) {
      ModelState state = model.new_state(capacity);
      const auto tokens = prompt(kPrompt, V);
      int32_t next =
          gpu.greedy_tokens(model.logits(model.forward(tokens, state).row_view(kPrompt - 1, 1)))[0];
      Stopwatch clock;
      for (int i = 0; i < args.decode; ++i) {
        next = pick_token(model.logits(model.forward(std::span(&next, 1), state)), pick);
      }
      if (rep > 0) tps.push_back(args.decode / clock.seconds());
    }
    return median(tps);
  };
  if (args.draft_only) {
    const double ar = ar_run(true);
    std::printf("ar: %.1f tok/s (median of %d runs of %d steps), %.3f ms/step\n", ar, args.repeats,
                args.decode, 1e3 / ar);
    bench_drafts(gpu, model, ar, capacity, kPrompt);
    return;
  }
  const double ar_plain = ar_run(false);
  gpu.set_pdl(false);
  const double ar_no_pdl = ar_run(true);
  gpu.set_pdl(true);
  gpu.set_gemv(true);
  const double ar_classic = ar_run(true);
  gpu.set_gemv(false);
  gpu.set_vector_norms(false);
  const double ar_loop_norms = ar_run(true);
  gpu.set_gemv(true);
  const double ar_before = ar_run(true);  // both as before this round (issue #5, 2026-11-26)
  gpu.set_gemv(false);
  gpu.set_vector_norms(true);
  gpu.set_concurrent_matmuls(false);
  gpu.set_grouped_matmuls(false);
  const double ar_serial = ar_run(true);
  gpu.set_grouped_matmuls(true);
  gpu.set_concurrent_matmuls(true);
  // Where the T = 1 GEMV loads its first weights relative to the PDL wait, for the classic kernel and the
  // interleaved one forced at T = 1 (docs/benchmarks.md: faster alone, slower in the step).
  gpu.set_gemv_early(-1);
  const double ar_classic_late = ar_run(true);
  gpu.set_gemv(false, 0, 0, 2);
  gpu.set_gemv_early(0);
  const double ar_wide_early = ar_run(true);
  gpu.set_gemv_early(-1);
  const double ar_wide_late = ar_run(true);
  gpu.set_gemv(false);
  gpu.set_gemv_early(0);
  // The classic kernel's warps per row group forced (by shape: 4 up to 1024 row groups, then 2, then 1).
  double ar_classic_warps[3];
  for (int i = 0; i < 3; ++i) {
    gpu.set_gemv(true, 0, 1 << i);
    ar_classic_warps[i] = ar_run(true);
  }
  gpu.set_gemv(false);
  gpu.set_pinned_downloads(false);
  const double ar_pageable = ar_run(true, Pick::kGreedyHost);
  gpu.set_pinned_downloads(true);
  const double ar_host = ar_run(true, Pick::kGreedyHost);
  const double ar_sampled_row = ar_run(true, Pick::kSampledRow);
  const double ar_sampled_top_k = ar_run(true, Pick::kSampledTopK);
  const double ar_sampled_device = ar_run(true, Pick::kSampledDevice);
  gpu.set_gemv_mma_from(1);
  const double ar_mma = ar_run(true);  // every GEMV on the tensor-core kernel
  gpu.set_gemv_mma_from(0);
  gpu.set_paired_mlp(false);
  const double ar_unpaired = ar_run(true);  // MLP gate and up as two GEMVs + silu_mul, as before 2026-11-27
  gpu.set_paired_mlp(true);
  gpu.set_grouped_matmuls(false);
  const double ar_ungrouped = ar_run(true);  // projections that share an input on parallel streams
  gpu.set_grouped_matmuls(true);
  gpu.set_gemv_wide4_from(2);
  const double ar_classic4 =
      ar_run(true);  // 4-bit codes at one row on the classic GEMV, as before 2026-11-27
  gpu.set_gemv_wide4_from(1);
  gpu.set_gemv_pipelined(false);
  const double ar_unpipelined = ar_run(true);  // the classic GEMV one chunk in flight, as before 2026-11-27
  gpu.set_gemv_pipelined(true);
  const double ar = ar_run(true);
  std::printf("ar: %.1f tok/s (median of %d runs of %d steps), %.1f%% of roofline, %.3f ms/step\n", ar,
              args.repeats, args.decode, 100.0 * ar / roofline, 1e3 / ar);
  for (const auto& [what, tps] :
       {std::pair{"without step graphs", ar_plain},
        std::pair{"graphs, 4-bit codes at one row on the classic GEMV (as before)", ar_classic4},
        std::pair{"graphs, classic GEMV with one chunk in flight per lane (as before)", ar_unpipelined},
        std::pair{"graphs, no programmatic dependent launch", ar_no_pdl},
        std::pair{"graphs, MLP gate and up as two GEMVs + silu_mul (as before)", ar_unpaired},
        std::pair{"graphs, projections sharing an input on parallel streams (as before)", ar_ungrouped},
        std::pair{"graphs, classic GEMV", ar_classic},
        std::pair{"graphs, loop norm kernels", ar_loop_norms},
        std::pair{"graphs, classic GEMV and loop norm kernels (as before)", ar_before},
        std::pair{"graphs, merged projections one after another", ar_serial},
        std::pair{"graphs, classic GEMV loading its first weights after the PDL wait (as before)",
                  ar_classic_late},
        std::pair{"graphs, interleaved GEMV at T = 1, first weights before the PDL wait", ar_wide_early},
        std::pair{"graphs, interleaved GEMV at T = 1, first weights after the PDL wait", ar_wide_late},
        std::pair{"graphs, classic GEMV with 1 warp per row group", ar_classic_warps[0]},
        std::pair{"graphs, classic GEMV with 2 warps per row group", ar_classic_warps[1]},
        std::pair{"graphs, classic GEMV with 4 warps per row group", ar_classic_warps[2]},
        std::pair{"graphs, logits downloaded straight into pageable memory, host argmax", ar_pageable},
        std::pair{"graphs, logits downloaded (pinned staging), host argmax (as before)", ar_host},
        std::pair{"graphs, tensor-core GEMV (matmul_imma.cu) for every 8/4-bit matrix", ar_mma},
        std::pair{"graphs, sampled (t 0.6, top-k 20, top-p 0.95), row downloaded, host filter",
                  ar_sampled_row},
        std::pair{"graphs, sampled (t 0.6, top-k 20, top-p 0.95), top-20 picked on the GPU",
                  ar_sampled_top_k},
        std::pair{"graphs, sampled (t 0.6, top-k 20, top-p 0.95), drawn on the GPU (device sampler)",
                  ar_sampled_device}})
    std::printf("ar %s: %.1f tok/s, %.1f%% of roofline, %.3f ms/step\n", what, tps, 100.0 * tps / roofline,
                1e3 / tps);

  // The host's part of an AR step: downloading a ready logits row (pageable / through pinned staging) and
  // the argmax over it, against picking the token on the GPU (two kernels + a 4-byte download).
  {
    const Tensor row = gpu.upload(host, 1, V);
    std::vector<double> ms[7];
    for (int i = 0; i < 21; ++i) {
      for (int pinned = 0; pinned < 2; ++pinned) {
        gpu.set_pinned_downloads(pinned == 1);
        Stopwatch clock;
        gpu.download(row, host);
        ms[pinned].push_back(clock.seconds() * 1e3);
      }
      Stopwatch clock;
      volatile int32_t best = argmax(host);
      ms[2].push_back(clock.seconds() * 1e3);
      Stopwatch gpu_clock;
      best = gpu.greedy_tokens(row)[0];
      ms[3].push_back(gpu_clock.seconds() * 1e3);
      Stopwatch filter_clock;
      sampler.filter(host, dist);
      ms[4].push_back(filter_clock.seconds() * 1e3);
      Stopwatch top_k_clock;
      gpu.top_k(row, sampled.top_k, candidates);
      ms[5].push_back(top_k_clock.seconds() * 1e3);
      Stopwatch candidates_clock;
      sampler.filter_top_k(candidates, dist);
      ms[6].push_back(candidates_clock.seconds() * 1e3);
      (void)best;
    }
    std::printf(
        "logits row (%lld floats): download pageable %.3f ms, pinned staging %.3f ms; host argmax %.3f ms; "
        "greedy token on the GPU %.3f ms; host sampler filter (top-k 20, top-p 0.95) over the row %.3f ms; "
        "top-20 on the GPU %.3f ms, host filter over them %.4f ms\n",
        static_cast<long long>(V), median(ms[0]), median(ms[1]), median(ms[2]), median(ms[3]), median(ms[4]),
        median(ms[5]), median(ms[6]));
  }

  // Where an AR step's time goes: host time to queue the step's ops vs the time until the device is done.
  for (bool graphs : {false, true}) {
    gpu.set_graphs(graphs);
    ModelState state = model.new_state(capacity);
    const auto tokens = prompt(kPrompt, V);
    model.forward(tokens, state);
    std::vector<double> queue_ms, total_ms;
    for (int i = 0; i < 21; ++i) {
      const int32_t next = tokens[i % kPrompt];
      Stopwatch clock;
      const Tensor logits = model.logits(model.forward(std::span(&next, 1), state));
      queue_ms.push_back(clock.seconds() * 1e3);
      gpu.synchronize();
      total_ms.push_back(clock.seconds() * 1e3);
    }
    std::printf(
        "ar step without download (graphs %s): host queues the ops in %.3f ms, device done after %.3f ms\n",
        graphs ? "on" : "off", median(queue_ms), median(total_ms));
  }
  gpu.set_graphs(true);

  // Decode deep into a long context: the attention layers read 32,000 cached rows (which hold zeros: a real
  // 32k prefill takes half a minute here), with split-K attention and without.
  for (bool splits : {false, true}) {
    gpu.set_attention_splits(splits);
    ModelState state = model.new_state(32768);
    state.position = 32000;
    std::vector<double> ms;
    for (int i = 0; i < 17; ++i) {
      const int32_t next = 1 + i;
      Stopwatch clock;
      gpu.download(model.logits(model.forward(std::span(&next, 1), state)), host);
      ms.push_back(clock.seconds() * 1e3);
    }
    ms.erase(ms.begin());
    std::printf("ar at position 32000 (split-K attention %s): %.3f ms/step, %.1f tok/s\n",
                splits ? "on" : "off", median(ms), 1e3 / median(ms));
  }
  gpu.set_attention_splits(true);

  bench_matmuls(gpu, model);

  // Verify widths: captured forward of N rows, logits, download, rollback to 1 row; with the classic GEMV
  // first, then the default.
  std::vector<double> verify_ms(6, 0);
  struct VerifyRun {
    const char* what;
    bool classic;
    int early, wide8_from;
    int pick;  // 0: greedy tokens picked on the GPU; 1: the rows downloaded; 2: each row's top-20 on the GPU
    int mma_from;  // CudaBackend::set_gemv_mma_from: the tensor-core GEMV from this many rows (0: never)
    int mma_large_from = 3;  // CudaBackend::set_gemv_mma_large_from: the same for large matrices only
    int bound = 1;           // CudaBackend::set_gemv_register_bound
  };
  for (const auto& [what, classic, early, wide8_from, pick, mma_from, mma_large_from, bound] :
       {VerifyRun{" (classic GEMV, loop norm kernels)", true, 0, 2, 0, 0, 0},
        VerifyRun{" (8-bit codes at 2..4 rows on the classic GEMV, as at a0e9d0a)", false, 0, 5, 0, 0, 0},
        VerifyRun{" (first GEMV weights after the PDL wait)", false, -1, 2, 0, 0},
        VerifyRun{" (rows downloaded, as before)", false, 0, 2, 1, 0},
        VerifyRun{" (top-20 candidates of each row picked on the GPU, for sampling)", false, 0, 2, 2, 0},
        VerifyRun{" (tensor-core GEMV at every width)", false, 0, 2, 0, 1},
        VerifyRun{" (tensor-core GEMV from 2 rows)", false, 0, 2, 0, 2},
        VerifyRun{" (tensor-core GEMV for large matrices off, as before)", false, 0, 2, 0, 0, 0},
        VerifyRun{" (interleaved GEMV registers as the compiler chose, as before)", false, 0, 2, 0, 0, 3, 0},
        VerifyRun{" (interleaved GEMV register bound 2)", false, 0, 2, 0, 0, 3, 2},
        VerifyRun{"", false, 0, 2, 0, 0}}) {
    gpu.set_gemv(classic);
    gpu.set_vector_norms(!classic);
    gpu.set_gemv_early(early);
    gpu.set_gemv_wide8_from(wide8_from);
    gpu.set_gemv_mma_from(mma_from);
    gpu.set_gemv_mma_large_from(mma_large_from);
    gpu.set_gemv_register_bound(bound);
    ModelState state = model.new_state(capacity);
    const auto tokens = prompt(kPrompt, V);
    model.forward(tokens, state);
    std::vector<float> rows_host(static_cast<size_t>(V * 5));
    for (int n = 1; n <= 5; ++n) {
      std::vector<double> ms;
      for (int rep = 0; rep < 21; ++rep) {
        const auto rows = prompt(n, V);
        Stopwatch clock;
        const Tensor logits = model.logits(model.forward(rows, state, {GdnMode::kAuto, true}));
        if (pick == 1)
          gpu.download(logits, std::span(rows_host.data(), static_cast<size_t>(V * n)));
        else if (pick == 2)
          gpu.top_k(logits, sampled.top_k, candidates);
        else
          gpu.greedy_tokens(logits);
        ms.push_back(clock.seconds() * 1e3);
        model.rollback(state, 1);
        state.position -= 1;  // stay at the same position: the next verify overwrites the same rows
      }
      ms.erase(ms.begin());
      verify_ms[n] = median(ms);
    }
    std::printf("verify%s: ", what);
    for (int n = 1; n <= 5; ++n)
      std::printf("%d rows %.3f ms (%.2fx)%s", n, verify_ms[n], verify_ms[n] / verify_ms[1],
                  n < 5 ? ", " : "\n");
  }
  gpu.set_gemv(false);
  bench_rollback(gpu, model, capacity, kPrompt, V);

  const auto drafts = bench_drafts(gpu, model, ar, capacity, kPrompt);

  // Projected MTP speedup from these step costs at published acceptance (cumulative a_i).
  const double t_ar = 1e3 / ar;
  for (const auto& [who, accept] : std::vector<std::pair<std::string, std::vector<double>>>{
           {"Qwen3.5-4B", {0.667, 0.222}}, {"Qwen3.6-27B", {0.917, 0.837, 0.648}}}) {
    for (const auto& [spec, t_draft] : drafts) {
      std::printf("projected at %s acceptance, %s head:", who.c_str(), spec.c_str());
      double tokens = 1;
      for (size_t k = 1; k <= accept.size() && k + 1 <= 5; ++k) {
        tokens += accept[k - 1];
        const double cycle = (static_cast<double>(k) * t_draft + verify_ms[k + 1]) / t_ar;
        std::printf("  K=%zu %.2fx", k, tokens / cycle);
      }
      std::printf("\n");
    }
  }

  bench_prefill(gpu, ckpt, model, args);
  std::fflush(stdout);
}

int run(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
  require(cuda_device_present(), str("bench_cuda: ", cuda_device_description()), "", "run on a GPU machine");
  std::printf("device: %s\n", cuda_device_description().c_str());
  const double copy_bw = cuda_copy_bandwidth(size_t{1} << 30, 10);
  std::printf("copy bandwidth (1 GiB device-to-device copy kernel, read + write): %.0f GB/s\n",
              copy_bw / 1e9);
  for (const auto& dir : args.models) bench_model(dir, args, copy_bw);
  return 0;
}

#else

int run(int argc, char** argv) {
  parse_args(argc, argv);
  std::fprintf(stderr, "bench_cuda: this build has no CUDA backend (see cmake/cuda.cmake)\n");
  return 1;
}

#endif

}  // namespace
}  // namespace mtplx

int main(int argc, char** argv) {
  return mtplx::bench::guarded_main("bench_cuda", mtplx::run, argc, argv);
}

// bench_decode: CPU prefill and decode speed of checkpoints, as a markdown table.
//
//   bench_decode --model DIR [--model DIR ...] [--threads N] [--prefill 128,512] [--decode 32]
//                [--repeats 3] [--copy-mib 1024] [--isa avx2,avx512,int8] [--split 1]
//
// --isa runs every test on each listed matmul path (auto, portable, avx2, avx512, int8 = QuantDot::Int8
// on AVX-512; any of them with the suffix -noprefetch: no software prefetch), alternating the paths
// repeat by repeat so load from other processes hits them alike; the layout column names the path.
//
// Tests, each repeated on a fresh state (mean ± sample sd over the repeats, after one untimed warm-up):
//   ppN  prefill: one forward over N tokens plus the logits of the last row; t/s = N / time.
//   tgM  decode: after an untimed 16-token prompt, M single-token steps, each a forward, the full logits row
//        and a greedy argmax (no sampler); t/s = M / time.
//
// bytes/token (decode) = the weight bytes one decode step must read:
//     sum over the trunk layers of every matrix (codes + scales + biases, or dense values) and vector
//   + the final norm + the LM head (the embedding matrix when tied) + one embedding row (the gather)
// i.e. weights().weight_bytes - embed.bytes() - (MTP head) + (tied ? lm_head.bytes() : 0) + one row. The
// embedding table is not read beyond that row and the MTP head is not used in plain decoding. Vectors are
// counted as the fp32 copies the CPU backend reads. Activations, the KV cache and the recurrent state are
// not counted there. The last two columns count the recurrent state too, as a step must move it: every GDN
// layer's Hv x Dk x Dv fp32 matrix and K - 1 convolution rows, read and written back (2 x 20.2 MB for
// 0.8B); the KV cache, read up to the step's position, stays out (0.8B: 6 layers x 4 KB a position, ~0.8 MB a
// step in a 32-token decode after a 16-token prompt).
// For prefill the weights are read once per pass, so bytes/token there is that figure / N and the GB/s and
// %-of-copy columns are left empty: prefill is bound by compute, not by memory.
//
// --split 1: after the table, where a decode step's time goes on the first --isa path: the tgM test once
// more through a second copy of the model built over an OpTimer (each op timed on its own), as ms per
// token per op kind and their share of the timed loop (pool hand-offs inside an op count as its time).
//
// GB/s = bytes/token x t/s. Copy bandwidth is measured in the same run with the same thread count before
// every repeat round of the decode test: a multi-threaded memcpy of --copy-mib MiB (larger than every
// cache, best of 5 passes), counted as bytes read + bytes written; the table gives the mean. Read bandwidth
// likewise: every word of --copy-mib MiB read and summed (best of 5 passes). A decode step reads its
// weights and writes next to nothing, so read bandwidth is the bound that matches bytes/token; the copy
// figure was the first one this table reported and stays beside it (on the development VM it comes out
// higher: memcpy's reads and writes together move more bytes than a read stream alone).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "base/error.h"
#include "base/timing.h"
#include "bench_common.h"
#include "io/checkpoint.h"
#include "model/qwen35.h"
#include "op_timer.h"

namespace mtplx {
namespace {

using namespace bench;  // NOLINT: the shared benchmark helpers

struct Args {
  std::vector<std::string> models;
  int threads = 0;
  std::vector<int> prefill = {128, 512};
  int decode = 32;
  int repeats = 3;
  int copy_mib = 1024;
  std::vector<cpu::MatmulOptions> isas = {cpu::MatmulOptions{}};
  bool split = false;
};

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    require(i + 1 < argc, str("option ", key, " needs a value"), "",
            "see the usage in bench/bench_decode.cpp");
    const std::string value = argv[++i];
    if (key == "--model") {
      a.models.push_back(value);
    } else if (key == "--threads") {
      a.threads = std::stoi(value);
    } else if (key == "--prefill") {
      a.prefill = parse_int_list(value);
    } else if (key == "--decode") {
      a.decode = std::stoi(value);
    } else if (key == "--repeats") {
      a.repeats = std::stoi(value);
    } else if (key == "--copy-mib") {
      a.copy_mib = std::stoi(value);
    } else if (key == "--isa") {
      a.isas.clear();
      std::stringstream in(value);
      std::string item;
      while (std::getline(in, item, ',')) {
        const auto path = cpu::parse_matmul_path(item);
        require(path.has_value(), str("unknown --isa value ", item), "",
                "use auto, portable, avx2, avx512, int8 (optionally with the suffix -noprefetch)");
        require(
            cpu::isa_supported(path->isa) && (path->dot == cpu::QuantDot::Exact || cpu::int8_dot_supported()),
            str("--isa ", item, " is not available on this CPU"));
        a.isas.push_back(*path);
      }
      require(!a.isas.empty(), "--isa needs at least one path");
    } else if (key == "--split") {
      a.split = value != "0";
    } else {
      fail(str("unknown option ", key), "",
           "options: --model --threads --prefill --decode --repeats --copy-mib --isa --split");
    }
  }
  require(!a.models.empty(), "no --model given", "", "pass --model DIR (repeatable)");
  require(a.repeats >= 1 && a.decode >= 1, "--repeats and --decode must be at least 1");
  if (a.threads <= 0) a.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return a;
}

// Bytes read + written per second by a multi-threaded memcpy of `mib` MiB (best of 5 passes).
double copy_bandwidth(ThreadPool& pool, int mib) {
  const size_t bytes = static_cast<size_t>(mib) << 20;
  const std::vector<double> seconds = bench::copy_pass_seconds(pool, bytes, 5);
  return 2.0 * static_cast<double>(bytes) / *std::min_element(seconds.begin(), seconds.end());
}

// Bytes read per second by a multi-threaded read of `mib` MiB (best of 5 passes).
double read_bandwidth(ThreadPool& pool, int mib) {
  const size_t bytes = static_cast<size_t>(mib) << 20;
  const std::vector<double> seconds = bench::read_pass_seconds(pool, bytes, 5);
  return static_cast<double>(bytes) / *std::min_element(seconds.begin(), seconds.end());
}

std::string format_of(const WeightMatrix& m) {
  if (!m.quantized()) return std::string(dtype_name(m.dtype));
  return str("q", m.bits, "g", m.group_size);
}

std::string model_name(const Checkpoint& ckpt) {
  const auto& c = ckpt.config;
  if (c.contains("mtplx_synthetic") && c["mtplx_synthetic"].contains("preset")) {
    return c["mtplx_synthetic"]["preset"].get<std::string>() + " (synthetic)";
  }
  return ckpt.dir.filename().string();
}

double time_prefill(Qwen35Model& model, int n) {
  ModelState state = model.new_state(n + 1);
  const auto tokens = prompt(n, model.config().vocab_size);
  Stopwatch clock;
  const Tensor hidden = model.forward(tokens, state);
  const Tensor logits = model.logits(hidden.row_view(n - 1, 1));
  std::vector<float> host(static_cast<size_t>(logits.numel()));
  model.backend().download(logits, host);
  return static_cast<double>(n) / clock.seconds();
}

// `at_start` runs after the untimed prompt, just before the clock starts.
double time_decode(
    Qwen35Model& model, int steps, const std::function<void()>& at_start = [] {}) {
  constexpr int kPrompt = 16;
  ModelState state = model.new_state(kPrompt + steps + 1);
  const auto tokens = prompt(kPrompt, model.config().vocab_size);
  std::vector<float> host(static_cast<size_t>(model.config().vocab_size));
  Tensor logits = model.logits(model.forward(tokens, state).row_view(kPrompt - 1, 1));
  model.backend().download(logits, host);
  at_start();
  Stopwatch clock;
  for (int i = 0; i < steps; ++i) {
    const int32_t next = argmax(host);
    logits = model.logits(model.forward(std::span(&next, 1), state));
    model.backend().download(logits, host);
  }
  return static_cast<double>(steps) / clock.seconds();
}

// The tgM test through an OpTimer (see --split): ms per token per op kind, largest first.
void print_split(const Checkpoint& ckpt, const Args& args, CpuBackend& backend) {
  backend.set_matmul_options(args.isas.front());
  OpTimer timer(backend, [] {});
  Qwen35Model timed(ckpt, timer);
  time_decode(timed, args.decode);  // warm-up
  const double tps = time_decode(timed, args.decode, [&] { timer.clear(); });
  std::vector<std::pair<double, std::string>> ops;
  double in_ops = 0;
  for (const auto& [name, seconds] : timer.seconds()) {
    ops.push_back({seconds, name});
    in_ops += seconds;
  }
  std::sort(ops.rbegin(), ops.rend());
  const double step_ms = 1e3 / tps, per_token = 1e3 / args.decode;
  std::printf(
      "\ntg%d split (%s, ops timed one by one; %.2f ms a token, %.2f ms of it outside ops):", args.decode,
      cpu::matmul_path_name(args.isas.front()).c_str(), step_ms, step_ms - in_ops * per_token);
  for (const auto& [seconds, name] : ops)
    std::printf(" %s %.3f ms (%.0f%%)", name.c_str(), seconds * per_token,
                100 * seconds * per_token / step_ms);
  std::printf("\n\n");
}

struct Row {
  std::string test;
  Stats tps;
  double bytes_per_token = 0;
  bool bandwidth = false;
  double state_bytes_per_token = 0;
};

void print_row(const std::string& prefix, const Row& r, double copy_bw, double read_bw) {
  std::printf("%s | %s | %.2f ± %.2f | %s |", prefix.c_str(), r.test.c_str(), r.tps.mean, r.tps.sd,
              human(r.bytes_per_token).c_str());
  if (r.bandwidth) {
    const double gbs = r.bytes_per_token * r.tps.mean / 1e9;
    const double moved = (r.bytes_per_token + r.state_bytes_per_token) * r.tps.mean;
    std::printf(" %.2f | %.2f | %.0f%% | %.2f | %.0f%% | %s | %.0f%% |\n", gbs, copy_bw / 1e9,
                100.0 * gbs * 1e9 / copy_bw, read_bw / 1e9, 100.0 * gbs * 1e9 / read_bw,
                human(r.bytes_per_token + r.state_bytes_per_token).c_str(), 100.0 * moved / read_bw);
  } else {
    std::printf(" — | — | — | — | — | — | — |\n");
  }
  std::fflush(stdout);
}

void bench_model(const std::string& dir, const Args& args, CpuBackend& backend) {
  const Checkpoint ckpt = open_checkpoint(dir);
  // The int8 paths need the weights' int8 tiles, which the backend builds while loading with Int8 set.
  for (const cpu::MatmulOptions& isa : args.isas)
    if (isa.dot == cpu::QuantDot::Int8) backend.set_matmul_options(isa);
  Qwen35Model model(ckpt, backend);
  const ModelWeights& w = model.weights();
  const std::string layout = str(layout_name(ckpt.layout), " ", format_of(w.layers.front().mlp.gate_proj));
  const double per_token = static_cast<double>(decode_bytes_per_token(w));
  const double state = static_cast<double>(decode_state_bytes_per_token(model.config()));
  auto prefix = [&](const cpu::MatmulOptions& isa) {
    const std::string path = args.isas.size() > 1 ? str(" (", cpu::matmul_path_name(isa), ")") : "";
    return str("| ", model_name(ckpt), " | ", layout, path, " | ", human(static_cast<double>(w.weight_bytes)),
               " | ", args.threads);
  };
  // Each path gets its own untimed warm-up, then the repeats alternate between the paths. Before each
  // round the copy bandwidth is measured again (this machine's drifts by +-20% over minutes); the decode
  // rows are set against the mean of those measurements.
  std::vector<double> copies, reads;
  auto run = [&](const std::string& test, auto&& once) {
    std::fprintf(stderr, "bench_decode: %s %s ...\n", dir.c_str(), test.c_str());
    std::vector<std::vector<double>> samples(args.isas.size());
    for (const cpu::MatmulOptions& isa : args.isas) {
      backend.set_matmul_options(isa);
      once();  // warm-up: page in the weights, size the buffers
    }
    copies.clear();
    reads.clear();
    for (int r = 0; r < args.repeats; ++r) {
      copies.push_back(copy_bandwidth(backend.pool(), args.copy_mib));
      reads.push_back(read_bandwidth(backend.pool(), args.copy_mib));
      for (size_t k = 0; k < args.isas.size(); ++k) {
        backend.set_matmul_options(args.isas[k]);
        samples[k].push_back(once());
      }
    }
    std::vector<Stats> out;
    for (const auto& v : samples) out.push_back(stats(v));
    return out;
  };
  for (int n : args.prefill) {
    const auto s = run(str("pp", n), [&] { return time_prefill(model, n); });
    for (size_t k = 0; k < s.size(); ++k)
      print_row(prefix(args.isas[k]), {str("pp", n), s[k], per_token / n, false}, 0, 0);
  }
  const auto s = run(str("tg", args.decode), [&] { return time_decode(model, args.decode); });
  const Stats copy = stats(copies), read = stats(reads);
  std::fprintf(stderr, "bench_decode: copy / read bandwidth around tg%d: %.2f ± %.2f / %.2f ± %.2f GB/s\n",
               args.decode, copy.mean / 1e9, copy.sd / 1e9, read.mean / 1e9, read.sd / 1e9);
  for (size_t k = 0; k < s.size(); ++k)
    print_row(prefix(args.isas[k]), {str("tg", args.decode), s[k], per_token, true, state}, copy.mean,
              read.mean);
  if (args.split) print_split(ckpt, args, backend);
}

int run(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
  CpuBackend backend(args.threads);
  std::printf(
      "copy bw: %d-thread memcpy of %d MiB (read + write); read bw: %d-thread read of %d MiB; both measured "
      "before each repeat round\n\n",
      args.threads, args.copy_mib, args.threads, args.copy_mib);
  std::printf(
      "| model | layout | size | threads | test | t/s (mean ± sd) | bytes/token | GB/s | copy bw GB/s | %% "
      "of copy bw | read bw GB/s | %% of read bw | bytes/token with state | %% of read bw with state |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& dir : args.models) bench_model(dir, args, backend);
  return 0;
}

}  // namespace
}  // namespace mtplx

int main(int argc, char** argv) {
  return mtplx::bench::guarded_main("bench_decode", mtplx::run, argc, argv);
}

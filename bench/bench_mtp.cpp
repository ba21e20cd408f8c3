// bench_mtp: CPU autoregressive vs native-MTP speculative decoding, as markdown tables.
//
//   bench_mtp --model DIR [--model DIR ...] [--threads N] [--tokens 64] [--repeats 3] [--depths 1,2,3]
//             [--heads full,q4,trim] [--trim N] [--steps 16] [--accept 0.667,0.222]
//             [--cpu-matmul exact|int8]
//
// Per model (each timing: mean ± sample sd over --repeats after one untimed warm-up):
//   Generation  Generator::generate over a 16-token prompt, --tokens tokens, target sampler temperature 0.6,
//               top-p 0.95, top-k 20 (the Qwen3.5 thinking defaults), draft sampler the same. t/s is the
//               decode rate (tokens after the first over decode time); acc@i is the fraction of drafts tested
//               at position i that were accepted; tok/cycle = emitted tokens per verify forward.
//   Steps       the pieces of one cycle, each averaged over --steps calls:
//     AR step     trunk forward of 1 token + LM-head logits + download (what one AR token costs).
//     draft step  one chained MTP step: mtp_forward of 1 row + the draft head's logits + download.
//     verify K+1  trunk forward of K+1 rows with per-row state capture + logits of every row + download +
//                 rollback to 1 row (what verification costs at depth K).
//   Projection  the speedup MTP would give at a given acceptance, from the step times:
//     speedup(K) = E[tokens per cycle] / ((K * draft + verify(K+1)) / AR step)
//     E[tokens per cycle] = 1 + a_1 + ... + a_K, a_i = P(the first i drafts are all accepted)
//   --accept gives a_1, a_2, ... (default: Qwen3.5-4B per MTPLX, 0.667 and 0.222). Depths beyond the given
//   list are not projected. Sampling and the first draft step's cache rewrite (j + 1 rows instead of 1) are
//   left out of the projection; the measured Generation rows include them.
//
// With random weights the measured acceptance is ~0, so the measured MTP rows show the overhead of a cycle
// that almost always emits one token; the projection shows what the same step costs would give a trained
// model.
//
// trim: the draft head keeps --trim rows (default vocab / 8) of a fixed list (token ids ascending): speed
// depends only on the row count, and exactness does not depend on the list.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/device.h"
#include "base/error.h"
#include "base/timing.h"
#include "bench_common.h"
#include "decode/accept.h"
#include "decode/draft_head.h"
#include "decode/generator.h"
#include "io/checkpoint.h"
#include "model/qwen35.h"

namespace mtplx {
namespace {

using namespace bench;  // NOLINT: the shared benchmark helpers

struct Args {
  std::vector<std::string> models;
  int threads = 0;
  int tokens = 64;
  int repeats = 3;
  int steps = 16;
  int64_t trim = 0;
  cpu::QuantDot dot = cpu::QuantDot::Exact;  // --cpu-matmul, as mtplx generate's
  std::vector<int> depths = {1, 2, 3};
  std::vector<std::string> heads = {"full", "q4", "trim"};
  std::vector<double> accept = {0.667, 0.222};
};

template <typename T, typename Parse>
std::vector<T> parse_list(const std::string& text, Parse parse) {
  std::vector<T> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(parse(item));
  }
  return out;
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    require(i + 1 < argc, str("option ", key, " needs a value"), "", "see the usage in bench/bench_mtp.cpp");
    const std::string value = argv[++i];
    const auto to_int = [](const std::string& s) { return std::stoi(s); };
    if (key == "--model") {
      a.models.push_back(value);
    } else if (key == "--threads") {
      a.threads = std::stoi(value);
    } else if (key == "--tokens") {
      a.tokens = std::stoi(value);
    } else if (key == "--repeats") {
      a.repeats = std::stoi(value);
    } else if (key == "--steps") {
      a.steps = std::stoi(value);
    } else if (key == "--trim") {
      a.trim = std::stoll(value);
    } else if (key == "--depths") {
      a.depths = parse_list<int>(value, to_int);
    } else if (key == "--heads") {
      a.heads = parse_list<std::string>(value, [](const std::string& s) { return s; });
    } else if (key == "--accept") {
      a.accept = parse_list<double>(value, [](const std::string& s) { return std::stod(s); });
    } else if (key == "--cpu-matmul") {
      a.dot = parse_quant_dot(value);
    } else {
      fail(str("unknown option ", key), "",
           "options: --model --threads --tokens --repeats --steps --trim --depths --heads --accept "
           "--cpu-matmul");
    }
  }
  require(!a.models.empty(), "no --model given", "", "pass --model DIR (repeatable)");
  require(a.repeats >= 1 && a.tokens >= 2 && a.steps >= 1, "--repeats, --steps >= 1 and --tokens >= 2");
  for (int d : a.depths)
    require(d >= 1 && d <= kMaxDraftTokens, str("depth ", d, " out of range"), "--depths");
  if (a.threads <= 0) a.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return a;
}

constexpr int kPrompt = 16;

// A state holding the prompt in the trunk and in the MTP cache, with room for `extra` more positions.
struct Primed {
  ModelState state;
  Tensor hidden;  // [1, H] the last prompt row (post final norm)
};

Primed prime(Qwen35Model& model, int64_t extra) {
  Primed p;
  p.state = model.new_state(kPrompt + extra + 1);
  const auto tokens = prompt(kPrompt, model.config().vocab_size);
  const Tensor hidden = model.forward(tokens, p.state);
  if (model.has_mtp()) {
    // Slot t pairs tokens[t + 1] with hidden[t]: fill slots 0..kPrompt-2, as the generator does after
    // prefill.
    model.mtp_forward(std::span(tokens).subspan(1), hidden.row_view(0, kPrompt - 1), 0, p.state);
  }
  p.hidden = hidden.row_view(kPrompt - 1, 1);
  return p;
}

// Seconds per AR step: 1-token forward + logits + download.
double time_ar_step(Qwen35Model& model, int steps) {
  Primed p = prime(model, steps);
  std::vector<float> host(static_cast<size_t>(model.config().vocab_size));
  Stopwatch clock;
  for (int i = 0; i < steps; ++i) {
    const int32_t token = 7 + i;
    model.backend().download(model.logits(model.forward(std::span(&token, 1), p.state)), host);
  }
  return clock.seconds() / steps;
}

// Seconds per chained draft step: 1-row mtp_forward + draft-head logits (downloaded by DraftHead).
double time_draft_step(Qwen35Model& model, DraftHead& head, int steps) {
  Primed p = prime(model, steps);
  Tensor h = p.hidden;
  int64_t position = kPrompt - 1;
  Stopwatch clock;
  for (int i = 0; i < steps; ++i) {
    const int32_t token = 7 + i;
    h = model.mtp_forward(std::span(&token, 1), h, position++, p.state);
    head.logits(h);
  }
  return clock.seconds() / steps;
}

// Seconds per verify of K+1 rows: captured forward + logits of every row + download + rollback to 1 row.
// One untimed verify first: it sizes the state's per-row capture buffers (K+1 copies of every GDN state),
// which a generation does once, in its first cycle, and then reuses.
double time_verify(Qwen35Model& model, int k, int steps) {
  Primed p = prime(model, steps + k + 2);
  std::vector<int32_t> rows(static_cast<size_t>(k + 1));
  std::vector<float> host(static_cast<size_t>((k + 1) * model.config().vocab_size));
  const auto verify = [&](int i) {
    std::iota(rows.begin(), rows.end(), 7 + i);
    const Tensor hidden = model.forward(rows, p.state, {GdnMode::kAuto, true});
    model.backend().download(model.logits(hidden), host);
    model.rollback(p.state, 1);
  };
  verify(0);
  Stopwatch clock;
  for (int i = 1; i <= steps; ++i) verify(i);
  return clock.seconds() / steps;
}

GenerationConfig generation_config(int depth, int tokens) {
  GenerationConfig c;
  c.target.temperature = 0.6f;
  c.target.top_p = 0.95f;
  c.target.top_k = 20;
  c.draft = c.target;
  c.mtp_depth = depth;
  c.max_tokens = tokens;
  c.seed = 1;
  return c;
}

std::string model_name(const Checkpoint& ckpt) {
  const auto& c = ckpt.config;
  if (c.contains("mtplx_synthetic") && c["mtplx_synthetic"].contains("preset")) {
    return c["mtplx_synthetic"]["preset"].get<std::string>() + " (synthetic, " +
           std::string(layout_name(ckpt.layout)) + ")";
  }
  return ckpt.dir.filename().string();
}

double expected_tokens(const std::vector<double>& accept, int k) {
  double e = 1;
  for (int i = 0; i < k; ++i) e += accept[static_cast<size_t>(i)];
  return e;
}

void bench_model(const std::string& dir, const Args& args, CpuBackend& backend) {
  const Checkpoint ckpt = open_checkpoint(dir);
  Qwen35Model model(ckpt, backend);
  const std::string name = model_name(ckpt);
  require(model.has_mtp(), str(name, " has no MTP head"), dir, "bench a checkpoint with mtp.* weights");
  const int64_t vocab = model.config().vocab_size;
  std::vector<int32_t> ids(static_cast<size_t>(vocab));
  std::iota(ids.begin(), ids.end(), 0);
  const int64_t trim = args.trim > 0 ? std::min(args.trim, vocab) : std::max<int64_t>(1, vocab / 8);
  const auto progress = [&](const std::string& what) {
    std::fprintf(stderr, "bench_mtp: %s %s ...\n", dir.c_str(), what.c_str());
  };
  const auto prompt_tokens = prompt(kPrompt, vocab);
  const int max_depth = *std::max_element(args.depths.begin(), args.depths.end());

  progress("steps");
  const Stats ar = measure(args.repeats, [&] { return time_ar_step(model, args.steps); });
  std::vector<Stats> verify;
  for (int k = 1; k <= max_depth; ++k) {
    verify.push_back(measure(args.repeats, [&] { return time_verify(model, k, args.steps); }));
  }

  std::printf("\n### %s (vocab %lld, %d threads)\n\n", name.c_str(), static_cast<long long>(vocab),
              args.threads);
  std::printf("| step | ms (mean ± sd) | × AR step |\n|---|---|---|\n");
  std::printf("| AR step (1 row) | %.3f ± %.3f | 1.00 |\n", ar.mean * 1e3, ar.sd * 1e3);
  for (int k = 1; k <= max_depth; ++k) {
    const Stats& v = verify[static_cast<size_t>(k - 1)];
    std::printf("| verify %d rows (K=%d) | %.3f ± %.3f | %.2f |\n", k + 1, k, v.mean * 1e3, v.sd * 1e3,
                v.mean / ar.mean);
  }

  struct HeadRow {
    std::string head;
    Stats draft;
  };
  std::vector<HeadRow> heads;
  std::vector<std::string> generation_rows;
  progress("generate AR");
  const Stats ar_tps = measure(args.repeats, [&] {
    Generator generator(model, nullptr);
    return generator.generate(prompt_tokens, generation_config(0, args.tokens))
        .stats.decode_tokens_per_second();
  });
  char row[256];
  std::snprintf(row, sizeof row, "| AR | — | %.2f ± %.2f | 1.00 | — | 1.00 |", ar_tps.mean, ar_tps.sd);
  generation_rows.push_back(row);
  for (const auto& head_name : args.heads) {
    const std::string spec_text = head_name == "trim" ? str("trim:", trim) : head_name;
    DraftHead head(model, parse_draft_head(spec_text), ids);
    progress("draft step " + spec_text);
    heads.push_back(
        {spec_text, measure(args.repeats, [&] { return time_draft_step(model, head, args.steps); })});
    Generator generator(model, &head);
    for (int depth : args.depths) {
      progress(str("generate ", spec_text, " depth ", depth));
      GenerationStats last;
      const Stats tps = measure(args.repeats, [&] {
        last = generator.generate(prompt_tokens, generation_config(depth, args.tokens)).stats;
        return last.decode_tokens_per_second();
      });
      std::string acc;
      for (int i = 0; i < depth; ++i) {
        char cell[32];
        std::snprintf(cell, sizeof cell, "%s%.3f", i ? " / " : "", last.acceptance(i));
        acc += cell;
      }
      char line[256];
      std::snprintf(line, sizeof line, "| MTP K=%d | %s | %.2f ± %.2f | %.2f | %s | %.2f |", depth,
                    spec_text.c_str(), tps.mean, tps.sd, tps.mean / ar_tps.mean, acc.c_str(),
                    last.tokens_per_cycle());
      generation_rows.push_back(line);
    }
  }
  std::printf("\n| draft head | rows | draft step ms (mean ± sd) | × AR step |\n|---|---|---|---|\n");
  for (const auto& h : heads) {
    std::printf("| %s | %lld | %.3f ± %.3f | %.2f |\n", h.head.c_str(),
                static_cast<long long>(h.head.starts_with("trim") ? trim : vocab), h.draft.mean * 1e3,
                h.draft.sd * 1e3, h.draft.mean / ar.mean);
  }
  std::printf("\nGeneration (%d tokens, last repeat's acceptance):\n\n", args.tokens);
  std::printf("| mode | draft head | t/s (mean ± sd) | × AR | acc@1 / @2 / @3 | tok/cycle |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (const auto& r : generation_rows) std::printf("%s\n", r.c_str());

  std::printf("\nProjected speedup at acceptance a =");
  for (double a : args.accept) std::printf(" %.3f", a);
  std::printf(
      " (cumulative per position):\n\n| draft head | K | E[tokens/cycle] | cycle cost (× AR step) |"
      " projected speedup |\n|---|---|---|---|---|\n");
  for (const auto& h : heads) {
    for (int k : args.depths) {
      if (k > static_cast<int>(args.accept.size())) continue;
      const double cost = (k * h.draft.mean + verify[static_cast<size_t>(k - 1)].mean) / ar.mean;
      const double e = expected_tokens(args.accept, k);
      std::printf("| %s | %d | %.3f | %.2f | %.2f× |\n", h.head.c_str(), k, e, cost, e / cost);
    }
  }
  std::fflush(stdout);
}

int run(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
  CpuBackend backend(args.threads);
  require(args.dot != cpu::QuantDot::Int8 || cpu::int8_dot_supported(),
          "--cpu-matmul int8 needs AVX2, which this CPU lacks", "--cpu-matmul");
  backend.set_quant_dot(args.dot);
  for (const auto& dir : args.models) bench_model(dir, args, backend);
  return 0;
}

}  // namespace
}  // namespace mtplx

int main(int argc, char** argv) {
  return mtplx::bench::guarded_main("bench_mtp", mtplx::run, argc, argv);
}

// mtplx logits: trunk (and MTP head) logits for a token sequence, as JSON.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "backend/device.h"
#include "base/error.h"
#include "commands.h"
#include "generation_options.h"
#include "io/checkpoint.h"
#include "model/qwen35.h"
#include "token_list.h"

namespace mtplx::cli {
namespace {

// Prints rows of a [rows, cols] tensor as a JSON array of arrays with float precision.
void print_rows(Backend& backend, const Tensor& t) {
  std::vector<float> host(t.numel());
  backend.download(t, host);
  std::fputc('[', stdout);
  for (int64_t r = 0; r < t.rows; ++r) {
    std::fputs(r ? ",[" : "[", stdout);
    for (int64_t c = 0; c < t.cols; ++c) std::printf(c ? ",%.9g" : "%.9g", host[r * t.cols + c]);
    std::fputc(']', stdout);
  }
  std::fputc(']', stdout);
}

}  // namespace

void add_logits_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("logits", "Print trunk (and MTP) logits for a token sequence as JSON");
  auto model_dir = std::make_shared<std::string>();
  auto tokens_text = std::make_shared<std::string>();
  auto with_mtp = std::make_shared<bool>(false);
  auto threads = std::make_shared<int>(0);
  auto device = std::make_shared<std::string>("auto");
  auto cpu_matmul = std::make_shared<std::string>("exact");
  cmd->add_option("--model", *model_dir, "Checkpoint folder")->required();
  cmd->add_option("--tokens", *tokens_text, "Comma-separated token ids")->required();
  cmd->add_flag("--mtp", *with_mtp, "Also print the MTP head's logits for slots 0..T-2");
  cmd->add_option("--threads", *threads, "CPU threads (0 = all)");
  cmd->add_option("--device", *device,
                  "Where the model runs: auto (CUDA when built with it and a GPU is present), cpu, cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  add_cpu_matmul_option(*cmd, *cpu_matmul);
  cmd->callback([=] {
    const auto tokens = parse_token_ids(*tokens_text);
    const Checkpoint ckpt = open_checkpoint(*model_dir);
    const std::unique_ptr<Backend> backend_ptr =
        make_backend(*device, *threads, parse_quant_dot(*cpu_matmul));
    Backend& backend = *backend_ptr;
    Qwen35Model model(ckpt, backend);
    require(!*with_mtp || model.has_mtp(), "--mtp given but the checkpoint has no MTP head", *model_dir);
    ModelState state = model.new_state(static_cast<int64_t>(tokens.size()) + 1);
    const Tensor hidden = model.forward(tokens, state);
    std::fputs("{\"logits\":", stdout);
    print_rows(backend, model.logits(hidden));
    if (*with_mtp) {
      // Slot t pairs token t+1 with the trunk hidden at t, at RoPE position t.
      std::fputs(",\"mtp_logits\":", stdout);
      const auto slots = static_cast<int64_t>(tokens.size()) - 1;
      if (slots > 0) {
        const std::vector<int32_t> next(tokens.begin() + 1, tokens.end());
        print_rows(backend, model.logits(model.mtp_forward(next, hidden.row_view(0, slots), 0, state)));
      } else {
        std::fputs("[]", stdout);
      }
    }
    std::fputs("}\n", stdout);
  });
}

}  // namespace mtplx::cli

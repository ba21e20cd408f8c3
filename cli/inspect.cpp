// mtplx inspect DIR: what a checkpoint is (layout, config, quantization, size, MTP head, contract).
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "commands.h"
#include "io/checkpoint.h"
#include "model/qwen35.h"
#include "model/summary.h"

namespace mtplx::cli {
namespace {

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, "%.2f %s", bytes, units[unit]);
  return text;
}

void print_text(const nlohmann::json& s) {
  const auto& c = s["config"];
  std::cout << "path:        " << s["path"].get<std::string>() << "\n"
            << "layout:      " << s["layout"].get<std::string>() << "\n"
            << "model:       " << c["model_type"].get<std::string>() << ", " << c["num_hidden_layers"]
            << " layers (" << c["full_attention_layers"] << " full attention), hidden " << c["hidden_size"]
            << ", vocab " << c["vocab_size"] << "\n"
            << "attention:   " << c["num_attention_heads"] << " heads / " << c["num_key_value_heads"]
            << " kv heads x " << c["head_dim"] << ", rotary " << c["rotary_dim"] << ", theta "
            << c["rope_theta"] << "\n"
            << "gdn:         " << c["linear_num_key_heads"] << " key / " << c["linear_num_value_heads"]
            << " value heads x " << c["linear_key_head_dim"] << "/" << c["linear_value_head_dim"] << "\n"
            << "lm head:     " << (s["tied_lm_head"].get<bool>() ? "tied to the embedding" : "separate")
            << "\n"
            << "parameters:  " << s["parameters"] << " (" << human_bytes(s["weight_bytes"].get<double>())
            << " of weights)\n"
            << "kv cache:    " << human_bytes(s["kv_cache_bytes_per_token_fp32"].get<double>())
            << " per token (fp32), GDN state " << human_bytes(s["gdn_state_bytes"].get<double>()) << "\n";
  const auto& mtp = s["mtp"];
  if (mtp["present"].get<bool>()) {
    std::cout << "mtp head:    present, norms stored " << mtp["norm_encoding"].get<std::string>() << " ("
              << mtp["norm_encoding_source"].get<std::string>() << ")"
              << (mtp.contains("sidecar") ? ", sidecar " + mtp["sidecar"].get<std::string>() : std::string())
              << "\n";
  } else {
    std::cout << "mtp head:    absent (plain autoregressive decoding only)\n";
  }
  std::cout << "quantization:\n";
  for (const auto& [group, formats] : s["quantization"].items()) {
    for (const auto& f : formats) {
      std::cout << "  " << group << ": " << f["format"].get<std::string>() << " x" << f["matrices"] << " ("
                << human_bytes(f["bytes"].get<double>()) << ")\n";
    }
  }
  if (s.contains("contract")) std::cout << "contract:    " << s["contract"].dump() << "\n";
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "Describe a checkpoint: layout, config, quantization, MTP head");
  auto dir = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  cmd->add_option("dir", *dir, "Checkpoint folder")->required();
  cmd->add_flag("--json", *json, "Print JSON");
  cmd->callback([dir, json] {
    const Checkpoint ckpt = open_checkpoint(*dir);
    CpuBackend backend(1);
    const Qwen35Model model(ckpt, backend);
    const auto summary = summarize_model(ckpt, model);
    if (*json) {
      std::cout << summary.dump(2) << "\n";
    } else {
      print_text(summary);
    }
  });
}

}  // namespace mtplx::cli

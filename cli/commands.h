// Each `mtplx` subcommand lives in its own file and registers itself on the CLI11 app here.
// A command's callback throws mtplx::Error for bad input; main() prints it and exits 1.
#pragma once

#include <CLI/CLI.hpp>

namespace mtplx::cli {

void add_inspect_command(CLI::App& app);
void add_logits_command(CLI::App& app);
void add_synth_command(CLI::App& app);
void add_forge_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_detokenize_command(CLI::App& app);
void add_template_command(CLI::App& app);
void add_draft_vocab_command(CLI::App& app);
void add_chat_command(CLI::App& app);

}  // namespace mtplx::cli

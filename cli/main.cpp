// mtplx: native MTP speculative decoding for Qwen3.5 / Qwen3.6.
#include <cstdio>
#include <exception>

#include "base/error.h"
#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{"mtplx: run Qwen3.5 / Qwen3.6 locally with native multi-token-prediction decoding", "mtplx"};
  app.set_version_flag("--version", MTPLX_VERSION);
  app.require_subcommand(1);
  mtplx::cli::add_inspect_command(app);
  mtplx::cli::add_logits_command(app);
  mtplx::cli::add_synth_command(app);
  mtplx::cli::add_forge_command(app);
  mtplx::cli::add_generate_command(app);
  mtplx::cli::add_tokenize_command(app);
  mtplx::cli::add_detokenize_command(app);
  mtplx::cli::add_template_command(app);
  mtplx::cli::add_draft_vocab_command(app);
  mtplx::cli::add_chat_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const mtplx::Error& e) {
    std::fprintf(stderr, "mtplx: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mtplx: internal error: %s\n", e.what());
    return 3;
  }
  return 0;
}

// mtplx tokenize / detokenize: the checkpoint's tokenizer from the command line (ids as a JSON array).
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "base/error.h"
#include "commands.h"
#include "text/tokenizer.h"

namespace mtplx::cli {
namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  require(in.good(), "cannot open file", path);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

text::Tokenizer load_tokenizer(const std::string& model) {
  auto path = std::filesystem::path(model) / "tokenizer.json";
  require(std::filesystem::exists(path), "no tokenizer.json in the model folder", model,
          "pass --model with a checkpoint folder that contains tokenizer.json");
  return text::Tokenizer::from_file(path);
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  struct Options {
    std::string model, text, file;
    bool no_special = false;
  };
  auto opts = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("tokenize", "Print the token ids of a text as a JSON array");
  cmd->add_option("--model", opts->model, "Checkpoint folder with tokenizer.json")->required();
  auto* text_opt = cmd->add_option("--text", opts->text, "Text to tokenize");
  auto* file_opt = cmd->add_option("--file", opts->file, "File whose contents to tokenize");
  text_opt->excludes(file_opt);
  cmd->add_flag("--no-special", opts->no_special,
                "Treat special-token text (e.g. <|im_start|>) as plain text");
  cmd->callback([opts, text_opt, file_opt] {
    require(*text_opt || *file_opt, "nothing to tokenize", "mtplx tokenize", "pass --text T or --file F");
    text::Tokenizer tokenizer = load_tokenizer(opts->model);
    std::string input = *file_opt ? read_all(opts->file) : opts->text;
    auto ids = tokenizer.encode(input, {.parse_special = !opts->no_special});
    std::cout << nlohmann::json(ids).dump() << "\n";
  });
}

void add_detokenize_command(CLI::App& app) {
  struct Options {
    std::string model, ids, file;
    bool skip_special = false;
  };
  auto opts = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("detokenize", "Print the text of a JSON array of token ids");
  cmd->add_option("--model", opts->model, "Checkpoint folder with tokenizer.json")->required();
  auto* ids_opt = cmd->add_option("--ids", opts->ids, "JSON array of ids, e.g. [9707, 11]");
  auto* file_opt = cmd->add_option("--file", opts->file, "File holding a JSON array of ids");
  ids_opt->excludes(file_opt);
  cmd->add_flag("--skip-special", opts->skip_special, "Leave out special tokens");
  cmd->callback([opts, ids_opt, file_opt] {
    require(*ids_opt || *file_opt, "no ids given", "mtplx detokenize", "pass --ids '[...]' or --file F");
    text::Tokenizer tokenizer = load_tokenizer(opts->model);
    std::string source = *file_opt ? read_all(opts->file) : opts->ids;
    auto j = nlohmann::json::parse(source, nullptr, false);
    require(!j.is_discarded() && j.is_array(), "ids must be a JSON array of integers", "mtplx detokenize");
    std::vector<text::TokenId> ids;
    for (const auto& v : j) {
      require(v.is_number_integer(), "ids must be a JSON array of integers", "mtplx detokenize");
      ids.push_back(v.get<text::TokenId>());
    }
    std::cout << tokenizer.decode(ids, opts->skip_special);
  });
}

}  // namespace mtplx::cli

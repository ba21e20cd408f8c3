// mtplx draft-vocab: counts how often each token id occurs in a corpus tokenized with the checkpoint's
// tokenizer and writes draft_vocab.json, the frequency list the trim:N draft head keeps rows from.
//
// Output: {"token_ids": [...], "counts": [...], "source": [files], "corpus_tokens": N}, ids by decreasing
// count, ties by increasing id (so the file does not depend on hashing or sort stability). Ids that never
// occur are left out. The eos ids need no place here: the trimmed head always keeps them.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "base/error.h"
#include "commands.h"
#include "text/tokenizer.h"

namespace mtplx::cli {
namespace {

namespace fs = std::filesystem;

struct DraftVocabFlags {
  std::string model_dir;
  std::vector<std::string> files;
  std::optional<std::string> out;
  int64_t size = 0;
  bool no_special = false;
};

std::string read_corpus(const std::string& path) {
  require(fs::exists(path), "corpus file not found", path, "check the path given to --file");
  require(fs::is_regular_file(path), "corpus path is not a regular file", path, "give a text file to --file");
  std::ifstream in(path, std::ios::binary);
  require(in.good(), "cannot read corpus file", path, "check its permissions");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void run(const DraftVocabFlags& f) {
  require(f.size >= 0, "--size must be positive (or 0 for every token seen)", "--size");
  const auto tokenizer_path = fs::path(f.model_dir) / "tokenizer.json";
  require(fs::exists(tokenizer_path), "no tokenizer.json in the model folder", f.model_dir,
          "pass --model with a checkpoint folder that contains tokenizer.json");
  const fs::path out = f.out ? fs::path(*f.out) : fs::path(f.model_dir) / "draft_vocab.json";
  // Check every input before the slow part, so a typo in the last --file fails at once.
  for (const auto& file : f.files) require(fs::exists(file), "corpus file not found", file, "check --file");
  const auto tokenizer = text::Tokenizer::from_file(tokenizer_path);

  std::vector<int64_t> counts(static_cast<size_t>(tokenizer.vocab_size()), 0);
  int64_t total = 0;
  for (const auto& file : f.files) {
    for (text::TokenId id : tokenizer.encode(read_corpus(file), {.parse_special = !f.no_special})) {
      ++counts[static_cast<size_t>(id)];
      ++total;
    }
  }
  require(total > 0, "the corpus has no tokens", f.files.front(), "give non-empty --file corpora");

  std::vector<int32_t> ids;
  for (size_t id = 0; id < counts.size(); ++id)
    if (counts[id] > 0) ids.push_back(static_cast<int32_t>(id));
  std::sort(ids.begin(), ids.end(),
            [&](int32_t a, int32_t b) { return counts[a] != counts[b] ? counts[a] > counts[b] : a < b; });
  if (f.size > 0 && static_cast<int64_t>(ids.size()) > f.size) ids.resize(static_cast<size_t>(f.size));
  nlohmann::ordered_json json = {
      {"token_ids", ids}, {"counts", nlohmann::json::array()}, {"source", f.files}, {"corpus_tokens", total}};
  for (int32_t id : ids) json["counts"].push_back(counts[id]);

  if (out.has_parent_path())
    require(fs::is_directory(out.parent_path()), "output folder does not exist", out.parent_path().string(),
            "create it or pass another --out");
  std::ofstream file(out, std::ios::binary);
  require(file.good(), "cannot write the output file", out.string(), "check the folder's permissions");
  file << json.dump() << "\n";
  file.close();
  require(!file.fail(), "writing the output file failed", out.string(), "check free disk space");
  std::cerr << "[" << total << " corpus tokens, " << ids.size() << " distinct ids written to " << out.string()
            << "]\n";
}

}  // namespace

void add_draft_vocab_command(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("draft-vocab", "Count token frequencies in a corpus for the trim:N draft head");
  auto flags = std::make_shared<DraftVocabFlags>();
  cmd->add_option("--model", flags->model_dir, "Checkpoint folder with tokenizer.json")->required();
  cmd->add_option("--file", flags->files, "Corpus text file (repeatable)")
      ->required()
      ->allow_extra_args(false);
  cmd->add_option("--out", flags->out, "Output path (default: MODEL/draft_vocab.json)");
  cmd->add_option("--size", flags->size, "Keep the N most frequent ids (default: every id seen)");
  cmd->add_flag("--no-special", flags->no_special, "Treat special-token text in the corpus as plain text");
  cmd->callback([flags] { run(*flags); });
}

}  // namespace mtplx::cli

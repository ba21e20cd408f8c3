#include "decode/draft_head.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <set>

#include "backend/cpu/matmul.h"
#include "base/error.h"
#include "io/checkpoint.h"

namespace mtplx {

std::string DraftHeadSpec::describe() const {
  switch (kind) {
    case Kind::kFull:
      return "full";
    case Kind::kQuantized:
      return str("q", bits, " g", group_size);
    case Kind::kTrimmed:
      return trim_requantized ? str("trim:", trim, ":q", bits) : str("trim:", trim);
  }
  return "?";
}

DraftHeadSpec parse_draft_head(std::string_view text) {
  DraftHeadSpec spec;
  const auto bad = [&] {
    fail(str("unknown draft head \"", text, "\""), "--draft-head",
         "use full, q4, q8, trim:N or trim:N:q4 / trim:N:q8 (N > 0)");
  };
  const auto bits_of = [](std::string_view name) { return name == "q4" ? 4 : name == "q8" ? 8 : 0; };
  if (text == "full") return spec;
  if (bits_of(text) != 0) {
    spec.kind = DraftHeadSpec::Kind::kQuantized;
    spec.bits = bits_of(text);
    return spec;
  }
  if (text.starts_with("trim:")) {
    auto number = text.substr(5);
    if (const size_t colon = number.find(':'); colon != std::string_view::npos) {
      spec.bits = bits_of(number.substr(colon + 1));
      if (spec.bits == 0) bad();
      spec.trim_requantized = true;
      number = number.substr(0, colon);
    }
    const auto [end, error] = std::from_chars(number.data(), number.data() + number.size(), spec.trim);
    if (error != std::errc() || end != number.data() + number.size() || spec.trim <= 0) bad();
    spec.kind = DraftHeadSpec::Kind::kTrimmed;
    return spec;
  }
  bad();
  return spec;
}

std::vector<int32_t> read_draft_vocab(const std::filesystem::path& path) {
  const auto json = read_json_file(path);
  require(json.contains("token_ids") && json["token_ids"].is_array(), "no token_ids array", path.string(),
          "write the file with `mtplx draft-vocab`");
  std::vector<int32_t> ids;
  for (const auto& id : json["token_ids"]) {
    require(id.is_number_integer() && id.get<int64_t>() >= 0, "token_ids must be non-negative integers",
            path.string());
    ids.push_back(id.get<int32_t>());
  }
  return ids;
}

DraftHead::DraftHead(Qwen35Model& model, const DraftHeadSpec& spec, std::span<const int32_t> frequent)
    : model_(model), spec_(spec) {
  const WeightMatrix& lm_head = model.weights().lm_head_host;
  switch (spec.kind) {
    case DraftHeadSpec::Kind::kFull:
      head_ = model.weights().lm_head;  // the model's own, already prepared: no second copy
      break;
    case DraftHeadSpec::Kind::kQuantized:
      make_quantized(lm_head);
      head_ = model.backend().prepare_weight(head_);
      break;
    case DraftHeadSpec::Kind::kTrimmed:
      make_trimmed(lm_head, frequent);
      if (spec.trim_requantized) {
        const WeightMatrix kept = head_;
        make_quantized(kept);
        trimmed_ = {};  // the requantized copy replaces the kept rows
      }
      head_ = model.backend().prepare_weight(head_);
      break;
  }
  host_logits_.resize(head_.rows);
}

// Requantizes the LM head row by row (dequantize to fp32, quantize at the new width): never a full fp32 copy.
void DraftHead::make_quantized(const WeightMatrix& source) {
  check_quant_params(source.cols, spec_.bits, spec_.group_size, "draft LM head");
  quantized_.rows = source.rows;
  quantized_.cols = source.cols;
  quantized_.bits = spec_.bits;
  quantized_.group_size = spec_.group_size;
  const int64_t words = packed_words_per_row(source.cols, spec_.bits);
  const int64_t groups = source.cols / spec_.group_size;
  quantized_.words.resize(source.rows * words);
  quantized_.scales.resize(source.rows * groups);
  quantized_.biases.resize(source.rows * groups);
  ThreadPool pool;
  pool.parallel_for(source.rows, [&](int64_t begin, int64_t end) {
    std::vector<float> row(source.cols);
    for (int64_t r = begin; r < end; ++r) {
      cpu::dequantize_row(source, r, row.data());
      quantize_row(row, spec_.bits, spec_.group_size, std::span(quantized_.words).subspan(r * words, words),
                   std::span(quantized_.scales).subspan(r * groups, groups),
                   std::span(quantized_.biases).subspan(r * groups, groups));
    }
  });
  head_ = WeightMatrix{source.rows,
                       source.cols,
                       DType::U32,
                       quantized_.words.data(),
                       spec_.bits,
                       spec_.group_size,
                       DType::BF16,
                       quantized_.scales.data(),
                       quantized_.biases.data(),
                       {}};
}

// Copies the chosen rows (ascending ids) in the head's own storage format.
void DraftHead::make_trimmed(const WeightMatrix& source, std::span<const int32_t> frequent) {
  require(!frequent.empty(), "trim:N needs a token-frequency list", "--draft-head",
          "put draft_vocab.json in the model folder (see `mtplx draft-vocab`)");
  std::set<int32_t> chosen(model_.config().eos_token_ids.begin(), model_.config().eos_token_ids.end());
  for (int32_t id : frequent) {
    if (static_cast<int64_t>(chosen.size()) >= spec_.trim) break;
    require(id >= 0 && id < source.rows, str("draft vocabulary id ", id, " is outside the vocabulary"));
    chosen.insert(id);
  }
  ids_.assign(chosen.begin(), chosen.end());
  const auto rows = static_cast<int64_t>(ids_.size());
  const size_t row_bytes =
      source.quantized() ? source.words_per_row() * 4 : source.cols * dtype_size(source.dtype);
  const size_t group_bytes =
      source.quantized() ? (source.cols / source.group_size) * dtype_size(source.scale_dtype) : 0;
  trimmed_.resize(rows * (row_bytes + 2 * group_bytes));
  std::byte* values = trimmed_.data();
  std::byte* scales = values + rows * row_bytes;
  std::byte* biases = scales + rows * group_bytes;
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t r = ids_[i];
    std::memcpy(values + i * row_bytes, static_cast<const std::byte*>(source.data) + r * row_bytes,
                row_bytes);
    if (group_bytes) {
      std::memcpy(scales + i * group_bytes, static_cast<const std::byte*>(source.scales) + r * group_bytes,
                  group_bytes);
      std::memcpy(biases + i * group_bytes, static_cast<const std::byte*>(source.biases) + r * group_bytes,
                  group_bytes);
    }
  }
  head_ = source;
  head_.rows = rows;
  head_.data = values;
  if (group_bytes) {
    head_.scales = scales;
    head_.biases = biases;
  }
}

Tensor DraftHead::project(const Tensor& hidden_row) {
  return model_.project(hidden_row, head_);
}

std::span<const float> DraftHead::logits(const Tensor& hidden_row) {
  const Tensor out = project(hidden_row);
  model_.backend().download(out, host_logits_);
  return host_logits_;
}

int32_t DraftHead::greedy_token(const Tensor& hidden_row) {
  const Tensor out = project(hidden_row);
  const int32_t index = model_.backend().greedy_tokens(out).at(0);
  return ids_.empty() ? index : ids_[static_cast<size_t>(index)];  // ids_ ascending: ties stay lowest-id
}

std::unique_ptr<TokenSlots> DraftHead::token_slots(int count) {
  return model_.backend().token_slots(count, ids_);
}

void DraftHead::greedy_pick(const Tensor& hidden_row, TokenSlots& slots, int slot) {
  model_.backend().greedy_pick(project(hidden_row), slots, slot, true);
}

void DraftHead::top_k(const Tensor& hidden_row, int k, std::vector<ScoredToken>& out) {
  model_.backend().top_k(project(hidden_row), k, out);
}

}  // namespace mtplx

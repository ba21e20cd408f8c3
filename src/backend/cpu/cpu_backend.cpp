#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/matmul.h"
#include "backend/cpu/vector_loops.h"
#include "base/error.h"

namespace mtplx {
namespace {

void expect(bool ok, const char* what) {
  if (!ok) fail(str("internal error: cpu backend: ", what));
}

// torch.nn.functional.softplus with its default threshold of 20.
float softplus(float x) {
  return x > 20.0f ? x : std::log1p(std::exp(x));
}

// The elementwise loops of the ops below as functions with wide-vector clones (see vector_loops.h).
MTPLX_VECTOR_CLONES void silu_mul_span(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = cpu::silu_lanes(gate[i]) * up[i];
}

MTPLX_VECTOR_CLONES void sigmoid_mul_span(float* x, const float* gate, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= cpu::sigmoid_lanes(gate[i]);
}

// o = gain * (x * inv) * silu(z) over one group.
MTPLX_VECTOR_CLONES void gated_scale(const float* gain, const float* x, float inv, const float* z, float* o,
                                     int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = gain[i] * (x[i] * inv) * cpu::silu_lanes(z[i]);
}

// One output row of the causal conv over channels [c0, c1): out[c] = silu(sum_j w[c, j] * in[j][c]), the
// taps added in order j = 0..K-1 as the reference does.
template <int K>
MTPLX_VECTOR_CLONES void conv_row(const float* const* in, const float* w, int64_t c0, int64_t c1,
                                  float* out) {
  for (int64_t c = c0; c < c1; ++c) {
    float sum = 0;
#pragma GCC unroll 8
    for (int j = 0; j < K; ++j) sum += w[c * K + j] * in[j][c];
    out[c] = cpu::silu_lanes(sum);
  }
}

// Any other kernel width: the taps in the same order, one pass over the channels per tap.
MTPLX_VECTOR_CLONES void conv_row_any(const float* const* in, const float* w, int64_t K, int64_t c0,
                                      int64_t c1, float* out) {
  for (int64_t c = c0; c < c1; ++c) out[c] = 0;
  for (int64_t j = 0; j < K; ++j)
    for (int64_t c = c0; c < c1; ++c) out[c] += w[c * K + j] * in[j][c];
  for (int64_t c = c0; c < c1; ++c) out[c] = cpu::silu_lanes(out[c]);
}

// Rows are independent: split the rows over the pool when there is enough work.
template <class Body>
void for_rows(ThreadPool& pool, int64_t rows, int64_t cost_per_row, Body&& body) {
  if (rows * cost_per_row < (1 << 15)) {
    for (int64_t r = 0; r < rows; ++r) body(r);
    return;
  }
  pool.parallel_for(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) body(r);
  });
}

}  // namespace

CpuBackend::CpuBackend(int threads) : pool_(threads) {}

void CpuBackend::set_matmul_isa(cpu::Isa isa) {
  require(cpu::isa_supported(isa), "the requested CPU instruction set is not available on this machine", {},
          "use Isa::Auto");
  matmul_.isa = isa;
}

void CpuBackend::set_matmul_options(const cpu::MatmulOptions& options) {
  set_matmul_isa(options.isa);  // refuses an instruction set this CPU lacks
  matmul_ = options;
}

WeightMatrix CpuBackend::prepare_weight(const WeightMatrix& host) {
  if (matmul_.dot == cpu::QuantDot::Int8 && cpu::int8_dot_supported() && cpu::int8_dot_format(host) &&
      host.tiles == nullptr)
    return cpu::with_int8_tiles(host, pool_, tile_arena_);
  return host;
}

Tensor CpuBackend::alloc(int64_t rows, int64_t cols) {
  expect(rows >= 0 && cols >= 0, "negative tensor size");
  const size_t count = static_cast<size_t>(std::max<int64_t>(1, rows * cols));
  std::shared_ptr<float[]> storage(new float[count]);
  float* data = storage.get();
  return Tensor{std::shared_ptr<void>(storage, data), data, rows, cols};
}

Tensor CpuBackend::upload(std::span<const float> host, int64_t rows, int64_t cols) {
  expect(static_cast<int64_t>(host.size()) == rows * cols, "upload size mismatch");
  Tensor t = alloc(rows, cols);
  std::copy(host.begin(), host.end(), t.data);
  return t;
}

void CpuBackend::download(const Tensor& src, std::span<float> host) {
  expect(static_cast<int64_t>(host.size()) == src.numel(), "download size mismatch");
  std::copy(src.data, src.data + src.numel(), host.begin());
}

void CpuBackend::top_k(const Tensor& logits, int k, std::vector<ScoredToken>& out) {
  expect(k >= 0, "top_k needs k >= 0");
  pick_top_k({logits.data, static_cast<size_t>(logits.numel())}, logits.rows, logits.cols, k, out);
}

void CpuBackend::fill(Tensor& dst, float value) {
  std::fill(dst.data, dst.data + dst.numel(), value);
}

void CpuBackend::copy_rows(const Tensor& src, Tensor& dst, int64_t dst_row) {
  expect(src.cols == dst.cols && dst_row >= 0 && dst_row + src.rows <= dst.rows, "copy_rows out of range");
  std::memcpy(dst.data + dst_row * dst.cols, src.data, sizeof(float) * src.numel());
}

void CpuBackend::copy_blocks(std::span<const BlockCopy> blocks) {
  // Pieces of 64 KiB over both threads: one core alone copies at a fraction of the machine's bandwidth,
  // and a rollback moves 18 MiB of Qwen3.5-0.8B states.
  constexpr int64_t kPiece = 16384;                  // floats
  std::vector<int64_t> first(blocks.size() + 1, 0);  // first piece of each block
  for (size_t i = 0; i < blocks.size(); ++i)
    first[i + 1] = first[i] + (blocks[i].count + kPiece - 1) / kPiece;
  pool_.parallel_for(first.back(), [&](int64_t begin, int64_t end) {
    for (int64_t piece = begin; piece < end; ++piece) {
      const auto i =
          static_cast<size_t>(std::upper_bound(first.begin(), first.end(), piece) - first.begin() - 1);
      const int64_t at = (piece - first[i]) * kPiece, n = std::min(kPiece, blocks[i].count - at);
      std::memcpy(blocks[i].dst + at, blocks[i].src + at, sizeof(float) * static_cast<size_t>(n));
    }
  });
}

void CpuBackend::copy_columns(const Tensor& src, int64_t src_col, int64_t src_stride, Tensor& dst,
                              int64_t dst_col, int64_t dst_stride, int64_t width, int64_t count) {
  expect(src.rows == dst.rows, "copy_columns row mismatch");
  expect(src_col + (count - 1) * src_stride + width <= src.cols, "copy_columns source out of range");
  expect(dst_col + (count - 1) * dst_stride + width <= dst.cols, "copy_columns destination out of range");
  for (int64_t r = 0; r < src.rows; ++r) {
    const float* s = src.data + r * src.cols + src_col;
    float* d = dst.data + r * dst.cols + dst_col;
    for (int64_t i = 0; i < count; ++i)
      std::memcpy(d + i * dst_stride, s + i * src_stride, sizeof(float) * width);
  }
}

void CpuBackend::embed(const WeightMatrix& table, std::span<const int32_t> tokens, Tensor& out) {
  expect(out.rows == static_cast<int64_t>(tokens.size()) && out.cols == table.cols, "embed shape");
  for (size_t t = 0; t < tokens.size(); ++t) {
    require(tokens[t] >= 0 && tokens[t] < table.rows,
            str("token id ", tokens[t], " is outside the vocabulary (0..", table.rows - 1, ")"));
    cpu::dequantize_row(table, tokens[t], out.data + t * out.cols);
  }
}

void CpuBackend::matmul(const WeightMatrix& w, const Tensor& x, Tensor& y) {
  expect(x.cols == w.cols && y.cols == w.rows && x.rows == y.rows, "matmul shape");
  cpu::matmul(w, x.data, y.data, x.rows, pool_, matmul_);
}

void CpuBackend::matmul_many(std::span<const WeightMatrix* const> ws, const Tensor& x,
                             std::span<Tensor* const> ys) {
  expect(ws.size() == ys.size(), "matmul_many needs one output per weight");
  std::vector<float*> outputs;
  for (size_t i = 0; i < ws.size(); ++i) {
    expect(x.cols == ws[i]->cols && ys[i]->cols == ws[i]->rows && x.rows == ys[i]->rows, "matmul shape");
    outputs.push_back(ys[i]->data);
  }
  cpu::matmul_many(ws, x.data, outputs, x.rows, pool_, matmul_);
}

void CpuBackend::rms_norm(const Tensor& x, const Tensor& gain, float eps, Tensor& y) {
  const int64_t group = gain.numel();
  expect(x.numel() == y.numel() && x.numel() % group == 0, "rms_norm shape");
  for_rows(pool_, x.numel() / group, group, [&](int64_t g) {
    const float* in = x.data + g * group;
    float* out = y.data + g * group;
    double sum = 0;
    for (int64_t i = 0; i < group; ++i) sum += double(in[i]) * in[i];
    const float inv = 1.0f / std::sqrt(static_cast<float>(sum / group) + eps);
    for (int64_t i = 0; i < group; ++i) out[i] = in[i] * inv * gain.data[i];
  });
}

void CpuBackend::add(const Tensor& a, const Tensor& b, Tensor& out) {
  expect(a.numel() == b.numel() && a.numel() == out.numel(), "add shape");
  for (int64_t i = 0; i < a.numel(); ++i) out.data[i] = a.data[i] + b.data[i];
}

void CpuBackend::silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
  expect(gate.numel() == up.numel() && gate.numel() == out.numel(), "silu_mul shape");
  // Split over elements, not rows: decode has one row of 3-20k values, each with an exp.
  auto span = [&](int64_t begin, int64_t end) {
    silu_mul_span(gate.data + begin, up.data + begin, out.data + begin, end - begin);
  };
  if (gate.numel() < 2048)
    span(0, gate.numel());
  else
    pool_.parallel_for(gate.numel(), span, 256);
}

void CpuBackend::rope(Tensor& x, int heads, int head_dim, int rot_dim, double theta, int64_t pos0) {
  expect(x.cols == int64_t{heads} * head_dim && rot_dim % 2 == 0 && rot_dim <= head_dim, "rope shape");
  const int half = rot_dim / 2;
  std::vector<float> cos_table(half), sin_table(half);
  for (int64_t t = 0; t < x.rows; ++t) {
    const double position = static_cast<double>(pos0 + t);
    for (int i = 0; i < half; ++i) {
      const double inv_freq = std::pow(theta, -2.0 * i / rot_dim);
      cos_table[i] = static_cast<float>(std::cos(position * inv_freq));
      sin_table[i] = static_cast<float>(std::sin(position * inv_freq));
    }
    for (int h = 0; h < heads; ++h) {
      float* v = x.data + t * x.cols + int64_t{h} * head_dim;
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cos_table[i] - b * sin_table[i];
        v[i + half] = b * cos_table[i] + a * sin_table[i];
      }
    }
  }
}

namespace {

// One query row of one head against the first `visible` cached positions: softmax(q K^T * scale) V.
// `scores` holds at least `visible` floats.
MTPLX_VECTOR_CLONES void attend(const float* q, const float* keys, const float* values, int64_t stride,
                                int64_t visible, int64_t D, float scale, float* scores, float* out) {
  float max_score = -INFINITY;
  for (int64_t s = 0; s < visible; ++s) {
    scores[s] = cpu::dot_lanes(q, keys + s * stride, D) * scale;
    max_score = std::max(max_score, scores[s]);
  }
  double total = 0;
  std::fill(out, out + D, 0.0f);
  for (int64_t s = 0; s < visible; ++s) {
    const float weight = std::exp(scores[s] - max_score);
    total += weight;
    const float* v = values + s * stride;
    for (int64_t d = 0; d < D; ++d) out[d] += weight * v[d];
  }
  const auto inverse = static_cast<float>(1.0 / total);
  for (int64_t d = 0; d < D; ++d) out[d] *= inverse;
}

}  // namespace

void CpuBackend::attention(const AttentionArgs& args) {
  const Tensor& q = *args.q;
  const int64_t D = args.head_dim;
  const int group = args.heads / args.kv_heads;
  const int64_t kv_cols = args.k_cache->cols;
  expect(q.cols == args.heads * D && kv_cols == args.kv_heads * D && args.out->cols == q.cols,
         "attention shape");
  expect(args.pos0 + q.rows <= args.k_cache->rows, "attention past the cache");
  const int64_t items = q.rows * args.heads;
  pool_.parallel_for(items, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(args.pos0 + q.rows);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t t = item / args.heads;
      const int h = static_cast<int>(item % args.heads);
      const int64_t kv_off = int64_t{h / group} * D;
      attend(q.data + t * q.cols + h * D, args.k_cache->data + kv_off, args.v_cache->data + kv_off, kv_cols,
             args.pos0 + t + 1, D, args.scale, scores.data(), args.out->data + t * args.out->cols + h * D);
    }
  });
  if (args.gate != nullptr) sigmoid_mul(*args.out, *args.gate);
}

void CpuBackend::sigmoid_mul(Tensor& x, const Tensor& gate) {
  expect(x.numel() == gate.numel(), "sigmoid_mul shape");
  sigmoid_mul_span(x.data, gate.data, x.numel());
}

void CpuBackend::conv1d_silu(const Tensor& x, const Tensor& weight, Tensor& state, Tensor& out,
                             Tensor* row_states) {
  const int64_t C = x.cols, K = weight.cols, T = x.rows;
  expect(weight.rows == C && state.rows == K - 1 && state.cols == C && out.rows == T && out.cols == C,
         "conv1d shape");
  expect(row_states == nullptr || (row_states->rows <= T && row_states->cols == (K - 1) * C),
         "conv1d row_states");
  // Row r of the extended input [state ; x]; rows < K-1 come from the state.
  auto input = [&](int64_t r) { return r < K - 1 ? state.data + r * C : x.data + (r - (K - 1)) * C; };
  // Split over channels, not rows: decode has one row, and its 6k-8k channels are worth two threads.
  auto channels = [&](int64_t c0, int64_t c1) {
    std::array<const float*, 8> in{};
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t j = 0; j < K; ++j) in[j] = input(t + j);
      if (K == 4)
        conv_row<4>(in.data(), weight.data, c0, c1, out.data + t * C);
      else
        conv_row_any(in.data(), weight.data, K, c0, c1, out.data + t * C);
    }
  };
  require(K >= 1 && K <= 8, str("conv1d kernel width ", K, " is not supported (1..8)"), "cpu backend");
  if (T * C * K < (1 << 14))
    channels(0, C);
  else
    pool_.parallel_for(C, channels, 64);
  if (row_states != nullptr) {
    for (int64_t t = 0; t < row_states->rows; ++t)
      for (int64_t j = 0; j < K - 1; ++j)
        std::memcpy(row_states->data + (t * (K - 1) + j) * C, input(t + 1 + j), sizeof(float) * C);
  }
  // The state becomes the last K - 1 rows of [state ; x]. In place, rows ascending: new row j comes from
  // row T + j > j of the extended input, which a lower row's write has not touched yet.
  for (int64_t j = 0; j < K - 1; ++j) std::memmove(state.data + j * C, input(T + j), sizeof(float) * C);
}

void CpuBackend::gdn_gates(const Tensor& a, const Tensor& b, const Tensor& a_log, const Tensor& dt_bias,
                           Tensor& g, Tensor& beta) {
  const int64_t H = a.cols;
  expect(b.cols == H && a_log.numel() == H && dt_bias.numel() == H && g.numel() == a.numel() &&
             beta.numel() == a.numel(),
         "gdn_gates shape");
  for (int64_t t = 0; t < a.rows; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t i = t * H + h;
      g.data[i] = -std::exp(a_log.data[h]) * softplus(a.data[i] + dt_bias.data[h]);
      beta.data[i] = cpu::sigmoid_lanes(b.data[i]);
    }
  }
}

void CpuBackend::l2_norm(Tensor& x, int64_t group, float scale) {
  expect(x.numel() % group == 0, "l2_norm shape");
  for (int64_t g = 0; g < x.numel() / group; ++g) {
    float* v = x.data + g * group;
    double sum = 0;
    for (int64_t i = 0; i < group; ++i) sum += double(v[i]) * v[i];
    const float factor = scale / std::sqrt(static_cast<float>(sum) + 1e-6f);
    for (int64_t i = 0; i < group; ++i) v[i] *= factor;
  }
}

void CpuBackend::gated_rms_norm(const Tensor& x, const Tensor& z, const Tensor& gain, float eps,
                                Tensor& out) {
  const int64_t group = gain.numel();
  expect(x.numel() == z.numel() && x.numel() == out.numel() && x.numel() % group == 0,
         "gated_rms_norm shape");
  for_rows(pool_, x.numel() / group, group * 16, [&](int64_t g) {  // an exp per value
    const float* in = x.data + g * group;
    const float* gate = z.data + g * group;
    float* o = out.data + g * group;
    double sum = 0;
    for (int64_t i = 0; i < group; ++i) sum += double(in[i]) * in[i];
    const float inv = 1.0f / std::sqrt(static_cast<float>(sum / group) + eps);
    gated_scale(gain.data, in, inv, gate, o, group);
  });
}

}  // namespace mtplx

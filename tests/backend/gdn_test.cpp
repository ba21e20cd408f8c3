// Gated DeltaNet ops of the CPU backend: the recurrence against a float64 rendering of the spec's matrix
// form S_t = exp(g_t) (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T, o_t = S_t^T q_t; the chunked form
// against the recurrence; and the causal conv's streaming and per-row state capture.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/vector_loops.h"

namespace mtplx {
namespace {

struct GdnCase {
  int Hk, Hv, Dk, Dv;
  int64_t T;
};

struct GdnInputs {
  Tensor q, k, v, g, beta, state;
};

GdnInputs random_inputs(CpuBackend& cpu, const GdnCase& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  auto random = [&](int64_t rows, int64_t cols, auto draw) {
    std::vector<float> host(rows * cols);
    for (auto& x : host) x = draw();
    return cpu.upload(host, rows, cols);
  };
  GdnInputs in;
  in.q = random(c.T, int64_t{c.Hk} * c.Dk, [&] { return normal(rng); });
  in.k = random(c.T, int64_t{c.Hk} * c.Dk, [&] { return normal(rng); });
  in.v = random(c.T, int64_t{c.Hv} * c.Dv, [&] { return normal(rng); });
  in.g = random(c.T, c.Hv, [&] { return -0.5f * unit(rng); });
  in.beta = random(c.T, c.Hv, [&] { return unit(rng); });
  in.state = random(c.Hv, int64_t{c.Dk} * c.Dv, [&] { return 0.3f * normal(rng); });
  cpu.l2_norm(in.q, c.Dk, 1.0f / std::sqrt(static_cast<float>(c.Dk)));
  cpu.l2_norm(in.k, c.Dk, 1.0f);
  return in;
}

Tensor clone(CpuBackend& cpu, const Tensor& t) {
  return cpu.upload(std::span<const float>(t.data, t.numel()), t.rows, t.cols);
}

// Largest |a - b| relative to the largest |b|.
double relative_error(const Tensor& a, const Tensor& b) {
  double diff = 0, scale = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    diff = std::max(diff, std::fabs(double(a.data[i]) - b.data[i]));
    scale = std::max(scale, std::fabs(double(b.data[i])));
  }
  return diff / scale;
}

// float64 reference: per head, S <- exp(g) (S - beta k (k^T S)) + beta k v^T, o = S^T q.
void reference(const GdnCase& c, const GdnInputs& in, std::vector<double>& out, std::vector<double>& state) {
  state.assign(in.state.data, in.state.data + in.state.numel());
  out.assign(c.T * int64_t{c.Hv} * c.Dv, 0.0);
  for (int hv = 0; hv < c.Hv; ++hv) {
    const int kh = hv / (c.Hv / c.Hk);
    double* S = state.data() + int64_t{hv} * c.Dk * c.Dv;
    for (int64_t t = 0; t < c.T; ++t) {
      const float* q = in.q.data + t * in.q.cols + kh * c.Dk;
      const float* k = in.k.data + t * in.k.cols + kh * c.Dk;
      const float* v = in.v.data + t * in.v.cols + hv * c.Dv;
      const double decay = std::exp(double(in.g.data[t * c.Hv + hv]));
      const double beta = in.beta.data[t * c.Hv + hv];
      std::vector<double> ktS(c.Dv, 0.0);
      for (int d = 0; d < c.Dk; ++d)
        for (int j = 0; j < c.Dv; ++j) ktS[j] += k[d] * S[d * c.Dv + j];
      // exp(g) (I - beta k k^T) S + beta k v^T, with the decay applied to S before the delta rule.
      for (int d = 0; d < c.Dk; ++d)
        for (int j = 0; j < c.Dv; ++j)
          S[d * c.Dv + j] = decay * S[d * c.Dv + j] + beta * k[d] * (v[j] - decay * ktS[j]);
      for (int j = 0; j < c.Dv; ++j) {
        double o = 0;
        for (int d = 0; d < c.Dk; ++d) o += S[d * c.Dv + j] * q[d];
        out[(t * c.Hv + hv) * c.Dv + j] = o;
      }
    }
  }
}

GdnArgs args_for(const GdnCase& c, GdnInputs& in, Tensor& state, Tensor& out) {
  return GdnArgs{&in.q, &in.k, &in.v, &in.g, &in.beta, &state, &out, nullptr, c.Hk, c.Hv, c.Dk, c.Dv};
}

Tensor to_tensor(CpuBackend& cpu, const std::vector<double>& values, int64_t rows, int64_t cols) {
  std::vector<float> host(values.begin(), values.end());
  return cpu.upload(host, rows, cols);
}

class GdnTest : public ::testing::TestWithParam<GdnCase> {};

TEST_P(GdnTest, RecurrentMatchesFloat64Reference) {
  CpuBackend cpu(2);
  const GdnCase c = GetParam();
  GdnInputs in = random_inputs(cpu, c, 7);
  Tensor state = clone(cpu, in.state);
  Tensor out = cpu.alloc(c.T, int64_t{c.Hv} * c.Dv);
  cpu.gdn_recurrent(args_for(c, in, state, out));
  std::vector<double> ref_out, ref_state;
  reference(c, in, ref_out, ref_state);
  EXPECT_LT(relative_error(out, to_tensor(cpu, ref_out, out.rows, out.cols)), 1e-5);
  EXPECT_LT(relative_error(state, to_tensor(cpu, ref_state, state.rows, state.cols)), 1e-5);
}

TEST_P(GdnTest, ChunkedMatchesRecurrent) {
  CpuBackend cpu(2);
  const GdnCase c = GetParam();
  GdnInputs in = random_inputs(cpu, c, 11);
  Tensor state_r = clone(cpu, in.state), state_c = clone(cpu, in.state);
  Tensor out_r = cpu.alloc(c.T, int64_t{c.Hv} * c.Dv), out_c = cpu.alloc(c.T, int64_t{c.Hv} * c.Dv);
  cpu.gdn_recurrent(args_for(c, in, state_r, out_r));
  cpu.gdn_chunked(args_for(c, in, state_c, out_c));
  EXPECT_LT(relative_error(out_c, out_r), 1e-5);
  EXPECT_LT(relative_error(state_c, state_r), 1e-5);
}

TEST_P(GdnTest, RowStatesAreTheStatesAfterEachRow) {
  CpuBackend cpu(2);
  const GdnCase c = GetParam();
  if (c.T > 8) GTEST_SKIP() << "row capture is for verify widths";
  GdnInputs in = random_inputs(cpu, c, 13);
  Tensor state = clone(cpu, in.state);
  Tensor out = cpu.alloc(c.T, int64_t{c.Hv} * c.Dv);
  Tensor rows = cpu.alloc(c.T, state.numel());
  GdnArgs args = args_for(c, in, state, out);
  args.row_states = &rows;
  cpu.gdn_recurrent(args);
  for (int64_t keep = 1; keep <= c.T; ++keep) {
    GdnCase prefix = c;
    prefix.T = keep;
    GdnInputs part{in.q.row_view(0, keep), in.k.row_view(0, keep),    in.v.row_view(0, keep),
                   in.g.row_view(0, keep), in.beta.row_view(0, keep), in.state};
    Tensor s = clone(cpu, in.state);
    Tensor o = cpu.alloc(keep, out.cols);
    cpu.gdn_recurrent(args_for(prefix, part, s, o));
    const Tensor captured = rows.row_view(keep - 1, 1).reshaped(s.rows, s.cols);
    EXPECT_EQ(relative_error(captured, s), 0.0) << "row " << keep - 1;
  }
}

// A verify captures T - 1 rows (the state after the last row is the state itself): a row_states view of
// fewer rows gets exactly those rows of the full capture, the memory after it is not written, and the
// output and the final state do not change.
TEST_P(GdnTest, CapturesOnlyTheRowsAsked) {
  CpuBackend cpu(2);
  const GdnCase c = GetParam();
  if (c.T > 8 || c.T < 2) GTEST_SKIP() << "verify widths of two rows or more";
  GdnInputs in = random_inputs(cpu, c, 17);
  Tensor full_state = clone(cpu, in.state), part_state = clone(cpu, in.state);
  Tensor full_out = cpu.alloc(c.T, int64_t{c.Hv} * c.Dv), part_out = cpu.alloc(c.T, full_out.cols);
  Tensor full_rows = cpu.alloc(c.T, in.state.numel()), part_rows = cpu.alloc(c.T, in.state.numel());
  cpu.fill(part_rows, 7.0f);
  GdnArgs full = args_for(c, in, full_state, full_out);
  full.row_states = &full_rows;
  cpu.gdn_recurrent(full);
  Tensor first_rows = part_rows.row_view(0, c.T - 1);
  GdnArgs part = args_for(c, in, part_state, part_out);
  part.row_states = &first_rows;
  cpu.gdn_recurrent(part);
  EXPECT_EQ(relative_error(part_rows.row_view(0, c.T - 1), full_rows.row_view(0, c.T - 1)), 0.0);
  const Tensor last = part_rows.row_view(c.T - 1, 1);
  EXPECT_TRUE(std::all_of(last.data, last.data + last.numel(), [](float x) { return x == 7.0f; }));
  EXPECT_EQ(relative_error(part_out, full_out), 0.0);
  EXPECT_EQ(relative_error(part_state, full_state), 0.0);
}

INSTANTIATE_TEST_SUITE_P(Shapes, GdnTest,
                         ::testing::Values(GdnCase{1, 2, 16, 8, 5}, GdnCase{2, 4, 32, 16, 150},
                                           GdnCase{1, 3, 128, 128, 70}, GdnCase{2, 2, 8, 8, 64},
                                           GdnCase{1, 2, 16, 16, 1}));

// Channels x kernel width x rows: a small serial case, a pool-split case with the specialised width 4 and
// one with another width (the generic loop).
class Conv1dTest : public ::testing::TestWithParam<std::array<int64_t, 3>> {};

TEST_P(Conv1dTest, StreamingEqualsOneShotAndCapturesRowStates) {
  CpuBackend cpu(2);
  const auto [C, K, T] = GetParam();
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> xs(T * C), ws(C * K);
  for (auto& x : xs) x = 3 * normal(rng);
  for (auto& w : ws) w = normal(rng);
  Tensor x = cpu.upload(xs, T, C), w = cpu.upload(ws, C, K);
  Tensor state_all = cpu.alloc(K - 1, C), out_all = cpu.alloc(T, C), rows = cpu.alloc(T, (K - 1) * C);
  cpu.fill(state_all, 0.0f);
  cpu.conv1d_silu(x, w, state_all, out_all, &rows);
  // Independent reference: zero history, direct sum, silu in double precision.
  double worst = 0;
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t c = 0; c < C; ++c) {
      double sum = 0;
      for (int64_t j = 0; j < K; ++j) {
        const int64_t src = t - (K - 1) + j;
        if (src >= 0) sum += double(ws[c * K + j]) * xs[src * C + c];
      }
      const double expected = sum / (1.0 + std::exp(-sum));
      worst =
          std::max(worst, std::abs(out_all.data[t * C + c] - expected) / std::max(1.0, std::abs(expected)));
    }
  }
  EXPECT_LT(worst, 1e-5);
  // Streaming in pieces of 1 and 2 rows (2 < K - 1 shifts the state within itself) gives the same rows,
  // and each row's captured state is the state after it.
  for (int64_t piece : {1, 2}) {
    Tensor state = cpu.alloc(K - 1, C);
    cpu.fill(state, 0.0f);
    for (int64_t t0 = 0; t0 < T; t0 += piece) {
      const int64_t n = std::min(piece, T - t0);
      Tensor out = cpu.alloc(n, C);
      cpu.conv1d_silu(x.row_view(t0, n), w, state, out, nullptr);
      for (int64_t i = 0; i < n * C; ++i) EXPECT_FLOAT_EQ(out.data[i], out_all.data[t0 * C + i]);
      for (int64_t i = 0; i < state.numel(); ++i)
        EXPECT_EQ(rows.data[(t0 + n - 1) * (K - 1) * C + i], state.data[i]);
    }
    for (int64_t i = 0; i < state.numel(); ++i) EXPECT_EQ(state.data[i], state_all.data[i]);
  }
  // Capturing the first T - 1 rows only: those rows as before, the last one not written.
  Tensor state = cpu.alloc(K - 1, C), out = cpu.alloc(T, C), part = cpu.alloc(T, (K - 1) * C);
  cpu.fill(state, 0.0f);
  cpu.fill(part, 7.0f);
  Tensor first = part.row_view(0, T - 1);
  cpu.conv1d_silu(x, w, state, out, &first);
  for (int64_t i = 0; i < (T - 1) * (K - 1) * C; ++i) EXPECT_EQ(part.data[i], rows.data[i]);
  for (int64_t i = (T - 1) * (K - 1) * C; i < part.numel(); ++i) EXPECT_EQ(part.data[i], 7.0f);
}

INSTANTIATE_TEST_SUITE_P(Shapes, Conv1dTest,
                         ::testing::Values(std::array<int64_t, 3>{12, 4, 9},
                                           std::array<int64_t, 3>{1030, 4, 9},
                                           std::array<int64_t, 3>{1030, 3, 7}));

// exp_lanes (the vectorizable e^x of the elementwise ops) against std::exp: within about one ulp (relative
// error) over its range, clamped outside it, NaN kept.
TEST(ExpLanes, MatchesStdExpClampsAndKeepsNaN) {
  double worst = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.00731f) {
    const double exact = std::exp(double(x));
    worst = std::max(worst, std::abs(cpu::exp_lanes(x) - exact) / exact);
  }
  EXPECT_LT(worst, 1.5e-7);  // measured 8.2e-8
  EXPECT_FLOAT_EQ(cpu::exp_lanes(0.0f), 1.0f);
  EXPECT_EQ(cpu::exp_lanes(-1000.0f), cpu::exp_lanes(-87.0f));
  EXPECT_EQ(cpu::exp_lanes(1000.0f), cpu::exp_lanes(88.0f));
  EXPECT_TRUE(std::isfinite(cpu::exp_lanes(std::numeric_limits<float>::infinity())));
  EXPECT_TRUE(std::isnan(cpu::exp_lanes(std::nanf(""))));
  EXPECT_TRUE(std::isnan(cpu::silu_lanes(std::nanf(""))));
  EXPECT_FLOAT_EQ(cpu::sigmoid_lanes(0.0f), 0.5f);
  EXPECT_NEAR(cpu::silu_lanes(-1000.0f), 0.0f, 1e-30f);  // -1000 / (1 + e^88), e^1000 clamped
  EXPECT_EQ(cpu::silu_lanes(1000.0f), 1000.0f);
}

}  // namespace
}  // namespace mtplx

// Gated DeltaNet on the CPU, per value head hv (key head hv / (Hv / Hk)), state S [Dk, Dv] in fp32:
//   S_t = exp(g_t) S_{t-1};  S_t += k_t (beta_t (v_t - S_t^T k_t))^T;  o_t = S_t^T q_t
// gdn_recurrent runs this token by token (decode and verify, optionally capturing S after each row);
// gdn_chunked computes the same function over chunks of 64 tokens with matrix products (prefill), as in
// the WY form of the delta rule (Yang et al. 2024): within a chunk with cumulative log-decay G,
//   A[i,j] = beta_i (k_i . k_j) exp(G_i - G_j) (j < i),  T = (I + A)^-1,
//   U = T (beta V),  W = T (beta exp(G) K),  V' = U - W S,
//   O = (exp(G) Q) S + tril[(Q K^T) exp(G_i - G_j)] V',  S <- exp(G_last) S + (exp(G_last - G) K)^T V'.
#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/vector_loops.h"
#include "base/error.h"

namespace mtplx {
namespace {

constexpr int kChunk = 64;
constexpr int kMaxValueDim = 256;  // recurrent_head's sums live on the stack

void check_args(const GdnArgs& a) {
  const int64_t T = a.q->rows;
  const bool ok =
      a.value_heads % a.key_heads == 0 && a.q->cols == int64_t{a.key_heads} * a.key_dim &&
      a.k->cols == a.q->cols && a.k->rows == T && a.v->rows == T &&
      a.v->cols == int64_t{a.value_heads} * a.value_dim && a.g->rows == T && a.g->cols == a.value_heads &&
      a.beta->rows == T && a.state->numel() == int64_t{a.value_heads} * a.key_dim * a.value_dim &&
      a.out->rows == T && a.out->cols == a.v->cols &&
      (a.row_states == nullptr || (a.row_states->rows <= T && a.row_states->cols == a.state->numel()));
  if (!ok) fail("internal error: cpu backend: gdn argument shapes");
  require(a.value_dim <= kMaxValueDim,
          str("linear attention value heads of ", a.value_dim, " values: the CPU backend takes up to ",
              kMaxValueDim),
          "cpu backend");
}

// The loops of recurrent_head over one row of S (Dv values).
inline void add_row_times(const float* row, float kd, float qd, float* sk, float* sq, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    sk[j] += row[j] * kd;
    sq[j] += row[j] * qd;
  }
}
inline void decay_and_add(float* row, float decay, float kd, const float* delta, int64_t n) {
  for (int64_t j = 0; j < n; ++j) row[j] = row[j] * decay + kd * delta[j];
}

// One value head, all T rows, token by token. With S' = exp(g) S + k delta^T the output is
// S'^T q = exp(g) S^T q + (k . q) delta, so one read of S gives both S^T k and S^T q and a second pass
// writes S' (the state, 64 KiB a head, stays in L2 between the passes).
MTPLX_VECTOR_CLONES void recurrent_head(const GdnArgs& a, int hv) {
  const int64_t T = a.q->rows, Dk = a.key_dim, Dv = a.value_dim;
  const int64_t kh = hv / (a.value_heads / a.key_heads);
  float* S = a.state->data + hv * Dk * Dv;
  // Two arrays of their own: carved from one buffer, the compiler could not tell them apart and left
  // the loops over S scalar (4-7x slower).
  alignas(64) float sk[kMaxValueDim];  // S^T k, then delta
  alignas(64) float sq[kMaxValueDim];  // S^T q
  for (int64_t t = 0; t < T; ++t) {
    const float* q = a.q->data + t * a.q->cols + kh * Dk;
    const float* k = a.k->data + t * a.k->cols + kh * Dk;
    const float* v = a.v->data + t * a.v->cols + hv * Dv;
    const float decay = std::exp(a.g->data[t * a.value_heads + hv]);
    const float beta = a.beta->data[t * a.value_heads + hv];
    std::fill(sk, sk + Dv, 0.0f);
    std::fill(sq, sq + Dv, 0.0f);
    for (int64_t d = 0; d < Dk; ++d) add_row_times(S + d * Dv, k[d], q[d], sk, sq, Dv);
    const float kq = cpu::dot_lanes(k, q, Dk);
    float* o = a.out->data + t * a.out->cols + hv * Dv;
    for (int64_t j = 0; j < Dv; ++j) {
      const float delta = beta * (v[j] - decay * sk[j]);
      o[j] = decay * sq[j] + kq * delta;
      sk[j] = delta;
    }
    for (int64_t d = 0; d < Dk; ++d) decay_and_add(S + d * Dv, decay, k[d], sk, Dv);
    if (a.row_states != nullptr && t < a.row_states->rows) {
      std::copy(S, S + Dk * Dv, a.row_states->data + t * a.row_states->cols + hv * Dk * Dv);
    }
  }
}

// Scratch for one chunk of one head; allocated once per head.
struct ChunkScratch {
  std::vector<float> q, k, v, G, beta;  // gathered rows: [L, Dk], [L, Dk], [L, Dv], [L], [L]
  std::vector<float> A;                 // [L, L]: T = (I + A)^-1 after the solve
  std::vector<float> U, W;              // [L, Dv], [L, Dk]
  ChunkScratch(int64_t Dk, int64_t Dv)
      : q(kChunk * Dk),
        k(kChunk * Dk),
        v(kChunk * Dv),
        G(kChunk),
        beta(kChunk),
        A(kChunk * kChunk),
        U(kChunk * Dv),
        W(kChunk * Dk) {}
};

MTPLX_VECTOR_CLONES void chunk_head(const GdnArgs& a, int hv, int64_t t0, int64_t L, ChunkScratch& s) {
  const int64_t Dk = a.key_dim, Dv = a.value_dim;
  const int64_t kh = hv / (a.value_heads / a.key_heads);
  float* S = a.state->data + hv * Dk * Dv;
  float cumulative = 0;
  for (int64_t i = 0; i < L; ++i) {
    const int64_t t = t0 + i;
    std::copy_n(a.q->data + t * a.q->cols + kh * Dk, Dk, s.q.data() + i * Dk);
    std::copy_n(a.k->data + t * a.k->cols + kh * Dk, Dk, s.k.data() + i * Dk);
    std::copy_n(a.v->data + t * a.v->cols + hv * Dv, Dv, s.v.data() + i * Dv);
    cumulative += a.g->data[t * a.value_heads + hv];
    s.G[i] = cumulative;
    s.beta[i] = a.beta->data[t * a.value_heads + hv];
  }
  const auto dot = cpu::dot_lanes;
  // T = (I + A)^-1 by forward substitution on the strictly lower-triangular A (T is unit lower triangular).
  for (int64_t i = 0; i < L; ++i) {
    float* Ti = s.A.data() + i * kChunk;
    for (int64_t j = 0; j < i; ++j) {
      const float aij =
          s.beta[i] * dot(s.k.data() + i * Dk, s.k.data() + j * Dk, Dk) * std::exp(s.G[i] - s.G[j]);
      Ti[j] = aij;
    }
    // Row i of T: T[i, j] = -sum_{m=j}^{i-1} A[i, m] T[m, j] for j < i, with T[m, m] = 1.
    std::vector<float> a_row(Ti, Ti + i);
    for (int64_t j = 0; j < i; ++j) {
      float sum = a_row[j];
      for (int64_t m = j + 1; m < i; ++m) sum += a_row[m] * s.A[m * kChunk + j];
      Ti[j] = -sum;
    }
    Ti[i] = 1.0f;
  }
  // U = T (beta V), W = T (beta exp(G) K).
  for (int64_t i = 0; i < L; ++i) {
    float* u = s.U.data() + i * Dv;
    float* w = s.W.data() + i * Dk;
    std::fill(u, u + Dv, 0.0f);
    std::fill(w, w + Dk, 0.0f);
    for (int64_t j = 0; j <= i; ++j) {
      const float t_ij = s.A[i * kChunk + j];
      const float fv = t_ij * s.beta[j];
      const float fk = fv * std::exp(s.G[j]);
      for (int64_t c = 0; c < Dv; ++c) u[c] += fv * s.v[j * Dv + c];
      for (int64_t d = 0; d < Dk; ++d) w[d] += fk * s.k[j * Dk + d];
    }
  }
  // V' = U - W S  (stored into U).
  for (int64_t i = 0; i < L; ++i) {
    float* u = s.U.data() + i * Dv;
    for (int64_t d = 0; d < Dk; ++d) {
      const float wd = s.W[i * Dk + d];
      const float* row = S + d * Dv;
      for (int64_t c = 0; c < Dv; ++c) u[c] -= wd * row[c];
    }
  }
  // O = (exp(G) Q) S + tril[(Q K^T) exp(G_i - G_j)] V'.
  for (int64_t i = 0; i < L; ++i) {
    float* o = a.out->data + (t0 + i) * a.out->cols + hv * Dv;
    std::fill(o, o + Dv, 0.0f);
    const float eg = std::exp(s.G[i]);
    for (int64_t d = 0; d < Dk; ++d) {
      const float qd = s.q[i * Dk + d] * eg;
      const float* row = S + d * Dv;
      for (int64_t c = 0; c < Dv; ++c) o[c] += qd * row[c];
    }
    for (int64_t j = 0; j <= i; ++j) {
      const float f = dot(s.q.data() + i * Dk, s.k.data() + j * Dk, Dk) * std::exp(s.G[i] - s.G[j]);
      for (int64_t c = 0; c < Dv; ++c) o[c] += f * s.U[j * Dv + c];
    }
  }
  // S <- exp(G_last) S + (exp(G_last - G) K)^T V'.
  const float last = s.G[L - 1];
  const float decay = std::exp(last);
  for (int64_t d = 0; d < Dk; ++d) {
    float* row = S + d * Dv;
    for (int64_t c = 0; c < Dv; ++c) row[c] *= decay;
    for (int64_t j = 0; j < L; ++j) {
      const float f = std::exp(last - s.G[j]) * s.k[j * Dk + d];
      for (int64_t c = 0; c < Dv; ++c) row[c] += f * s.U[j * Dv + c];
    }
  }
}

}  // namespace

void CpuBackend::gdn_recurrent(const GdnArgs& args) {
  check_args(args);
  pool_.parallel_for(args.value_heads, [&](int64_t begin, int64_t end) {
    for (int64_t hv = begin; hv < end; ++hv) recurrent_head(args, static_cast<int>(hv));
  });
}

void CpuBackend::gdn_chunked(const GdnArgs& args) {
  check_args(args);
  if (args.row_states != nullptr) {  // per-row states only exist in the recurrent form
    gdn_recurrent(args);
    return;
  }
  const int64_t T = args.q->rows;
  pool_.parallel_for(args.value_heads, [&](int64_t begin, int64_t end) {
    ChunkScratch scratch(args.key_dim, args.value_dim);
    for (int64_t hv = begin; hv < end; ++hv) {
      for (int64_t t0 = 0; t0 < T; t0 += kChunk) {
        chunk_head(args, static_cast<int>(hv), t0, std::min<int64_t>(kChunk, T - t0), scratch);
      }
    }
  });
}

}  // namespace mtplx

#include "decode/accept.h"

#include "base/error.h"
#include "decode/rng.h"

namespace mtplx {
namespace {

void check_shapes(std::size_t k, std::size_t rows, std::size_t expected_rows, std::string_view where) {
  if (k > static_cast<std::size_t>(kMaxDraftTokens))
    fail(str(k, " draft tokens exceed the limit of ", kMaxDraftTokens), where,
         "draft fewer tokens per cycle");
  if (rows != expected_rows)
    fail(str("got ", rows, " target rows for ", k, " drafts, expected ", expected_rows), where,
         "pass K drafts with K + 1 verify rows");
}

}  // namespace

float acceptance_probability(float p, float q) {
  return q <= p ? 1.0f : p / q;
}

void residual_distribution(const Distribution& p, const Distribution& q, Distribution& out) {
  if (p.vocab() != q.vocab())
    fail(str("target vocabulary ", p.vocab(), " != draft vocabulary ", q.vocab()), "residual_distribution");
  out.reset_sparse(p.vocab());
  // Merge walk over both supports in ascending id order (a dense side lists every id), O(|p| + |q|).
  int i = 0, j = 0;
  while (i < p.size()) {
    const std::int32_t id = p.id_at(i);
    while (j < q.size() && q.id_at(j) < id) ++j;  // ids only in q have p = 0: residual 0
    const float qv = j < q.size() && q.id_at(j) == id ? q.probs()[static_cast<std::size_t>(j)] : 0.0f;
    const float diff = p.probs()[static_cast<std::size_t>(i)] - qv;
    if (diff > 0) out.push(id, diff);
    ++i;
  }
  if (out.size() == 0) {
    for (int t = 0; t < p.size(); ++t)
      if (p.probs()[static_cast<std::size_t>(t)] > 0)
        out.push(p.id_at(t), p.probs()[static_cast<std::size_t>(t)]);
  }
  out.normalize();
}

Verdict verify_sampled(std::span<const std::int32_t> drafts, std::span<const Distribution> q,
                       std::span<const Distribution> p, Rng& rng, Distribution& scratch) {
  constexpr std::string_view kWhere = "verify_sampled";
  check_shapes(drafts.size(), p.size(), drafts.size() + 1, kWhere);
  if (q.size() != drafts.size())
    fail(str("got ", q.size(), " draft distributions for ", drafts.size(), " drafts"), kWhere,
         "pass the distribution each draft was sampled from");
  Verdict v;
  v.drafted = static_cast<int>(drafts.size());
  for (std::size_t i = 0; i < drafts.size(); ++i) {
    const std::int32_t d = drafts[i];
    const float qd = q[i].prob(d);
    if (!(qd > 0))
      fail(str("draft ", i, " (token ", d, ") has draft probability 0"), kWhere,
           "sample each draft from the q passed here");
    if (rng.uniform() < acceptance_probability(p[i].prob(d), qd)) {
      v.tokens[i] = d;
      ++v.accepted;
      continue;
    }
    residual_distribution(p[i], q[i], scratch);
    v.tokens[i] = sample(scratch, rng);
    return v;
  }
  v.tokens[drafts.size()] = sample(p[drafts.size()], rng);
  return v;
}

Verdict verify_greedy(std::span<const std::int32_t> drafts, std::span<const std::int32_t> target_argmax) {
  check_shapes(drafts.size(), target_argmax.size(), drafts.size() + 1, "verify_greedy");
  Verdict v;
  v.drafted = static_cast<int>(drafts.size());
  while (v.accepted < v.drafted && drafts[static_cast<std::size_t>(v.accepted)] ==
                                       target_argmax[static_cast<std::size_t>(v.accepted)]) {
    v.tokens[static_cast<std::size_t>(v.accepted)] = drafts[static_cast<std::size_t>(v.accepted)];
    ++v.accepted;
  }
  v.tokens[static_cast<std::size_t>(v.accepted)] = target_argmax[static_cast<std::size_t>(v.accepted)];
  return v;
}

}  // namespace mtplx

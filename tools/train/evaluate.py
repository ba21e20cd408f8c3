"""Held-out measurements for the default model: perplexity and MTP draft acceptance.

`trunk(x)` returns (hidden post final norm [B,L,H], logits [B,L,V]); `mtp(hidden, tokens, depth,
next_tokens=None, draft=None)` returns MTP logits per depth (see mtp_head.MTPHead.forward).

Acceptance, greedy (exact for speculative decoding with greedy verification): on the model's own
greedy continuation y of a held-out prompt, the trunk's argmax g[t] after position t equals
y[t+1]. At slot t (the last emitted token is y[t+1]) the head drafts d1 from (y[t+1], h[t]), then
d2 from (d1, h'1), d3 from (d2, h'2). Draft k is accepted if d1..dk all equal g[t+1]..g[t+k]. If
they do, the verify context is exactly y, so the check is the real one. We report, over slots of
the continuation, the fraction with the first k drafts accepted (cumulative), the conditional
rate (accepted at k given accepted at k-1), and the mean tokens per verify cycle 1 + sum_k.

Acceptance, sampled (temperature/top-p/top-k): p = filtered trunk distribution, q = filtered MTP
distribution (the same filter), acceptance probability of a draft sampled from q is
E_{x~q}[min(1, p(x)/q(x))] = sum_x min(p(x), q(x)), computed exactly per step. Depth 1 is exact.
For depth k > 1 the chain is fed the trunk's own sampled continuation (teacher forcing with
tokens drawn from p) instead of the accepted draft (whose law given acceptance is min(p,q)/alpha),
and the chained figure is the product of the per-depth probabilities: an estimate, stated as such.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def filtered_probs(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Temperature, then top-k, then top-p over the renormalised top-k (transformers' order); full-V probs."""
    scaled = logits.float() / temperature
    vals, idx = scaled.topk(top_k, dim=-1)  # sorted, descending
    probs = vals.softmax(-1)
    before = probs.cumsum(-1) - probs
    probs = torch.where(before < top_p, probs, torch.zeros_like(probs))
    probs = probs / probs.sum(-1, keepdim=True)
    return torch.zeros_like(scaled).scatter_(-1, idx, probs)


@torch.no_grad()
def perplexity(trunk, mtp, chunks: torch.Tensor, batch: int) -> dict:
    """Mean next-token CE (trunk) and x[t+2] CE (MTP depth 1, teacher-forced) over [N, L] chunks."""
    tot, tot_mtp, n, n_mtp = 0.0, 0.0, 0, 0
    for i in range(0, chunks.shape[0], batch):
        x = chunks[i:i + batch]
        h, logits = trunk(x)
        tot += F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), x[:, 1:].flatten(), reduction="sum").item()
        n += x[:, 1:].numel()
        m = mtp(h[:, :-2], x[:, 1:-1], 1)[0]
        tot_mtp += F.cross_entropy(m.flatten(0, 1).float(), x[:, 2:].flatten(), reduction="sum").item()
        n_mtp += x[:, 2:].numel()
    return {"tokens": n, "loss": tot / n, "ppl": math.exp(tot / n), "mtp_loss": tot_mtp / n_mtp,
            "mtp_ppl": math.exp(tot_mtp / n_mtp)}


@torch.no_grad()
def generate(trunk_last, prompts: torch.Tensor, n_new: int, pick) -> torch.Tensor:
    """Append n_new tokens, recomputing the whole prefix each step (no cache: simple and exact)."""
    y = prompts
    for _ in range(n_new):
        y = torch.cat([y, pick(trunk_last(y))[:, None]], dim=1)
    return y


@torch.no_grad()
def greedy_acceptance(trunk, mtp, y: torch.Tensor, prompt_len: int, depth: int) -> dict:
    h, logits = trunk(y)
    g = logits.argmax(-1)  # g[t]: trunk's greedy token after position t
    L = y.shape[1]
    drafts = []
    outs = mtp(h[:, :L - 1], y[:, 1:L], depth, draft=lambda lg: lg.argmax(-1))
    for o in outs:
        drafts.append(o.argmax(-1))  # [B, L-1]: slot t
    slots = torch.arange(prompt_len - 1, L - depth, device=y.device)  # every depth has a target
    ok = torch.ones(y.shape[0], slots.numel(), dtype=torch.bool, device=y.device)
    cumulative, conditional = [], []
    for k in range(1, depth + 1):
        prev = ok.float().mean().item()
        ok = ok & (drafts[k - 1][:, slots] == g[:, slots + k])
        cumulative.append(ok.float().mean().item())
        conditional.append(cumulative[-1] / prev if prev > 0 else 0.0)
    cont = torch.arange(prompt_len - 1, L - 1, device=y.device)
    consistency = (y[:, cont + 1] == g[:, cont]).float().mean().item()
    return {"cumulative": cumulative, "conditional": conditional,
            "tokens_per_cycle": [1 + sum(cumulative[:k]) for k in range(1, depth + 1)],
            "slots": int(slots.numel() * y.shape[0]), "continuation_matches_argmax": consistency,
            "distinct_token_fraction": distinct_fraction(y[:, prompt_len:])}


@torch.no_grad()
def teacher_forced_depth1(trunk, mtp, chunks: torch.Tensor, batch: int) -> dict:
    """Held-out text itself: draft from (x[t+1], h[t]) vs the trunk's argmax after x[..t+1] (exact at depth 1)."""
    hit, n = 0, 0
    for i in range(0, chunks.shape[0], batch):
        x = chunks[i:i + batch]
        h, logits = trunk(x)
        g = logits.argmax(-1)
        d1 = mtp(h[:, :-2], x[:, 1:-1], 1)[0].argmax(-1)  # slots 0..L-3, targets g[t+1]
        hit += (d1 == g[:, 1:-1]).sum().item()
        n += d1.numel()
    return {"depth1": hit / n, "slots": n}


@torch.no_grad()
def sampled_acceptance(trunk, mtp, y: torch.Tensor, prompt_len: int, depth: int, sampler: dict) -> dict:
    h, logits = trunk(y)
    L = y.shape[1]
    n = L - 1
    pad = torch.zeros_like(y[:, :1])
    # Teacher forcing with the trunk's own samples: depth k+1 takes y[t+k+1].
    next_tokens = [torch.cat([y[:, k + 2:L]] + [pad] * (k + 1), dim=1) for k in range(depth - 1)]
    outs = mtp(h[:, :n], y[:, 1:L], depth, next_tokens=next_tokens)
    slots = torch.arange(prompt_len - 1, L - depth, device=y.device)
    per_depth, chained = [], []
    prod = None
    for k in range(1, depth + 1):
        p = filtered_probs(logits[:, slots + k], **sampler)
        q = filtered_probs(outs[k - 1][:, slots], **sampler)
        alpha = torch.minimum(p, q).sum(-1)  # [B, slots]
        per_depth.append(alpha.mean().item())
        prod = alpha if prod is None else prod * alpha
        chained.append(prod.mean().item())
    return {"per_depth": per_depth, "chained_estimate": chained,
            "tokens_per_cycle_estimate": [1 + sum(chained[:k]) for k in range(1, depth + 1)],
            "slots": int(slots.numel() * y.shape[0]), "distinct_token_fraction": distinct_fraction(y[:, prompt_len:])}


def distinct_fraction(y: torch.Tensor) -> float:
    """Mean over rows of (distinct tokens / tokens): low values flag repetitive (looping) text."""
    return float(sum(row.unique().numel() / row.numel() for row in y))/ max(1, y.shape[0])

"""The Qwen3.5 native MTP head in plain PyTorch, written from ../shared/reference/qwen35_spec.md §4.

  e    = embed(x[t+1])                                  (shared embed_tokens)
  u    = concat(RMSNorm1p_pre_fc_norm_embedding(e), RMSNorm1p_pre_fc_norm_hidden(h[t]))
  z    = u @ fc^T                                       (mtp.fc.weight [H, 2H])
  z    = full-attention decoder layer (gated attention, q/k norm, partial NeoX RoPE at position t)
  h'   = RMSNorm1p_norm(z);  logits(x[t+2]) = h' @ embed^T  (tied LM head)

h[t] is the trunk's post-final-norm hidden. Recursion (depth k > 1): the next step takes the draft
token (or, in training, the true token) and h' of the previous step, at position t + k - 1, and its
attention sees the depth-1 entries of slots 0..t plus the entries of its own chain (slot t, depths
2..k), as an MTP KV cache does during drafting.

Parameter names (state_dict) are exactly those of real checkpoints without the "mtp." prefix:
fc, pre_fc_norm_embedding, pre_fc_norm_hidden, layers.0.{input_layernorm, self_attn.{q,k,v,o}_proj,
self_attn.{q,k}_norm, post_attention_layernorm, mlp.{gate,up,down}_proj}, norm. All RMSNorm
weights are zero-centred (effective gain 1 + w), as Hugging Face stores them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _at_least_f32(x):
    return x.to(torch.promote_types(x.dtype, torch.float32))


class RMSNorm1p(nn.Module):
    """y = x * rsqrt(mean(x^2) + eps) * (1 + w), in fp32, cast back to x's dtype; w starts at 0."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        xf = _at_least_f32(x)
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * (1.0 + _at_least_f32(self.weight))
        return y.type_as(x)


def rope_cos_sin(positions: torch.Tensor, rotary_dim: int, theta: float, dtype=torch.float32):
    """cos/sin [T, rotary_dim/2] (fp32, or float64 for a float64 model) for integer positions [T]."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, rotary_dim, 2, device=positions.device, dtype=dtype)
                                / rotary_dim))
    ang = positions.to(dtype)[:, None] * inv_freq[None, :]
    return ang.cos(), ang.sin()


def apply_rope(x, cos, sin, rotary_dim: int):
    """NeoX rotation of the first rotary_dim dims of x [B, T, heads, D]; cos/sin [T, rotary_dim/2]."""
    half = rotary_dim // 2
    xf = _at_least_f32(x)
    a, b, rest = xf[..., :half], xf[..., half:rotary_dim], xf[..., rotary_dim:]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.cat([a * c - b * s, b * c + a * s, rest], dim=-1).type_as(x)


def attention(q, k, v, mask, scale):
    """q [B,Hq,T,D], k/v [B,Hq,S,D], mask bool [T,S] (True = may attend)."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    scores = (_at_least_f32(q) @ _at_least_f32(k).transpose(-1, -2)) * scale
    scores = scores.masked_fill(~mask, float("-inf"))
    return (scores.softmax(-1) @ _at_least_f32(v)).type_as(q)


def chain_mask(n: int, depth: int, device) -> torch.Tensor:
    """Which keys a depth-`depth` query of slot t sees, over keys laid out as [depth-1 slots | depth-2 slots | ...].

    Depth-1 block: slots j <= t (causal). Blocks of depth 2..depth: only slot t (the query's own chain).
    """
    i = torch.arange(n, device=device)
    blocks = [i[None, :] <= i[:, None]]
    eye = i[None, :] == i[:, None]
    blocks += [eye] * (depth - 1)
    return torch.cat(blocks, dim=1)


class MTPAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        H, D = cfg.hidden_size, cfg.head_dim
        self.Hq, self.Hkv, self.D = cfg.num_attention_heads, cfg.num_key_value_heads, D
        rope = getattr(cfg, "rope_parameters", None) or {}
        prf = rope.get("partial_rotary_factor", getattr(cfg, "partial_rotary_factor", 0.25))
        self.rotary_dim = int(D * prf)
        self.theta = float(rope.get("rope_theta", getattr(cfg, "rope_theta", 1e7)))
        self.q_proj = nn.Linear(H, 2 * self.Hq * D, bias=False)
        self.k_proj = nn.Linear(H, self.Hkv * D, bias=False)
        self.v_proj = nn.Linear(H, self.Hkv * D, bias=False)
        self.o_proj = nn.Linear(self.Hq * D, H, bias=False)
        self.q_norm = RMSNorm1p(D, cfg.rms_norm_eps)
        self.k_norm = RMSNorm1p(D, cfg.rms_norm_eps)

    def project(self, x, positions):
        """(q [B,T,Hq,D], gate [B,T,Hq*D], k [B,T,Hkv,D], v [B,T,Hkv,D]) for x [B,T,H]."""
        B, T, _ = x.shape
        qg = self.q_proj(x).view(B, T, self.Hq, 2 * self.D)
        q, gate = qg[..., :self.D], qg[..., self.D:]  # per head: [query(D) ; gate(D)]
        cos, sin = rope_cos_sin(positions, self.rotary_dim, self.theta,
                                torch.promote_types(self.k_proj.weight.dtype, torch.float32))
        q = apply_rope(self.q_norm(q), cos, sin, self.rotary_dim)
        k = apply_rope(self.k_norm(self.k_proj(x).view(B, T, self.Hkv, self.D)), cos, sin, self.rotary_dim)
        v = self.v_proj(x).view(B, T, self.Hkv, self.D)
        return q, gate.reshape(B, T, self.Hq * self.D), k, v

    def attend(self, q, gate, keys, values, mask):
        B, T = q.shape[:2]
        group = self.Hq // self.Hkv  # query head j uses kv head j // group
        k = keys.repeat_interleave(group, dim=2).transpose(1, 2)
        v = values.repeat_interleave(group, dim=2).transpose(1, 2)
        o = attention(q.transpose(1, 2), k, v, mask, self.D ** -0.5)
        o = o.transpose(1, 2).reshape(B, T, self.Hq * self.D)
        return self.o_proj(o * torch.sigmoid(gate))


class MTPMLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MTPLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = RMSNorm1p(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = MTPAttention(cfg)
        self.post_attention_layernorm = RMSNorm1p(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MTPMLP(cfg)


class MTPHead(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        H = cfg.hidden_size
        self.fc = nn.Linear(2 * H, H, bias=False)
        self.pre_fc_norm_embedding = RMSNorm1p(H, cfg.rms_norm_eps)
        self.pre_fc_norm_hidden = RMSNorm1p(H, cfg.rms_norm_eps)
        self.layers = nn.ModuleList([MTPLayer(cfg)])
        self.norm = RMSNorm1p(H, cfg.rms_norm_eps)

    def init_weights(self, std: float, generator=None):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, std, generator=generator)
            elif isinstance(m, RMSNorm1p):
                nn.init.zeros_(m.weight)

    def forward(self, embed_weight, hidden, tokens, depth: int = 1, next_tokens=None, draft=None):
        """MTP outputs h' (post mtp.norm) for depths 1..depth, each [B, n, H].

        hidden [B, n, H]: trunk post-final-norm hidden of slots 0..n-1; tokens [B, n]: x[t+1] per slot.
        Step k+1 takes as token next_tokens[k-1] (teacher forcing, [B, n]) if given, else draft(h'_k),
        and as hidden h'_k. Slot t of depth k sits at RoPE position t + k - 1.
        """
        layer = self.layers[0]
        n = hidden.shape[1]
        slots = torch.arange(n, device=hidden.device)
        keys, values, outs = [], [], []
        for k in range(depth):
            u = torch.cat([self.pre_fc_norm_embedding(F.embedding(tokens, embed_weight)),
                           self.pre_fc_norm_hidden(hidden)], dim=-1)
            z = self.fc(u)
            q, gate, kk, vv = layer.self_attn.project(layer.input_layernorm(z), slots + k)
            keys.append(kk)
            values.append(vv)
            mask = chain_mask(n, k + 1, hidden.device)
            z = z + layer.self_attn.attend(q, gate, torch.cat(keys, 1), torch.cat(values, 1), mask)
            z = z + layer.mlp(layer.post_attention_layernorm(z))
            h = self.norm(z)
            outs.append(h)
            if k + 1 < depth:
                tokens = next_tokens[k] if next_tokens is not None else draft(h)
                hidden = h
        return outs

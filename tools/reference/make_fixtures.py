#!/usr/bin/env python3
"""Build the oracle fixtures that the mtplx C++ engine is tested against.

Every fixture is a tiny Qwen3.5 checkpoint with random weights but the real head dimensions
(full-attention head_dim 256, partial rotary 0.25, GDN key/value head dim 128, conv kernel 4),
written exactly as such checkpoints are laid out on disk in the wild:

  hf-causal-tied    Qwen3_5ForCausalLM layout, tied embeddings, bf16, one file, + mtp.*
  hf-cond-untied    Qwen3_5ForConditionalGeneration layout, untied lm_head, bf16, 2 shards, + mtp.*
  hf-causal-f32     like hf-causal-tied but float32, 2 layers, other rope_theta
  mlx-q8 / mlx-q4   hf-causal-tied converted the way mlx-lm does, affine 8 / 4 bit, group 64
  mtplx-q8 / -q4    MLX trunk + mtp.safetensors sidecar (body-int4) + mtplx_runtime.json
  mtplx-q8-nodelta  like mtplx-q8 but the sidecar norms are stored with +1 already applied

Each folder also gets a tokenizer (byte-level BPE trained here) and `reference.safetensors`:
  tokens [T] I32, logits [T,V] F32 (transformers, fp32), hidden [T,H] F32 (post final norm,
  transformers), mtp_logits [T-1,V] F32 (our float64 implementation; transformers has no MTP).
The references are always computed from the files as written (read back from disk), and the
float64 implementation here (written from the spec) is checked against transformers.

Run on a machine with torch + transformers (>= 5.x with qwen3_5) + safetensors + tokenizers:
  python3 tools/reference/make_fixtures.py --out /tmp/fixtures --tar $OUT/fixtures.tar.gz
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import filecmp
import json
import platform
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
CHAT_TEMPLATE_PATH = HERE / "qwen3_5_chat_template.jinja"

SEED = 3535
SEQ_LEN = 100  # > 64, so the chunked GDN prefill (chunk 64) spans two chunks
VOCAB_SIZE = 512
HIDDEN_SIZE = 64  # MLX group size 64 divides it
INTERMEDIATE_SIZE = 128
HEAD_DIM = 256
LINEAR_HEAD_DIM = 128
CONV_KERNEL = 4
RMS_EPS = 1e-6
BPE_VOCAB_SIZE = 480  # 256 byte tokens + merges; the added tokens come after
GROUP_SIZE = 64

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # special=True in Qwen's files
CONTROL_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>",
                  "<think>", "</think>"]  # added tokens with special=False, as in Qwen's files

# Qwen3.5 pre-tokenizer regex (spec §6.1; transformers tokenization_qwen3_5.py).
PRETOKENIZE_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
                     r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Norms that mlx-lm's sanitize shifts by +1 (spec §5.4): not linear_attn.norm, not mtp.*.
MLX_SHIFTED_SUFFIXES = (".input_layernorm.weight", ".post_attention_layernorm.weight",
                        "model.norm.weight", ".q_norm.weight", ".k_norm.weight")
MTP_BODY_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")

TRAINING_TEXT = r'''
The quick brown fox jumps over the lazy dog. A hybrid language model mixes two kinds of layers:
most layers use a gated delta rule, a kind of linear attention with a fixed-size recurrent state,
and every fourth layer uses ordinary softmax attention with a key-value cache. The state of a
linear layer does not grow with the length of the context, which is why such models are fast on
long prompts. The attention layers keep the model precise when it must copy or look things up.

When the model writes an answer, it first thinks. The thinking goes between the think tags, and
the answer follows. A draft head predicts the token after next; the main model checks the drafts
in one pass, keeps the ones it agrees with, and throws the rest away. Nothing changes in the text
that comes out: speculative decoding only makes it arrive sooner.

Weights are stored in safetensors files. Each file starts with a small JSON header that names every
tensor, its data type, its shape and its byte offsets; the raw data follows. Quantized checkpoints
keep packed integer codes with a scale and a bias for every group of sixty-four weights.

def rms_norm(x, weight, eps=1e-6):
    variance = (x * x).mean(axis=-1, keepdims=True)
    return x / (variance + eps) ** 0.5 * (1.0 + weight)

def softmax(values):
    peak = max(values)
    exps = [math.exp(v - peak) for v in values]
    total = sum(exps)
    return [e / total for e in exps]

for index, token in enumerate(tokens):
    if token in stop_tokens:
        break
    print(f"{index:4d} {token!r}")

int main(int argc, char** argv) {
    std::vector<float> logits(vocab_size, 0.0f);
    for (int i = 0; i < argc; ++i) {
        std::printf("%s\n", argv[i]);
    }
    return 0;
}

{"role": "user", "content": "What is 12 + 30?"}
{"role": "assistant", "content": "12 + 30 = 42."}
{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}

Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 256 1024 3.14159 2026-11-25 12:30:45 +1 -1 1e-6 0x7f.
Punctuation and symbols: ( ) [ ] { } < > = + - * / % & | ^ ~ ! ? . , ; : ' " ` # @ $ \ _
I'm sure you'll see that we've done it; they're here, she's there, and it'd be fine.
Unicode text: café, naïve, résumé, Zürich, São Paulo, München, Ångström, jalapeño, crème brûlée.
Greek: αβγδ λόγος. Russian: привет, как дела? Chinese: 你好，世界。模型正在思考。 Japanese: こんにちは。
Korean: 안녕하세요. Arabic: مرحبا. Hindi: नमस्ते दुनिया. Emoji: 🙂 🚀 ✅.
    Indented lines, tabs	and	trailing spaces   
and blank lines follow.


The end of the training text repeats a few common words so that merges form: the the the model
model model token token token layer layer layer state state state cache cache cache attention
attention attention draft draft draft verify verify verify accept accept accept reject reject.
'''


# ----------------------------------------------------------------------------------------------
# Fixture specifications
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class HFSpec:
    """A transformers-format checkpoint."""
    name: str
    layout: str  # "causal" (Qwen3_5ForCausalLM) or "cond" (Qwen3_5ForConditionalGeneration)
    dtype: torch.dtype
    tie: bool
    num_layers: int
    layer_types: tuple[str, ...] | None  # None: transformers' default rule (i+1) % 4 == 0
    linear_k_heads: int
    linear_v_heads: int
    heads: int
    kv_heads: int
    rope_theta: float
    shards: int
    seed: int
    description: str = ""


@dataclasses.dataclass(frozen=True)
class MLXSpec:
    """An mlx-lm style conversion of an HF fixture (+ optionally an MTPLX sidecar)."""
    name: str
    source: str
    bits: int
    overrides: dict  # per-module entries of the quantization block
    mtplx: str | None = None  # None, "delta" or "shifted" (sidecar MTP norm encoding)
    seed: int = 0
    description: str = ""


HF_SPECS = [
    HFSpec("hf-causal-tied", "causal", torch.bfloat16, True, 4, None, 2, 4, 2, 1, 1e7, 1, SEED + 1,
           "Qwen3_5ForCausalLM layout (model.*), tied embeddings (no lm_head tensor), bf16, one "
           "model.safetensors with mtp.* appended; layers 0-2 GDN, 3 full attention"),
    HFSpec("hf-cond-untied", "cond", torch.bfloat16, False, 8, None, 1, 3, 4, 2, 1e7, 2, SEED + 2,
           "Qwen3_5ForConditionalGeneration layout (model.language_model.*, model.visual.* to ignore), "
           "untied lm_head.weight, bf16, 2 shards + index, mtp.* in shard 2; GDN ratio Hv/Hk = 3, GQA 4/2"),
    HFSpec("hf-causal-f32", "causal", torch.float32, True, 2, ("linear_attention", "full_attention"),
           2, 4, 2, 1, 1e4, 1, SEED + 3,
           "like hf-causal-tied but float32, 2 layers (explicit layer_types), rope_theta 1e4"),
]
Q4_OVERRIDES = {
    "language_model.model.layers.1.mlp.down_proj": {"group_size": 64, "bits": 8},
    "language_model.model.layers.2.linear_attn.out_proj": False,
}
MLX_TEXT = "hf-causal-tied converted like mlx-lm (language_model.model.*, conv1d [C,K,1], +1 on norms, mtp.* dropped)"
MTPLX_TEXT = " + mtp.safetensors sidecar (body-int4 linears, bf16 fc/norms) + mtplx_runtime.json"
MLX_SPECS = [
    MLXSpec("mlx-q8", "hf-causal-tied", 8, {}, None, SEED + 4, MLX_TEXT + ", affine 8-bit g64"),
    MLXSpec("mlx-q4", "hf-causal-tied", 4, Q4_OVERRIDES, None, SEED + 5,
            MLX_TEXT + ", affine 4-bit g64 with per-module overrides (one 8-bit module, one `false`)"),
    MLXSpec("mtplx-q8", "hf-causal-tied", 8, {}, "delta", SEED + 6,
            "mlx-q8 trunk" + MTPLX_TEXT + "; sidecar norms zero-centred (mtplx_mtp_norm_encoding: delta)"),
    MLXSpec("mtplx-q4", "hf-causal-tied", 4, Q4_OVERRIDES, "delta", SEED + 7,
            "mlx-q4 trunk" + MTPLX_TEXT + "; sidecar norms zero-centred (delta)"),
    MLXSpec("mtplx-q8-nodelta", "hf-causal-tied", 8, {}, "shifted", SEED + 6,
            "as mtplx-q8 but sidecar norms stored with +1 applied (encoding: shifted); "
            "references identical to mtplx-q8"),
]

# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------

def log(*args):
    print(*args, flush=True)


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def sub(weights: dict, prefix: str) -> dict:
    """The entries of `weights` under `prefix`, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}


def dtype_name(dtype: torch.dtype) -> str:
    return {torch.bfloat16: "bfloat16", torch.float32: "float32"}[dtype]


def tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def versions() -> dict:
    import safetensors
    import tokenizers
    import transformers
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "safetensors": safetensors.__version__,
            "tokenizers": tokenizers.__version__, "numpy": np.__version__}


# ----------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------

def train_tokenizer():
    """Byte-level BPE with the Qwen3.5 normalizer / pre-tokenizer / decoder, plus Qwen's added tokens."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB_SIZE, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(TRAINING_TEXT.split("\n\n"), trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in CONTROL_TOKENS])
    return tok


def token_ids(tok) -> dict:
    return {t: tok.token_to_id(t) for t in SPECIAL_TOKENS + CONTROL_TOKENS}


def tokenizer_config(tok) -> dict:
    ids = token_ids(tok)
    decoder = {str(ids[t]): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                             "single_word": False, "special": t in SPECIAL_TOKENS}
               for t in SPECIAL_TOKENS + CONTROL_TOKENS}
    return {"add_bos_token": False, "add_prefix_space": False, "added_tokens_decoder": decoder,
            "bos_token": None, "chat_template": CHAT_TEMPLATE_PATH.read_text(encoding="utf-8"),
            "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>", "errors": "replace",
            "model_max_length": 262144, "pad_token": "<|endoftext|>", "split_special_tokens": False,
            "tokenizer_class": "Qwen2Tokenizer", "unk_token": None}


def generation_config(tok) -> dict:
    ids = token_ids(tok)
    return {"bos_token_id": ids["<|endoftext|>"], "do_sample": True,
            "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
            "pad_token_id": ids["<|endoftext|>"], "temperature": 0.6, "top_k": 20, "top_p": 0.95}


def write_tokenizer_files(folder: Path, tok) -> None:
    tok.save(str(folder / "tokenizer.json"))
    write_json(folder / "tokenizer_config.json", tokenizer_config(tok))


SAMPLE_TEXTS = [
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "I'll say it's fine, they're done; WE'VE SEEN IT'S OK.",
    "def f(x):\n    return x * 2  # doubled\n\n\tprint(f(21))\n",
    "Numbers 12345 and 3.14159, dates 2026-11-25.",
    "café naïve Zürich; combining: cafe\u0301 n\u0303 (NFC folds these)",
    "नमस्ते दुनिया; x\u0301y\u0308 q\u0323\u0307 (marks NFC cannot fold)",
    "你好，世界。こんにちは 안녕하세요 мир 🙂🚀",
    "   leading spaces, trailing spaces   \n\n\nnewlines\r\nCRLF",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nok<|im_end|>",
    "<tool_call>\n<function=get_weather>\n</function>\n</tool_call><|endoftext|>",
]

CHAT_SAMPLES = [
    {"messages": [{"role": "user", "content": "What is 12 + 30?"}], "kwargs": {"add_generation_prompt": True}},
    {"messages": [{"role": "system", "content": "You are terse."},
                  {"role": "user", "content": "Say hi."}],
     "kwargs": {"add_generation_prompt": True, "enable_thinking": False}},
    {"messages": [{"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": "", "reasoning_content": "Need the tool.",
                   "tool_calls": [{"type": "function", "function": {
                       "name": "get_weather", "arguments": {"city": "Paris"}}}]},
                  {"role": "tool", "content": "{\"temp_c\": 21}"},
                  {"role": "assistant", "content": "It is 21 C in Paris."},
                  {"role": "user", "content": "Thanks!"}],
     "kwargs": {"add_generation_prompt": True,
                "tools": [{"type": "function", "function": {
                    "name": "get_weather", "description": "Current weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                   "required": ["city"]}}}]}},
]


def tokenizer_reference(tok, folder: Path) -> dict:
    """Token ids from HF `tokenizers` reading tokenizer.json, and from transformers' AutoTokenizer.

    Like the real Qwen3.5 repos, tokenizer_config.json names Qwen2Tokenizer; transformers may then
    rebuild the pre-tokenizer with the Qwen2 regex (no \\p{M}), so the two can differ on combining marks.
    """
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(str(folder))
    samples = []
    for text in SAMPLE_TEXTS:
        ids = tok.encode(text).ids
        auto_ids = auto.encode(text, add_special_tokens=False)
        samples.append({"text": text, "ids": ids, "transformers_agrees": auto_ids == ids,
                        "transformers_ids": auto_ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    chats = []
    for sample in CHAT_SAMPLES:
        entry = {"messages": sample["messages"], "kwargs": sample["kwargs"]}
        try:
            text = auto.apply_chat_template(sample["messages"], tokenize=False, **sample["kwargs"])
            entry.update({"text": text, "ids": tok.encode(text).ids})
        except Exception as exc:  # recorded, not hidden: the C++ side must then not rely on it
            entry["error"] = f"{type(exc).__name__}: {exc}"
        chats.append(entry)
    return {"vocab_size_with_added": tok.get_vocab_size(with_added_tokens=True),
            "bpe_vocab_size": tok.get_vocab_size(with_added_tokens=False),
            "token_ids": token_ids(tok), "transformers_tokenizer_class": type(auto).__name__,
            "samples": samples, "chat_template_renders": chats}


# ----------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------

def text_config_kwargs(spec: HFSpec, tok) -> dict:
    eot = token_ids(tok)["<|endoftext|>"]
    kwargs = dict(
        vocab_size=VOCAB_SIZE, hidden_size=HIDDEN_SIZE, intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads, head_dim=HEAD_DIM, hidden_act="silu",
        linear_num_key_heads=spec.linear_k_heads, linear_num_value_heads=spec.linear_v_heads,
        linear_key_head_dim=LINEAR_HEAD_DIM, linear_value_head_dim=LINEAR_HEAD_DIM,
        linear_conv_kernel_dim=CONV_KERNEL, rms_norm_eps=RMS_EPS, max_position_embeddings=8192,
        tie_word_embeddings=spec.tie, attention_bias=False,
        rope_parameters={"rope_type": "default", "rope_theta": spec.rope_theta,
                         "partial_rotary_factor": 0.25, "mrope_section": [11, 11, 10],
                         "mrope_interleaved": True},
        bos_token_id=eot, eos_token_id=eot, pad_token_id=eot)
    if spec.layer_types is not None:
        kwargs["layer_types"] = list(spec.layer_types)
    return kwargs


VISION_CONFIG = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, in_channels=3,
                     patch_size=4, temporal_patch_size=2, spatial_merge_size=2,
                     out_hidden_size=HIDDEN_SIZE, num_position_embeddings=16)

# Keys real Qwen3.5 text configs carry that transformers' config class does not declare.
REAL_WORLD_TEXT_KEYS = {"mtp_num_hidden_layers": 1, "mtp_use_dedicated_embeddings": False,
                        "attn_output_gate": True, "mamba_ssm_dtype": "float32",
                        "full_attention_interval": 4}


def build_hf_model(spec: HFSpec, tok):
    from transformers import (Qwen3_5Config, Qwen3_5ForCausalLM, Qwen3_5ForConditionalGeneration,
                              Qwen3_5TextConfig)

    torch.manual_seed(spec.seed)  # transformers' own init (vision tower) draws from the global RNG
    text = text_config_kwargs(spec, tok)
    if spec.layout == "causal":
        return Qwen3_5ForCausalLM(Qwen3_5TextConfig(**text)).float()
    config = Qwen3_5Config(text_config=text, vision_config=VISION_CONFIG, tie_word_embeddings=spec.tie)
    return Qwen3_5ForConditionalGeneration(config).float()


def text_config_of(model):
    config = model.config
    return getattr(config, "text_config", None) or config


# ----------------------------------------------------------------------------------------------
# Random weights (canonical names: relative to the text model, plus lm_head.* and mtp.*)
# ----------------------------------------------------------------------------------------------

def layer_shapes(cfg, kind: str) -> dict:
    H, I, D = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    shapes = {"input_layernorm.weight": (H,), "post_attention_layernorm.weight": (H,),
              "mlp.gate_proj.weight": (I, H), "mlp.up_proj.weight": (I, H), "mlp.down_proj.weight": (H, I)}
    if kind == "linear_attention":
        key_dim = cfg.linear_num_key_heads * cfg.linear_key_head_dim
        value_dim = cfg.linear_num_value_heads * cfg.linear_value_head_dim
        conv_dim, Hv = 2 * key_dim + value_dim, cfg.linear_num_value_heads
        shapes.update({
            "linear_attn.in_proj_qkv.weight": (conv_dim, H), "linear_attn.in_proj_z.weight": (value_dim, H),
            "linear_attn.in_proj_b.weight": (Hv, H), "linear_attn.in_proj_a.weight": (Hv, H),
            "linear_attn.conv1d.weight": (conv_dim, 1, cfg.linear_conv_kernel_dim),
            "linear_attn.dt_bias": (Hv,), "linear_attn.A_log": (Hv,),
            "linear_attn.norm.weight": (cfg.linear_value_head_dim,),
            "linear_attn.out_proj.weight": (H, value_dim)})
    else:
        Hq, Hkv = cfg.num_attention_heads, cfg.num_key_value_heads
        shapes.update({
            "self_attn.q_proj.weight": (2 * Hq * D, H), "self_attn.k_proj.weight": (Hkv * D, H),
            "self_attn.v_proj.weight": (Hkv * D, H), "self_attn.o_proj.weight": (H, Hq * D),
            "self_attn.q_norm.weight": (D,), "self_attn.k_norm.weight": (D,)})
    return shapes


def canonical_shapes(cfg, tie: bool) -> dict:
    H, V = cfg.hidden_size, cfg.vocab_size
    shapes = {"embed_tokens.weight": (V, H), "norm.weight": (H,)}
    for i, kind in enumerate(cfg.layer_types):
        shapes.update({f"layers.{i}.{k}": s for k, s in layer_shapes(cfg, kind).items()})
    if not tie:
        shapes["lm_head.weight"] = (V, H)
    shapes.update({"mtp.fc.weight": (H, 2 * H), "mtp.pre_fc_norm_embedding.weight": (H,),
                   "mtp.pre_fc_norm_hidden.weight": (H,), "mtp.norm.weight": (H,)})
    shapes.update({f"mtp.layers.0.{k}": s for k, s in layer_shapes(cfg, "full_attention").items()})
    return shapes


def random_tensor(name: str, shape: tuple, gen: torch.Generator) -> torch.Tensor:
    """Non-trivial, O(1)-activation initialisation chosen by the tensor's role."""
    def randn(std):
        return torch.randn(shape, generator=gen, dtype=torch.float64) * std

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)

    if name.endswith("linear_attn.norm.weight"):
        return 1.0 + randn(0.15)  # plain-gain gated norm: around 1
    if "norm" in name.split(".")[-2]:
        # (1+w) norms (input/post_attention layernorm, q/k norm, final, mtp pre_fc and final norms):: around 0, on a 1/128 grid so that 1+w is exact in bf16 (delta/shifted agree)
        return torch.round(randn(0.15).clamp(-0.45, 0.45) * 128) / 128
    if name.endswith("A_log"):
        return uniform(-2.0, 1.5)  # A in [0.14, 4.5]
    if name.endswith("dt_bias"):
        return uniform(-4.0, 0.5)  # softplus(dt_bias) in [0.018, 0.97]
    if name.endswith("conv1d.weight"):
        return randn(0.5)
    if name.endswith(("embed_tokens.weight", "lm_head.weight")):
        return randn(0.35)  # logits std ~ 0.35 * sqrt(H) ~ 3
    gain = 0.5 if name.endswith(("o_proj.weight", "out_proj.weight", "down_proj.weight")) else 1.0
    return randn(gain / shape[-1] ** 0.5)


def random_canonical_weights(cfg, tie: bool, seed: int, dtype: torch.dtype) -> dict:
    gen = torch.Generator().manual_seed(seed)
    shapes = canonical_shapes(cfg, tie)
    return {name: random_tensor(name, shape, gen).to(dtype) for name, shape in sorted(shapes.items())}


# ----------------------------------------------------------------------------------------------
# Writing checkpoints
# ----------------------------------------------------------------------------------------------

def save_safetensors(tensors: dict, path: Path, fmt: str) -> None:
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in sorted(tensors.items())}, str(path), metadata={"format": fmt})


def write_index(folder: Path, weight_map: dict, tensors: dict) -> None:
    total = sum(tensor_bytes(t) for t in tensors.values())
    write_json(folder / "model.safetensors.index.json",
               {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})


def split_into_shards(names: list, tensors: dict, shards: int) -> list:
    """Contiguous groups of roughly equal byte size, in name order."""
    total = sum(tensor_bytes(tensors[n]) for n in names)
    groups, current, acc = [], [], 0
    for n in names:
        current.append(n)
        acc += tensor_bytes(tensors[n])
        if acc >= total * (len(groups) + 1) / shards and len(groups) < shards - 1:
            groups.append(current)
            current = []
    groups.append(current)
    return groups


def write_hf_weights(folder: Path, tensors: dict, shards: int) -> list:
    """model.safetensors, or model-0000k-of-0000n.safetensors + index (mtp.* sorts last: last shard)."""
    if shards == 1:
        save_safetensors(tensors, folder / "model.safetensors", "pt")
        return ["model.safetensors"]
    files, weight_map = [], {}
    for k, group in enumerate(split_into_shards(sorted(tensors), tensors, shards), start=1):
        fname = f"model-{k:05d}-of-{shards:05d}.safetensors"
        save_safetensors({n: tensors[n] for n in group}, folder / fname, "pt")
        weight_map.update({n: fname for n in group})
        files.append(fname)
    write_index(folder, weight_map, tensors)
    return files + ["model.safetensors.index.json"]


def saved_by_transformers(model, dtype: torch.dtype) -> tuple[dict, dict, dict]:
    """save_pretrained() into a temp dir; return (tensors as saved, config.json, observations)."""
    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory() as tmp:
        model.to(dtype).save_pretrained(tmp)
        files = sorted(p.name for p in Path(tmp).iterdir())
        tensors = {}
        for p in sorted(Path(tmp).glob("*.safetensors")):
            tensors.update(load_file(str(p)))
        config = read_json(Path(tmp) / "config.json")
    obs = {"files_written": files, "tensor_count": len(tensors),
           "has_lm_head_weight": "lm_head.weight" in tensors,
           "name_prefixes": sorted({".".join(n.split(".")[:2]) for n in tensors}),
           "dtypes": sorted({str(t.dtype) for t in tensors.values()}),
           "A_log_dtype": sorted({str(t.dtype) for n, t in tensors.items() if n.endswith("A_log")}),
           "config_keys": sorted(config), "text_config_keys": sorted(config.get("text_config", config))}
    return tensors, config, obs


def add_real_world_config_keys(config: dict, tok) -> dict:
    config = copy.deepcopy(config)
    text = config.get("text_config", config)
    for key, value in REAL_WORLD_TEXT_KEYS.items():
        text.setdefault(key, value)
    eot = token_ids(tok)["<|endoftext|>"]
    text.update({"bos_token_id": eot, "eos_token_id": eot, "pad_token_id": eot})
    return config


def on_disk_name(spec: HFSpec, canonical_name: str) -> str:
    if canonical_name.startswith(("mtp.", "lm_head.")):
        return canonical_name
    return ("model." if spec.layout == "causal" else "model.language_model.") + canonical_name


def make_hf_fixture(spec: HFSpec, folder: Path, tok) -> dict:
    """Random weights -> transformers model -> save_pretrained -> + mtp.* -> final layout."""
    model = build_hf_model(spec, tok)
    weights = random_canonical_weights(text_config_of(model), spec.tie, spec.seed, spec.dtype)
    trunk = {on_disk_name(spec, k): v.float() for k, v in weights.items() if not k.startswith("mtp.")}
    missing, unexpected = model.load_state_dict(trunk, strict=False)
    assert not unexpected, f"{spec.name}: transformers does not know {unexpected}"
    assert all(k.startswith("model.visual.") or k == "lm_head.weight" for k in missing), missing
    tensors, config, obs = saved_by_transformers(model, spec.dtype)
    obs["load_state_dict_missing"] = sorted(k for k in missing if not k.startswith("model.visual."))
    tensors.update({k: v for k, v in weights.items() if k.startswith("mtp.")})
    folder.mkdir(parents=True)
    files = write_hf_weights(folder, tensors, spec.shards)
    write_json(folder / "config.json", add_real_world_config_keys(config, tok))
    write_json(folder / "generation_config.json", generation_config(tok))
    write_tokenizer_files(folder, tok)
    return {"files": files, "saved_by_transformers": obs}


# ----------------------------------------------------------------------------------------------
# MLX affine quantization (mlx/backend/cpu/quantized.cpp `quantize`, re-implemented in numpy fp32)
# ----------------------------------------------------------------------------------------------

def mlx_affine_quantize(w: np.ndarray, bits: int, group_size: int):
    """w: float32 [out, in]. Returns (packed uint32 [out, in*bits/32], scales f32, biases f32)."""
    out_dim, in_dim = w.shape
    g = w.reshape(out_dim, in_dim // group_size, group_size).astype(np.float32)
    n_bins = np.float32((1 << bits) - 1)
    w_max, w_min = g.max(axis=-1), g.min(axis=-1)
    mask = np.abs(w_min) > np.abs(w_max)
    scale = np.maximum((w_max - w_min) / n_bins, np.float32(1e-7))
    scale = np.where(mask, scale, -scale).astype(np.float32)
    edge = np.where(mask, w_min, w_max).astype(np.float32)
    q0 = np.rint(edge / scale)
    nonzero = q0 != 0
    scale = np.where(nonzero, edge / np.where(nonzero, q0, 1), scale).astype(np.float32)
    bias = np.where(nonzero, edge, np.float32(0)).astype(np.float32)
    q = np.rint((g - bias[..., None]) / scale[..., None])
    q = np.clip(q, 0, n_bins).astype(np.uint64).reshape(out_dim, in_dim)
    return pack_codes(q, bits), scale, bias


def pack_codes(q: np.ndarray, bits: int) -> np.ndarray:
    """LSB-first: element j of a word occupies bits [j*bits, (j+1)*bits)."""
    per_word = 32 // bits
    q = q.reshape(q.shape[0], -1, per_word)
    shifts = (np.arange(per_word, dtype=np.uint64) * np.uint64(bits))
    return (q << shifts).sum(axis=-1).astype(np.uint32)


def unpack_codes(packed: np.ndarray, bits: int) -> np.ndarray:
    per_word = 32 // bits
    shifts = np.arange(per_word, dtype=np.uint64) * np.uint64(bits)
    q = (packed.astype(np.uint64)[..., None] >> shifts) & np.uint64((1 << bits) - 1)
    return q.reshape(packed.shape[0], -1)


def u32_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.uint32).view(np.int32).copy()).view(torch.uint32)


def u32_numpy(t: torch.Tensor) -> np.ndarray:
    return t.view(torch.int32).numpy().view(np.uint32)


def quantize_tensor(w: torch.Tensor, bits: int) -> dict:
    """{weight (U32), scales, biases (source dtype, bf16)} for one Linear / Embedding weight."""
    packed, scales, biases = mlx_affine_quantize(w.float().numpy(), bits, GROUP_SIZE)
    return {"weight": u32_tensor(packed), "scales": torch.from_numpy(scales).to(w.dtype),
            "biases": torch.from_numpy(biases).to(w.dtype)}


def dequantize(packed: torch.Tensor, scales: torch.Tensor, biases: torch.Tensor, bits: int,
               group_size: int) -> torch.Tensor:
    """float64 w = scale * q + bias, with scales/biases exactly as stored."""
    q = torch.from_numpy(unpack_codes(u32_numpy(packed), bits).astype(np.float64))
    q = q.reshape(q.shape[0], -1, group_size)
    return (scales.double()[..., None] * q + biases.double()[..., None]).reshape(q.shape[0], -1)


# ----------------------------------------------------------------------------------------------
# mlx-lm style conversion + MTPLX sidecar
# ----------------------------------------------------------------------------------------------

def mlx_name(hf_name: str) -> str:
    if hf_name.startswith("model.language_model."):
        return "language_model.model." + hf_name[len("model.language_model."):]
    return "language_model." + hf_name


def mlx_sanitize(hf_tensors: dict, tie: bool) -> dict:
    """mlx-lm qwen3_5 sanitize: rename, drop mtp.*/visual/tied lm_head, conv1d [C,1,K]->[C,K,1], +1 norms."""
    out = {}
    for name, t in hf_tensors.items():
        if name.startswith(("mtp.", "model.visual.")) or (tie and name == "lm_head.weight"):
            continue
        new = mlx_name(name)
        if "conv1d.weight" in new and t.shape[-1] != 1:
            t = t.permute(0, 2, 1)
        if new.endswith(MLX_SHIFTED_SUFFIXES) and t.ndim == 1:
            t = (t.float() + 1.0).to(t.dtype)
        out[new] = t.contiguous()
    return out


def quant_params(quant: dict, module: str):
    """(bits, group_size) for a module path, or None if it stays unquantized."""
    entry = quant.get(module, True)
    if entry is False:
        return None
    if isinstance(entry, dict):
        return entry["bits"], entry["group_size"]
    return quant["bits"], quant["group_size"]


def quantize_weights(tensors: dict, quant: dict) -> dict:
    """Quantize every 2-D `.weight` whose input dim is a multiple of the group size."""
    out = {}
    for name, t in tensors.items():
        module = name[: -len(".weight")]
        params = quant_params(quant, module) if name.endswith(".weight") and t.ndim == 2 else None
        if params is None or t.shape[-1] % params[1] != 0:
            out[name] = t
            continue
        out.update({f"{module}.{k}": v for k, v in quantize_tensor(t, params[0]).items()})
    return out


def quant_block(spec: MLXSpec) -> dict:
    return {"group_size": GROUP_SIZE, "bits": spec.bits, "mode": "affine", **spec.overrides}


MTP_QUANT = {"group_size": GROUP_SIZE, "bits": 4, "mode": "affine"}


def mtp_sidecar(hf_tensors: dict, encoding: str) -> dict:
    """mtp.* with fc + norms bf16 and the 7 body linears affine 4-bit g64 ("body-int4")."""
    mtp = {k: v for k, v in hf_tensors.items() if k.startswith("mtp.")}
    out = {}
    for name, t in sorted(mtp.items()):
        module = name[: -len(".weight")]
        if any(module == f"mtp.layers.0.{m}" for m in MTP_BODY_LINEARS):
            out.update({f"{module}.{k}": v for k, v in quantize_tensor(t, MTP_QUANT["bits"]).items()})
        elif t.ndim == 1 and encoding == "shifted":
            out[name] = (t.float() + 1.0).to(t.dtype)
        else:
            out[name] = t
    return out


def runtime_contract(spec: MLXSpec, generated_at: str) -> dict:
    return {
        "mtplx_version": "mtplx-fixture-1", "arch_id": "qwen3-next-mtp", "mtp_depth_max": 2,
        "recommended_profile": "sustained",
        "sampler": {"temperature": 0.6, "top_p": 0.95, "top_k": 20},
        "recommended_draft_sampler": {"temperature": 0.7, "top_p": 0.95, "top_k": 20},
        "recommended_draft_lm_head": {"bits": 4, "group_size": 64, "mode": "affine"},
        "verified_on": {"timestamp": generated_at, "hardware": "none: synthetic test fixture",
                        "machine_arch": platform.machine(), "model": spec.name},
        "exactness_baseline": {"gate": "none", "status": "synthetic",
                               "scope": "tiny random-weight fixture; references in reference.safetensors"},
        "speed_evidence": {"status": "not_measured", "note": "random weights: acceptance is meaningless"},
        "mtp_sidecar": f"mtp.* of tests/fixtures/{spec.source}; body-int4 (affine 4-bit g64) on "
                       f"mtp.layers.0 linears, fc and norms bf16, norms {spec.mtplx}",
        "base_trunk": f"tests/fixtures/mlx-q{spec.bits}",
        "artifact_role": "test-fixture",
    }


def make_mlx_fixture(spec: MLXSpec, folder: Path, source: Path, tok, generated_at: str) -> dict:
    hf_tensors = read_hf_tensors(source)
    hf_config = read_json(source / "config.json")
    tie = text_section(hf_config).get("tie_word_embeddings", hf_config.get("tie_word_embeddings", False))
    quant = quant_block(spec)
    trunk = quantize_weights(mlx_sanitize(hf_tensors, tie), quant)
    config = copy.deepcopy(hf_config)
    config.update({"quantization": quant, "quantization_config": copy.deepcopy(quant)})
    folder.mkdir(parents=True)
    save_safetensors(trunk, folder / "model.safetensors", "mlx")
    write_index(folder, {n: "model.safetensors" for n in trunk}, trunk)
    files = ["model.safetensors", "model.safetensors.index.json"]
    if spec.mtplx:
        save_safetensors(mtp_sidecar(hf_tensors, spec.mtplx), folder / "mtp.safetensors", "mlx")
        config.update({"mtplx_mtp_norm_encoding": spec.mtplx,
                       "mtplx_mtp_quantization": {**MTP_QUANT, "prequantized": True, "policy": "body-int4"},
                       "mlx_lm_extra_tensors": {"mtp_file": "mtp.safetensors"}})
        write_json(folder / "mtplx_runtime.json", runtime_contract(spec, generated_at))
        files += ["mtp.safetensors", "mtplx_runtime.json"]
    write_json(folder / "config.json", config)
    write_json(folder / "generation_config.json", generation_config(tok))
    write_tokenizer_files(folder, tok)
    meta = {"files": files, "quantization": quant}
    if spec.mtplx:
        meta["shared_trunk"] = link_identical_trunk(folder, folder.parent / f"mlx-q{spec.bits}")
    return meta


def link_identical_trunk(folder: Path, base: Path) -> str | None:
    """Replace model.safetensors by a relative symlink to the byte-identical file of the plain MLX
    fixture (as in a Hugging Face cache snapshot, where files are symlinks): keeps the tree small."""
    ours, theirs = folder / "model.safetensors", base / "model.safetensors"
    if not theirs.exists() or not filecmp.cmp(ours, theirs, shallow=False):
        return None
    ours.unlink()
    ours.symlink_to(Path("..") / base.name / "model.safetensors")
    return f"model.safetensors is a symlink to ../{base.name}/model.safetensors (byte-identical trunk)"


# ----------------------------------------------------------------------------------------------
# Reading fixtures back into canonical float64 weights
# ----------------------------------------------------------------------------------------------

def text_section(config: dict) -> dict:
    return config.get("text_config", config)


def read_hf_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file
    tensors = {}
    for p in sorted(folder.glob("model*.safetensors")):
        tensors.update(load_file(str(p)))
    return tensors


def canonical_from_hf(tensors: dict, tie: bool) -> dict:
    out = {}
    for name, t in tensors.items():
        if name.startswith("model.visual."):
            continue
        for prefix in ("model.language_model.", "model."):
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        out[name] = t.double()
    if tie or "lm_head.weight" not in out:
        out["lm_head.weight"] = out["embed_tokens.weight"]
    return out


def dequantized(tensors: dict, quant: dict) -> dict:
    """Replace every (weight, scales, biases) triple by a float64 weight."""
    out = {}
    for name, t in tensors.items():
        if name.endswith((".scales", ".biases")):
            continue
        module = name[: -len(".weight")]
        if f"{module}.scales" in tensors:
            bits, gs = quant_params(quant, module) or (None, None)
            assert bits is not None, f"{module} has scales but is marked unquantized"
            out[name] = dequantize(t, tensors[f"{module}.scales"], tensors[f"{module}.biases"], bits, gs)
        else:
            out[name] = t.double()
    return out


def canonical_from_mlx(tensors: dict, quant: dict) -> dict:
    out = {}
    for name, t in dequantized(tensors, quant).items():
        if name.endswith(MLX_SHIFTED_SUFFIXES) and t.ndim == 1:
            t = t - 1.0
        if "conv1d.weight" in name:
            t = t.permute(0, 2, 1)  # [C,K,1] -> [C,1,K]
        if name.startswith("language_model.model."):
            out[name[len("language_model.model."):]] = t
        elif name.startswith("language_model."):
            out[name[len("language_model."):]] = t
    out.setdefault("lm_head.weight", out["embed_tokens.weight"])
    return out


def canonical_mtp_from_sidecar(tensors: dict, config: dict) -> dict:
    shifted = config.get("mtplx_mtp_norm_encoding", "shifted") != "delta"
    out = {}
    for name, t in dequantized(tensors, config["mtplx_mtp_quantization"]).items():
        out[name] = t - 1.0 if shifted and t.ndim == 1 else t
    return out


def read_fixture(folder: Path) -> tuple[dict, dict, str]:
    """(canonical float64 weights, config.json, kind) for any fixture folder."""
    from safetensors.torch import load_file

    config = read_json(folder / "config.json")
    tie = bool(text_section(config).get("tie_word_embeddings", config.get("tie_word_embeddings")))
    tensors = read_hf_tensors(folder)
    if "quantization" not in config:
        return canonical_from_hf(tensors, tie), config, "hf"
    weights = canonical_from_mlx(tensors, config["quantization"])
    if (folder / "mtp.safetensors").exists():
        weights.update(canonical_mtp_from_sidecar(load_file(str(folder / "mtp.safetensors")), config))
        return weights, config, "mtplx"
    return weights, config, "mlx"


# ----------------------------------------------------------------------------------------------
# Float64 implementation, written from the spec (trunk: §3, MTP head: §4)
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Dims:
    H: int
    V: int
    Hq: int
    Hkv: int
    D: int
    Hk: int
    Hv: int
    Dk: int
    Dv: int
    K: int
    rotary_dim: int
    rope_theta: float
    eps: float
    layer_types: list

    @staticmethod
    def from_config(config: dict) -> "Dims":
        t = text_section(config)
        rope = t.get("rope_parameters") or {}
        prf = rope.get("partial_rotary_factor", t.get("partial_rotary_factor"))
        theta = rope.get("rope_theta", t.get("rope_theta"))
        return Dims(t["hidden_size"], t["vocab_size"], t["num_attention_heads"], t["num_key_value_heads"],
                    t["head_dim"], t["linear_num_key_heads"], t["linear_num_value_heads"],
                    t["linear_key_head_dim"], t["linear_value_head_dim"], t["linear_conv_kernel_dim"],
                    int(t["head_dim"] * prf), float(theta), t["rms_norm_eps"], t["layer_types"])


def rms_norm_1p(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * (1.0 + w)


def l2norm(x, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + eps)


def rope(x, positions, d: Dims):
    """NeoX-style rotation of the first rotary_dim dims of x [T, heads, D]."""
    half = d.rotary_dim // 2
    inv_freq = d.rope_theta ** (-torch.arange(0, d.rotary_dim, 2, dtype=torch.float64) / d.rotary_dim)
    ang = positions.double()[:, None] * inv_freq[None, :]
    cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]
    a, b, rest = x[..., :half], x[..., half:d.rotary_dim], x[..., d.rotary_dim:]
    return torch.cat([a * cos - b * sin, b * cos + a * sin, rest], dim=-1)


def mlp(x, p):
    return (F.silu(x @ p["mlp.gate_proj.weight"].T) * (x @ p["mlp.up_proj.weight"].T)) @ p["mlp.down_proj.weight"].T


def attention(x, p, d: Dims, positions):
    """Gated full attention (§3.4), causal over the T rows of x."""
    T = x.shape[0]
    qg = (x @ p["self_attn.q_proj.weight"].T).view(T, d.Hq, 2 * d.D)
    q, gate = qg[..., :d.D], qg[..., d.D:]
    k = (x @ p["self_attn.k_proj.weight"].T).view(T, d.Hkv, d.D)
    v = (x @ p["self_attn.v_proj.weight"].T).view(T, d.Hkv, d.D)
    q = rope(rms_norm_1p(q, p["self_attn.q_norm.weight"], d.eps), positions, d)
    k = rope(rms_norm_1p(k, p["self_attn.k_norm.weight"], d.eps), positions, d)
    group = d.Hq // d.Hkv
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = torch.einsum("thd,shd->hts", q, k) / d.D ** 0.5
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)
    probs = scores.masked_fill(causal, float("-inf")).softmax(-1)
    o = torch.einsum("hts,shd->thd", probs, v).reshape(T, d.Hq * d.D)
    return (o * torch.sigmoid(gate.reshape(T, d.Hq * d.D))) @ p["self_attn.o_proj.weight"].T


def causal_conv_silu(qkv, w):
    """Depthwise causal conv over time, zero history; w [C, 1, K]; tap K-1 hits the current token."""
    T, K = qkv.shape[0], w.shape[-1]
    padded = torch.cat([qkv.new_zeros(K - 1, qkv.shape[1]), qkv], dim=0)
    out = sum(w[:, 0, j] * padded[j:j + T] for j in range(K))
    return F.silu(out)


def gated_delta_net(x, p, d: Dims):
    """GDN layer (§3.6) with the plain per-token recurrence (not the chunked form)."""
    T = x.shape[0]
    c = causal_conv_silu(x @ p["linear_attn.in_proj_qkv.weight"].T, p["linear_attn.conv1d.weight"])
    key_dim = d.Hk * d.Dk
    q = l2norm(c[:, :key_dim].reshape(T, d.Hk, d.Dk)) * d.Dk ** -0.5
    k = l2norm(c[:, key_dim:2 * key_dim].reshape(T, d.Hk, d.Dk))
    v = c[:, 2 * key_dim:].reshape(T, d.Hv, d.Dv)
    r = d.Hv // d.Hk
    q, k = q.repeat_interleave(r, dim=1), k.repeat_interleave(r, dim=1)  # v-head h uses k-head h // r
    beta = torch.sigmoid(x @ p["linear_attn.in_proj_b.weight"].T)
    a = x @ p["linear_attn.in_proj_a.weight"].T
    g = -torch.exp(p["linear_attn.A_log"]) * F.softplus(a + p["linear_attn.dt_bias"])
    state = x.new_zeros(d.Hv, d.Dk, d.Dv)
    out = x.new_zeros(T, d.Hv, d.Dv)
    for t in range(T):
        state = state * torch.exp(g[t])[:, None, None]
        delta = beta[t][:, None] * (v[t] - torch.einsum("hkv,hk->hv", state, k[t]))
        state = state + k[t][:, :, None] * delta[:, None, :]
        out[t] = torch.einsum("hkv,hk->hv", state, q[t])
    z = (x @ p["linear_attn.in_proj_z.weight"].T).view(T, d.Hv, d.Dv)
    y = p["linear_attn.norm.weight"] * (out * torch.rsqrt(out.pow(2).mean(-1, keepdim=True) + d.eps)) * F.silu(z)
    return y.reshape(T, d.Hv * d.Dv) @ p["linear_attn.out_proj.weight"].T


def decoder_layer(x, p, kind: str, d: Dims, positions):
    h = rms_norm_1p(x, p["input_layernorm.weight"], d.eps)
    h = gated_delta_net(h, p, d) if kind == "linear_attention" else attention(h, p, d, positions)
    x = x + h
    return x + mlp(rms_norm_1p(x, p["post_attention_layernorm.weight"], d.eps), p)


def trunk_f64(w: dict, d: Dims, tokens):
    """(post-final-norm hidden [T,H], logits [T,V])."""
    positions = torch.arange(tokens.shape[0])
    x = w["embed_tokens.weight"][tokens]
    for i, kind in enumerate(d.layer_types):
        x = decoder_layer(x, sub(w, f"layers.{i}."), kind, d, positions)
    hidden = rms_norm_1p(x, w["norm.weight"], d.eps)
    return hidden, hidden @ w["lm_head.weight"].T


def mtp_f64(w: dict, d: Dims, tokens, hidden):
    """MTP slot t (t = 0..T-2): (embed(tokens[t+1]), hidden[t]) at position t, causal over slots."""
    e = rms_norm_1p(w["embed_tokens.weight"][tokens[1:]], w["mtp.pre_fc_norm_embedding.weight"], d.eps)
    h = rms_norm_1p(hidden[:-1], w["mtp.pre_fc_norm_hidden.weight"], d.eps)
    z = torch.cat([e, h], dim=-1) @ w["mtp.fc.weight"].T
    z = decoder_layer(z, sub(w, "mtp.layers.0."), "full_attention", d, torch.arange(z.shape[0]))
    return rms_norm_1p(z, w["mtp.norm.weight"], d.eps) @ w["lm_head.weight"].T


# ----------------------------------------------------------------------------------------------
# transformers references
# ----------------------------------------------------------------------------------------------

TRACED_FUNCTIONS = {"torch_chunk_gated_delta_rule", "torch_recurrent_gated_delta_rule",
                    "chunk_gated_delta_rule", "fused_recurrent_gated_delta_rule", "causal_conv1d_fn",
                    "causal_conv1d_update", "eager_attention_forward", "sdpa_attention_forward",
                    "flash_attention_forward"}


def traced_call(fn):
    """Run fn() and report which of TRACED_FUNCTIONS (by name and file) actually executed."""
    seen = set()

    def profiler(frame, event, _arg):
        if event == "call" and frame.f_code.co_name in TRACED_FUNCTIONS:
            seen.add(f"{frame.f_code.co_name} ({Path(frame.f_code.co_filename).name})")

    sys.setprofile(profiler)
    try:
        result = fn()
    finally:
        sys.setprofile(None)
    return result, sorted(seen)


@torch.no_grad()
def run_transformers(model, tokens) -> dict:
    ids = tokens.long()[None]
    out, trace = traced_call(lambda: model(input_ids=ids, use_cache=False))
    hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state
    return {"logits": out.logits[0].float(), "hidden": hidden[0].float(), "functions_run": trace}


def load_hf_with_transformers(folder: Path, dtype: torch.dtype):
    from transformers import Qwen3_5ForCausalLM, Qwen3_5ForConditionalGeneration
    config = read_json(folder / "config.json")
    cls = Qwen3_5ForConditionalGeneration if "text_config" in config else Qwen3_5ForCausalLM
    model, info = cls.from_pretrained(str(folder), dtype=dtype, attn_implementation="eager",
                                      output_loading_info=True)
    info = {k: sorted(map(str, v)) for k, v in info.items() if isinstance(v, (list, set, tuple))}
    return model.eval(), info


NOT_TEXT_CONFIG_KEYS = {"architectures", "model_type", "transformers_version", "quantization",
                        "quantization_config", "mlx_lm_extra_tensors", "mtplx_mtp_norm_encoding",
                        "mtplx_mtp_quantization"}


def eager_text_config(config: dict, **overrides):
    """Qwen3_5TextConfig from a config.json dict (text section), eager attention."""
    from transformers import Qwen3_5TextConfig

    text = {k: v for k, v in text_section(config).items() if k not in NOT_TEXT_CONFIG_KEYS}
    cfg = Qwen3_5TextConfig(**{**text, **overrides})
    cfg._attn_implementation = "eager"
    return cfg


def build_causal_from_canonical(w: dict, config: dict):
    """fp32 Qwen3_5ForCausalLM holding the canonical (e.g. dequantized) weights."""
    from transformers import Qwen3_5ForCausalLM

    model = Qwen3_5ForCausalLM(eager_text_config(config)).float().eval()
    state = {("model." + k): v.float() for k, v in w.items() if not k.startswith(("mtp.", "lm_head."))}
    state["lm_head.weight"] = w["lm_head.weight"].float()
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return model


def loaded_matches_canonical(model, w: dict) -> bool:
    params = dict(model.named_parameters(remove_duplicate=False))
    text_prefix = "model.language_model." if hasattr(model.model, "language_model") else "model."
    for name, t in w.items():
        if name.startswith("mtp."):
            continue
        key = name if name.startswith("lm_head.") else text_prefix + name
        if not torch.equal(params[key].double(), t):
            return False
    return True


@torch.no_grad()
def mtp_transformers(w: dict, config: dict, tokens, hidden32):
    """The MTP head assembled from transformers modules (Qwen3_5DecoderLayer etc.), fp32 eager."""
    from transformers.models.qwen3_5 import modeling_qwen3_5 as m

    cfg = eager_text_config(config, num_hidden_layers=1, layer_types=["full_attention"])
    layer = m.Qwen3_5DecoderLayer(cfg, layer_idx=0).float().eval()
    layer.load_state_dict({k: v.float() for k, v in sub(w, "mtp.layers.0.").items()}, strict=True)

    def norm(name):
        module = m.Qwen3_5RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps).float()
        module.weight.copy_(w[name].float())
        return module

    emb = w["embed_tokens.weight"].float()[tokens[1:].long()]
    u = torch.cat([norm("mtp.pre_fc_norm_embedding.weight")(emb),
                   norm("mtp.pre_fc_norm_hidden.weight")(hidden32[:-1])], dim=-1)
    z = (u @ w["mtp.fc.weight"].float().T)[None]
    n = z.shape[1]
    position_ids = torch.arange(n)[None, None].expand(3, 1, n)
    cos, sin = m.Qwen3_5TextRotaryEmbedding(cfg)(z, position_ids)
    mask = torch.full((n, n), float("-inf")).triu(1)[None, None]
    z = layer(z, position_embeddings=(cos, sin), attention_mask=mask)
    return (norm("mtp.norm.weight")(z[0]) @ w["lm_head.weight"].float().T)


# ----------------------------------------------------------------------------------------------
# Comparison and statistics
# ----------------------------------------------------------------------------------------------

def compare(a: torch.Tensor, ref: torch.Tensor) -> dict:
    a, ref = a.double(), ref.double()
    diff = (a - ref).abs()
    return {"max_abs_diff": float(diff.max()),
            "max_abs_diff_over_max_abs_ref": float(diff.max() / ref.abs().max()),
            "rel_l2": float((a - ref).norm() / ref.norm()),
            "argmax_agreement": float((a.argmax(-1) == ref.argmax(-1)).double().mean())}


def stats(logits: torch.Tensor) -> dict:
    return {"std": float(logits.std()), "mean_per_position_std": float(logits.std(-1).mean()),
            "distinct_argmax": int(logits.argmax(-1).unique().numel()), "rows": int(logits.shape[0])}


def check_not_degenerate(name: str, s: dict) -> None:
    assert s["std"] > 0.5 and s["distinct_argmax"] >= 10, f"{name}: degenerate logits {s}"


# ----------------------------------------------------------------------------------------------
# References for one fixture
# ----------------------------------------------------------------------------------------------

def random_tokens(seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB_SIZE, (SEQ_LEN,), generator=gen, dtype=torch.int64).to(torch.int32)


def transformers_trunk(folder: Path, kind: str, w: dict, config: dict, tokens) -> tuple[dict, dict]:
    """(outputs, notes): from_pretrained for HF folders, the canonical weights otherwise."""
    if kind != "hf":
        return run_transformers(build_causal_from_canonical(w, config), tokens), {
            "path": "Qwen3_5ForCausalLM fp32 + load_state_dict(dequantized weights read from the folder)"}
    model, info = load_hf_with_transformers(folder, torch.float32)
    notes = {"path": f"{type(model).__name__}.from_pretrained(folder, dtype=float32, eager)",
             "loading_info": info, "loaded_weights_equal_files": loaded_matches_canonical(model, w)}
    assert notes["loaded_weights_equal_files"], "transformers loaded different weights"
    assert not info.get("missing_keys"), info
    outputs = run_transformers(model, tokens)
    if str(config.get("dtype", text_section(config).get("dtype"))) == "bfloat16":
        bf16_model, _ = load_hf_with_transformers(folder, torch.bfloat16)
        bf16 = run_transformers(bf16_model, tokens)
        notes["transformers_bf16_vs_fp32_logits"] = compare(bf16["logits"], outputs["logits"])
        notes["A_log_dtype_when_loaded_bf16"] = str(next(
            p.dtype for n, p in bf16_model.named_parameters() if n.endswith("A_log")))
    return outputs, notes


def compute_references(folder: Path, seed: int) -> tuple[dict, dict]:
    w, config, kind = read_fixture(folder)
    d = Dims.from_config(config)
    tokens = random_tokens(seed)
    hf, notes = transformers_trunk(folder, kind, w, config, tokens)
    hidden64, logits64 = trunk_f64(w, d, tokens.long())
    tensors = {"tokens": tokens, "logits": hf["logits"].contiguous(), "hidden": hf["hidden"].contiguous()}
    validation = {"trunk_logits_float64_vs_transformers_fp32": compare(hf["logits"], logits64),
                  "hidden_float64_vs_transformers_fp32": compare(hf["hidden"], hidden64)}
    statistics = {"logits": stats(hf["logits"])}
    if "mtp.fc.weight" in w:
        mtp64 = mtp_f64(w, d, tokens.long(), hidden64)
        mtp32 = mtp_transformers(w, config, tokens, hf["hidden"])
        tensors["mtp_logits"] = mtp64.float().contiguous()
        validation["mtp_logits_float64_vs_transformers_modules_fp32"] = compare(mtp32, mtp64)
        statistics["mtp_logits"] = stats(mtp64)
    for name, s in statistics.items():
        check_not_degenerate(f"{folder.name}/{name}", s)
    notes["functions_run"] = hf["functions_run"]
    return tensors, {"kind": kind, "dims": dataclasses.asdict(d), "token_seed": seed,
                     "validation": validation, "statistics": statistics, "transformers": notes}


def describe_reference(kind: str) -> dict:
    source = {"hf": "the checkpoint as stored, upcast to fp32",
              "mlx": "the dequantized weights (w = scale*q + bias in float64 with bf16 scales/biases "
                     "as stored; norms minus the +1 mlx stored; conv1d back to [C,1,K])",
              "mtplx": "the dequantized trunk (as mlx) and the dequantized sidecar"}[kind]
    return {
        "tokens": f"I32 [T={SEQ_LEN}], uniform random ids in [0, {VOCAB_SIZE})",
        "logits": f"F32 [T, V]: transformers fp32 eager, use_cache=False (chunked GDN prefill), from {source}",
        "hidden": "F32 [T, H]: transformers last_hidden_state (after the final norm), same run",
        "mtp_logits": "F32 [T-1, V]: float64 implementation (tools/reference/make_fixtures.py mtp_f64); "
                      "slot t consumes (embed(tokens[t+1]), float64 trunk hidden[t]) at RoPE position t, "
                      "causal over slots 0..t; absent when the fixture has no MTP weights",
    }


def finish_fixture(folder: Path, seed: int, meta: dict, common: dict) -> dict:
    from safetensors.torch import save_file
    tensors, info = compute_references(folder, seed)
    save_file(tensors, str(folder / "reference.safetensors"))
    report = {"fixture": folder.name, **meta, **info, "reference_tensors": describe_reference(info["kind"]),
              **common}
    write_json(folder / "reference.json", report)
    log(f"  {folder.name}: " + json.dumps({k: v["max_abs_diff_over_max_abs_ref"]
                                           for k, v in info["validation"].items()}))
    return {"tensors": tensors, "report": report}


# ----------------------------------------------------------------------------------------------
# Observations about transformers' qwen3_5 (for the report)
# ----------------------------------------------------------------------------------------------

def transformers_observations() -> dict:
    from transformers import Qwen3_5TextConfig
    from transformers.models.qwen3_5 import modeling_qwen3_5 as m
    from transformers.utils import import_utils

    default = Qwen3_5TextConfig()
    obs = {"Qwen3_5TextConfig_fields": sorted(f.name for f in dataclasses.fields(Qwen3_5TextConfig))
           if dataclasses.is_dataclass(Qwen3_5TextConfig) else sorted(vars(default)),
           "default_rope_parameters": default.rope_parameters,
           "default_layer_types_first8": list(default.layer_types[:8]),
           "ignore_on_load_unexpected": {
               "Qwen3_5PreTrainedModel": getattr(m.Qwen3_5PreTrainedModel, "_keys_to_ignore_on_load_unexpected", None),
               "Qwen3_5ForCausalLM": getattr(m.Qwen3_5ForCausalLM, "_keys_to_ignore_on_load_unexpected", None)},
           "tied_weights_keys": {c: str(getattr(getattr(m, c), "_tied_weights_keys", None))
                                 for c in ("Qwen3_5ForCausalLM", "Qwen3_5ForConditionalGeneration")},
           "checkpoint_conversion_mapping": {c: str(getattr(getattr(m, c), "_checkpoint_conversion_mapping", None))
                                             for c in ("Qwen3_5ForCausalLM", "Qwen3_5ForConditionalGeneration")}}
    for fn in ("is_flash_linear_attention_available", "is_causal_conv1d_available", "is_kernels_available"):
        probe = getattr(import_utils, fn, None)
        obs[fn] = bool(probe()) if probe else "no such probe"
    return obs


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------

def build_all(out: Path) -> dict:
    generated_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    tok = train_tokenizer()
    common = {"generator": "tools/reference/make_fixtures.py", "versions": versions(), "seed": SEED}
    summary = {"generated_at": generated_at, **common, "transformers_observations": transformers_observations(),
               "fixtures": {}}
    results = {}
    for spec in HF_SPECS:
        log(f"building {spec.name}")
        meta = make_hf_fixture(spec, out / spec.name, tok)
        meta["spec"] = {k: (dtype_name(v) if isinstance(v, torch.dtype) else v)
                        for k, v in dataclasses.asdict(spec).items()}
        results[spec.name] = finish_fixture(out / spec.name, spec.seed + 1000, meta, common)
    for spec in MLX_SPECS:
        log(f"building {spec.name}")
        meta = make_mlx_fixture(spec, out / spec.name, out / spec.source, tok, generated_at)
        meta["spec"] = dataclasses.asdict(spec)
        results[spec.name] = finish_fixture(out / spec.name, spec.seed + 1000, meta, common)
    summary["nodelta_equals_delta"] = {k: torch.equal(results["mtplx-q8"]["tensors"][k],
                                                      results["mtplx-q8-nodelta"]["tensors"][k])
                                       for k in results["mtplx-q8"]["tensors"]}
    assert all(summary["nodelta_equals_delta"].values()), summary["nodelta_equals_delta"]
    summary["tokenizer"] = tokenizer_reference(tok, out / HF_SPECS[0].name)
    write_json(out / "tokenizer_reference.json", summary.pop("tokenizer"))
    summary["fixtures"] = {name: {"description": r["report"]["spec"]["description"],
                                  **{k: r["report"][k] for k in ("kind", "files", "validation", "statistics")}}
                           for name, r in results.items()}
    write_json(out / "fixtures.json", summary)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="fixture tree to create (must not exist)")
    parser.add_argument("--tar", type=Path, help="also pack the tree into this .tar.gz")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    summary = build_all(args.out)
    log(json.dumps(summary["fixtures"], indent=1))
    if args.tar:
        with tarfile.open(args.tar, "w:gz") as tar:
            for path in sorted(args.out.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(args.out)), recursive=False)
        log(f"packed {args.tar} ({args.tar.stat().st_size} bytes)")


if __name__ == "__main__":
    main()

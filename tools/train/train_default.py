#!/usr/bin/env python3
"""Train mtplx's default model: a small Qwen3.5 (real architecture) with a jointly trained MTP head.

One run, on the GPU machine, does everything (see tools/train/README.md and docs/default_model.md):
  1. corpus: Python stdlib + site-packages sources and docs on that machine, deduplicated, held-out
     split by file; plus chat samples (docstring Q/A) rendered with the real Qwen3.5 chat template;
  2. tokenizer: byte-level BPE (Hugging Face `tokenizers`) with the Qwen3.5 normalizer, pre-tokenizer
     and decoder and Qwen's added tokens (conventions of tools/reference/make_fixtures.py);
  3. model: transformers' Qwen3_5ForCausalLM trunk + mtp_head.MTPHead, trained jointly
     (CE(trunk) + l1 * CE(MTP -> x[t+2]) + l2 * CE(MTP depth 2 -> x[t+3])), bf16 autocast, AdamW, cosine;
  4. held-out evaluation (evaluate.py): perplexity, MTP acceptance greedy and sampled;
  5. export: HF BF16 checkpoint (Qwen3_5ForCausalLM, model.* trunk + top-level mtp.*) with tokenizer,
     generation config and reference.safetensors (transformers trunk logits, float64 MTP logits).

  python3 tools/train/train_default.py --work /tmp/train --export /tmp/default-bf16 --train-seconds 390
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
import time
from pathlib import Path

T_START = time.monotonic()
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "reference"))

import corpus  # noqa: E402  (standard library only: forks before CUDA is touched)

SEED = 20260
VOCAB_SIZE = 8192  # BPE entries + the 9 added tokens
ARCH = dict(hidden_size=384, intermediate_size=896, num_hidden_layers=8, num_attention_heads=2,
            num_key_value_heads=1, head_dim=256, linear_num_key_heads=2, linear_num_value_heads=4,
            linear_key_head_dim=128, linear_value_head_dim=128, linear_conv_kernel_dim=4)
MAX_POSITIONS = 32768
SEQ_LEN = 512
SAMPLER = {"temperature": 0.6, "top_k": 20, "top_p": 0.95}


def log(*a):
    print(f"[{time.monotonic() - T_START:7.1f}s]", *a, flush=True)


def jsonable(obj):
    return json.loads(json.dumps(obj, default=str))


def first_question(messages: list[dict]) -> list[dict]:
    """The messages up to and including the first user turn (system prompt kept)."""
    out = []
    for m in messages:
        if m["role"] == "assistant":
            continue
        out.append(m)
        if m["role"] == "user":
            break
    return out


# ----------------------------------------------------------------------------------------------
# Chat rendering and tokenizer
# ----------------------------------------------------------------------------------------------

def _render_piece(args):
    return render_chats(*args, parallel=False)


def render_chats(conversations: list[list[dict]], template: str, add_generation_prompt=False,
                 parallel=True) -> tuple[list[str], str]:
    """Render with transformers' own Jinja machinery (the code behind apply_chat_template)."""
    if parallel and len(conversations) > 2000:  # ~1 ms each: spread over processes (before CUDA is used)
        import multiprocessing
        pieces = [(conversations[i:i + 1000], template, add_generation_prompt)
                  for i in range(0, len(conversations), 1000)]
        with multiprocessing.get_context("fork").Pool(min(16, os.cpu_count() or 1)) as pool:
            done = pool.map(_render_piece, pieces)
        return [text for texts, _ in done for text in texts], done[0][1]
    try:
        from transformers.utils.chat_template_utils import render_jinja_template
        rendered, _ = render_jinja_template(conversations=conversations, chat_template=template,
                                            add_generation_prompt=add_generation_prompt)
        return list(rendered), "transformers.utils.chat_template_utils.render_jinja_template"
    except (ImportError, TypeError, ValueError) as exc:
        log(f"render_jinja_template unusable ({type(exc).__name__}: {exc}); using apply_chat_template")
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast
    plain = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()))
    return [plain.apply_chat_template(c, chat_template=template, tokenize=False,
                                      add_generation_prompt=add_generation_prompt) for c in conversations], \
        "PreTrainedTokenizerFast.apply_chat_template"


def train_tokenizer(texts: list[str], mf):
    """Byte-level BPE with the Qwen3.5 normalizer / pre-tokenizer / decoder, then Qwen's added tokens."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    added = mf.SPECIAL_TOKENS + mf.CONTROL_TOKENS
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(mf.PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE - len(added), min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])

    def strip_added(t):  # the added tokens are matched whole; keep their pieces out of the merges
        for a in added:
            t = t.replace(a, " ")
        return t

    tok.train_from_iterator((strip_added(t) for t in texts), trainer, length=len(texts))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in mf.SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in mf.CONTROL_TOKENS])
    return tok


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------

def text_config(tok, mf):
    from transformers import Qwen3_5TextConfig

    eot = mf.token_ids(tok)["<|endoftext|>"]
    layer_types = ["full_attention" if (i + 1) % 4 == 0 else "linear_attention"
                   for i in range(ARCH["num_hidden_layers"])]
    cfg = Qwen3_5TextConfig(
        vocab_size=VOCAB_SIZE, **ARCH, hidden_act="silu", layer_types=layer_types, rms_norm_eps=1e-6,
        max_position_embeddings=MAX_POSITIONS, tie_word_embeddings=True, attention_bias=False,
        initializer_range=0.02,
        rope_parameters={"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.25,
                         "mrope_section": [11, 11, 10], "mrope_interleaved": True},
        bos_token_id=eot, eos_token_id=eot, pad_token_id=eot)
    return cfg


def param_groups(modules, weight_decay):
    decay, no_decay, seen = [], [], set()
    for m in modules:
        for name, p in m.named_parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            (decay if p.ndim == 2 else no_decay).append(p)  # matrices + embedding; not norms/A_log/dt_bias/conv
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def mtplx_size_estimate(cfg, state: dict) -> dict:
    """Bytes of an MLX affine 8-bit (g64) trunk + body-int4 MTP sidecar (fc and norms bf16)."""
    trunk, mtp = 0, 0
    body = tuple(f"mtp.layers.0.{m}.weight" for m in (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"))
    for name, shape in state.items():
        n = math.prod(shape)
        if name.startswith("mtp."):
            mtp += (n // 2 + (n // 64) * 4) if name in body else 2 * n
        elif len(shape) == 2 and shape[-1] % 64 == 0:
            trunk += n + (n // 64) * 4
        else:
            trunk += 2 * n
    return {"trunk_q8_bytes": trunk, "mtp_int4_sidecar_bytes": mtp, "total_bytes": trunk + mtp}


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="scratch folder (curve.csv, metrics.json)")
    ap.add_argument("--export", type=Path, required=True, help="HF BF16 export folder to create")
    ap.add_argument("--train-seconds", type=float, default=390)
    ap.add_argument("--code-mb", type=float, default=110)
    ap.add_argument("--prose-mb", type=float, default=14)
    ap.add_argument("--corpus-seconds", type=float, default=25)
    ap.add_argument("--chat-items", type=int, default=40000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--mtp-weights", type=float, nargs=2, default=(0.3, 0.15))
    ap.add_argument("--eval-prompts", type=int, default=64)
    ap.add_argument("--eval-new", type=int, default=128)
    ap.add_argument("--smoke", action="store_true", help="tiny corpus and a few seconds of training")
    args = ap.parse_args()
    if args.smoke:
        args.code_mb, args.prose_mb, args.corpus_seconds, args.chat_items = 6, 1, 10, 2000
        args.eval_prompts, args.eval_new = 8, 32
    args.work.mkdir(parents=True, exist_ok=True)
    metrics = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "stages": {}}

    def stage(name, t0):
        metrics["stages"][name] = round(time.monotonic() - t0, 2)
        log(f"{name}: {metrics['stages'][name]} s")

    # 1. corpus ------------------------------------------------------------------------------
    t0 = time.monotonic()
    docs, cstats = corpus.collect(int(args.code_mb * 1e6), int(args.prose_mb * 1e6), args.corpus_seconds, SEED)
    chats_train, chat_stats = corpus.chat_samples(docs, False, args.chat_items, 10 if not args.smoke else 4, SEED)
    chats_held, chat_stats_h = corpus.chat_samples(docs, True, max(200, args.chat_items // 50), 4, SEED + 1)
    metrics["corpus"] = {**cstats, "chat_train": chat_stats, "chat_heldout": chat_stats_h}
    stage("corpus", t0)
    log(json.dumps(metrics["corpus"]))

    import torch
    import torch.nn.functional as F
    import make_fixtures as mf
    import evaluate as ev
    from mtp_head import MTPHead

    torch.manual_seed(SEED)
    random.seed(SEED)
    template = mf.CHAT_TEMPLATE_PATH.read_text(encoding="utf-8")

    t0 = time.monotonic()
    chat_text_train, renderer = render_chats([c["messages"] for c in chats_train], template)
    chat_text_held, _ = render_chats([c["messages"] for c in chats_held], template)
    metrics["chat_renderer"] = renderer
    stage("render_chats", t0)
    log("chat sample:\n" + chat_text_train[0])

    # 2. tokenizer ---------------------------------------------------------------------------
    t0 = time.monotonic()
    train_docs = [d for d in docs if not d.heldout]
    rng = random.Random(SEED)
    tok_texts = [d.text for d in train_docs] + chat_text_train
    rng.shuffle(tok_texts)
    budget, sample = 40e6 if not args.smoke else 8e6, []
    for t in tok_texts:
        if budget <= 0:
            break
        sample.append(t)
        budget -= len(t)
    tok = train_tokenizer(sample, mf)
    ids = mf.token_ids(tok)
    eot = ids["<|endoftext|>"]
    metrics["tokenizer"] = {"trained_on_chars": sum(map(len, sample)),
                            "bpe_vocab": tok.get_vocab_size(with_added_tokens=False),
                            "vocab_with_added": tok.get_vocab_size(with_added_tokens=True), "added_ids": ids}
    stage("tokenizer", t0)
    log(json.dumps(metrics["tokenizer"]))

    t0 = time.monotonic()

    def encode(texts):
        return [e.ids for e in tok.encode_batch(texts)] if texts else []

    def stream(id_lists):
        out = []
        for x in id_lists:
            out.extend(x)
            out.append(eot)
        return torch.tensor(out, dtype=torch.int32)

    train_parts = [(d.kind, d.text) for d in train_docs] + [("chat", t) for t in chat_text_train]
    rng.shuffle(train_parts)
    train_ids = encode([t for _, t in train_parts])
    kinds_tokens = {}
    for (k, _), x in zip(train_parts, train_ids):
        kinds_tokens[k] = kinds_tokens.get(k, 0) + len(x)
    train_stream = stream(train_ids)
    held_code = stream(encode([d.text for d in docs if d.heldout and d.kind == "code"]))
    held_prose = stream(encode([d.text for d in docs if d.heldout and d.kind == "prose"]))
    held_chat = stream(encode(chat_text_held))
    bytes_per_token = sum(len(t.encode("utf-8")) for _, t in train_parts) / max(1, sum(kinds_tokens.values()))
    metrics["data"] = {"train_tokens": int(train_stream.numel()), "train_tokens_by_kind": kinds_tokens,
                       "train_bytes_per_token": bytes_per_token,
                       "heldout_tokens": {"code": int(held_code.numel()), "prose": int(held_prose.numel()),
                                          "chat": int(held_chat.numel())}}
    stage("encode", t0)
    log(json.dumps(metrics["data"]))

    # 3. model -------------------------------------------------------------------------------
    from transformers import Qwen3_5ForCausalLM

    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    cfg = text_config(tok, mf)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(SEED)
    model = Qwen3_5ForCausalLM(cfg).to(dev).float()
    head = MTPHead(cfg)
    head.init_weights(cfg.initializer_range, torch.Generator().manual_seed(SEED + 7))
    head = head.to(dev).float()
    embed = model.model.embed_tokens.weight
    if model.lm_head.weight.data_ptr() != embed.data_ptr():
        log("WARNING: transformers did not tie lm_head to embed_tokens; tying by hand")
        model.lm_head.weight = embed
    n_trunk = sum(p.numel() for p in model.parameters())
    n_mtp = sum(p.numel() for p in head.parameters())
    with torch.no_grad():
        _, traced = mf.traced_call(lambda: model.model(input_ids=torch.zeros(2, 130, dtype=torch.long, device=dev),
                                                       use_cache=False))
    metrics["model"] = {"config": jsonable(cfg.to_dict()), "functions_run": traced, "params_trunk": n_trunk, "params_mtp": n_mtp,
                        "params_total": n_trunk + n_mtp, "gpu": torch.cuda.get_device_name(0),
                        "versions": mf.versions()}
    log(f"params: trunk {n_trunk:,} + mtp {n_mtp:,} = {n_trunk + n_mtp:,} on {metrics['model']['gpu']}")

    train_stream, held_code, held_prose, held_chat = (
        s.to(dev).long() for s in (train_stream, held_code, held_prose, held_chat))

    def chunks(s, length, limit):
        n = min(limit, s.numel() // length)
        return s[:n * length].view(n, length)

    val_chunks = chunks(held_code, SEQ_LEN, 16)

    def trunk(x):
        h = model.model(input_ids=x, use_cache=False).last_hidden_state
        return h, h @ embed.T

    def trunk_last(x):
        return model.model(input_ids=x, use_cache=False).last_hidden_state[:, -1] @ embed.T

    def mtp(hidden, tokens, depth, next_tokens=None, draft=None):
        d = (lambda hh: draft(hh @ embed.T)) if draft is not None else None
        return [o @ embed.T for o in head(embed, hidden, tokens, depth, next_tokens=next_tokens, draft=d)]

    l1, l2 = args.mtp_weights

    def losses(x):
        h = model.model(input_ids=x, use_cache=False).last_hidden_state
        lm = F.cross_entropy((h[:, :-1] @ embed.T).flatten(0, 1), x[:, 1:].flatten())
        o1, o2 = mtp(h[:, :-2], x[:, 1:-1], 2, next_tokens=[x[:, 2:]])
        m1 = F.cross_entropy(o1.flatten(0, 1), x[:, 2:].flatten())
        m2 = F.cross_entropy(o2[:, :-1].flatten(0, 1), x[:, 3:].flatten())
        return lm, m1, m2

    opt = torch.optim.AdamW(param_groups([model, head], 0.1), lr=args.lr, betas=(0.9, 0.95), eps=1e-8,
                            fused=True)
    warmup, min_ratio = 100 if not args.smoke else 10, 0.1
    total_steps = None  # set once the step time is known

    def lr_at(step):
        if step < warmup:
            return args.lr * (step + 1) / warmup
        frac = min(1.0, (step - warmup) / max(1, (total_steps or 10**9) - warmup))
        return args.lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))

    @torch.no_grad()
    def val_losses():
        model.eval(), head.eval()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            per_batch = [[t.item() for t in losses(val_chunks[i:i + 8])] for i in range(0, val_chunks.shape[0], 8)]
            out = [sum(v) / len(v) for v in zip(*per_batch)]
        model.train(), head.train()
        return out

    curve_path = args.work / "curve.csv"
    curve = open(curve_path, "w", newline="")
    writer = csv.writer(curve)
    writer.writerow(["step", "tokens", "elapsed_s", "lr", "loss", "mtp1_loss", "mtp2_loss", "grad_norm",
                     "val_loss", "val_mtp1_loss", "val_mtp2_loss"])
    gen = torch.Generator(device=dev).manual_seed(SEED)
    N = train_stream.numel() - SEQ_LEN - 1
    offsets = torch.arange(SEQ_LEN, device=dev)
    model.train(), head.train()
    t_train = time.monotonic()
    step, acc, acc_n, t_mark = 0, torch.zeros(4, device=dev), 0, None
    log_every, val_every = 25, 250
    while True:
        if total_steps is not None and step >= total_steps:
            break
        if time.monotonic() - t_train > args.train_seconds * 1.08:
            log(f"stopping at step {step}: wall-clock guard")
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        starts = torch.randint(0, N, (args.batch,), device=dev, generator=gen)
        x = train_stream[starts[:, None] + offsets]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            lm, m1, m2 = losses(x)
            loss = lm + l1 * m1 + l2 * m2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(head.parameters()), 1.0)
        opt.step()
        acc += torch.stack([lm.detach(), m1.detach(), m2.detach(), gn.detach()])
        acc_n += 1
        step += 1
        if step == 5:
            torch.cuda.synchronize()
            t_mark = time.monotonic()
        if step == 45 or (args.smoke and step == 15):
            torch.cuda.synchronize()
            per_step = (time.monotonic() - t_mark) / (step - 5)
            left = args.train_seconds - (time.monotonic() - t_train)
            total_steps = step + int(0.97 * left / (per_step * 1.02))  # 2% for the periodic validation
            metrics["train"] = {"step_seconds": per_step, "tokens_per_second": args.batch * SEQ_LEN / per_step,
                                "total_steps": total_steps}
            log(f"{per_step * 1000:.1f} ms/step, {args.batch * SEQ_LEN / per_step:,.0f} tok/s -> {total_steps} steps")
        if step % log_every == 0 or step == total_steps:
            vals = (acc / acc_n).tolist()
            acc.zero_()
            acc_n = 0
            row = [step, step * args.batch * SEQ_LEN, round(time.monotonic() - t_train, 1), f"{lr_at(step - 1):.3e}",
                   *[f"{v:.4f}" for v in vals]]
            if step % val_every == 0 or step == total_steps:
                row += [f"{v:.4f}" for v in val_losses()]
            writer.writerow(row)
            curve.flush()
            if step % 250 == 0 or step == total_steps:
                log("step " + " ".join(map(str, row)))
    curve.close()
    metrics.setdefault("train", {}).update({"steps": step, "seconds": round(time.monotonic() - t_train, 1),
                             "tokens_seen": step * args.batch * SEQ_LEN,
                             "epochs": step * args.batch * SEQ_LEN / train_stream.numel(),
                             "batch": args.batch, "seq_len": SEQ_LEN, "lr": args.lr, "warmup": warmup,
                             "schedule": f"linear warmup, cosine to {min_ratio} x peak", "optimizer":
                             "AdamW(0.9, 0.95), wd 0.1 on matrices/embedding, clip 1.0",
                             "loss": f"CE + {l1} CE_mtp1 + {l2} CE_mtp2", "precision": "bf16 autocast, fp32 master"})
    stage("train", t_train)

    # 4. evaluation --------------------------------------------------------------------------
    t0 = time.monotonic()
    model.eval(), head.eval()
    ev_metrics = {}
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        ev_metrics["heldout_code"] = ev.perplexity(trunk, mtp, chunks(held_code, SEQ_LEN, 256), 32)
        if held_prose.numel() > SEQ_LEN:
            ev_metrics["heldout_prose"] = ev.perplexity(trunk, mtp, chunks(held_prose, SEQ_LEN, 64), 32)
        if held_chat.numel() > SEQ_LEN:
            ev_metrics["heldout_chat"] = ev.perplexity(trunk, mtp, chunks(held_chat, SEQ_LEN, 64), 32)
        ev_metrics["teacher_forced_depth1_code"] = ev.teacher_forced_depth1(
            trunk, mtp, chunks(held_code, SEQ_LEN, 64), 32)
        P = 128
        prompt_chunks = chunks(held_code, P, 10**9)
        pick = torch.randperm(prompt_chunks.shape[0], generator=torch.Generator().manual_seed(SEED))
        prompts = prompt_chunks[pick[:args.eval_prompts].to(dev)]
        y_greedy = ev.generate(trunk_last, prompts, args.eval_new, lambda lg: lg.argmax(-1))
        ev_metrics["greedy"] = ev.greedy_acceptance(trunk, mtp, y_greedy, P, 3)
        sgen = torch.Generator(device=dev).manual_seed(SEED + 3)
        y_sampled = ev.generate(trunk_last, prompts, args.eval_new, lambda lg: torch.multinomial(
            ev.filtered_probs(lg, **SAMPLER), 1, generator=sgen)[:, 0])
        ev_metrics["sampled"] = {"sampler": SAMPLER, **ev.sampled_acceptance(trunk, mtp, y_sampled, P, 3, SAMPLER)}
        ev_metrics["prompts"] = {"count": int(prompts.shape[0]), "prompt_tokens": P, "new_tokens": args.eval_new,
                                 "source": "held-out .py files, 128-token chunks"}
        # Two readable samples (greedy): a code continuation and a chat answer.
        code_prompt = prompts[:1]
        code_out = ev.generate(trunk_last, code_prompt, 64, lambda lg: lg.argmax(-1))
        q = first_question(chats_held[0]["messages"])
        chat_prompt_text, _ = render_chats([q], template, add_generation_prompt=True)
        chat_prompt = torch.tensor([tok.encode(chat_prompt_text[0]).ids], device=dev)
        chat_out = chat_prompt
        for _ in range(120):
            nxt = trunk_last(chat_out).argmax(-1)
            chat_out = torch.cat([chat_out, nxt[:, None]], 1)
            if nxt.item() in (ids["<|im_end|>"], eot):
                break
        ev_metrics["samples"] = {
            "code_prompt": tok.decode(code_prompt[0].tolist(), skip_special_tokens=False),
            "code_greedy_continuation": tok.decode(code_out[0, P:].tolist(), skip_special_tokens=False),
            "chat_prompt": chat_prompt_text[0],
            "chat_greedy_answer": tok.decode(chat_out[0, chat_prompt.shape[1]:].tolist(), skip_special_tokens=False)}
    metrics["eval"] = ev_metrics
    stage("eval", t0)
    mf.write_json(args.work / "metrics.json", jsonable(metrics))
    log(json.dumps({k: v for k, v in ev_metrics.items() if k != "samples"}))
    log(json.dumps(ev_metrics["samples"], indent=1, ensure_ascii=False))

    # 5. export ------------------------------------------------------------------------------
    t0 = time.monotonic()
    folder = args.export
    if folder.exists():
        import shutil
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    mtp_state = {f"mtp.{k}": v.detach().to(torch.bfloat16).cpu() for k, v in head.state_dict().items()}
    model.cpu()
    tensors, hf_config, obs = mf.saved_by_transformers(model, torch.bfloat16)
    tensors.update(mtp_state)
    expected = {("model." + k if not k.startswith("mtp.") else k): s
                for k, s in mf.canonical_shapes(mf.text_config_of(model), True).items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    assert got == expected, f"tensor names/shapes differ from canonical: {set(got) ^ set(expected)}"
    mf.save_safetensors(tensors, folder / "model.safetensors", "pt")
    mf.write_json(folder / "config.json", mf.add_real_world_config_keys(hf_config, tok))
    mf.write_json(folder / "generation_config.json", mf.generation_config(tok))
    mf.write_tokenizer_files(folder, tok)
    metrics["export"] = {"saved_by_transformers": obs, "tensors": len(tensors),
                         "size_estimate_mtplx_q8_trunk_int4_mtp": mtplx_size_estimate(cfg, got)}
    stage("export", t0)

    t0 = time.monotonic()
    metrics["reference"] = references(folder, tok, held_code.cpu(), chats_held, template, mf, ev_metrics)
    stage("reference", t0)

    # chat template check: transformers' apply_chat_template on the exported tokenizer
    from transformers import AutoTokenizer
    auto = AutoTokenizer.from_pretrained(str(folder))
    checks = [auto.apply_chat_template(c["messages"], tokenize=False) == r
              for c, r in zip(chats_held[:5], chat_text_held[:5])]
    metrics["chat_render_matches_apply_chat_template"] = all(checks)
    if not all(checks):
        log("WARNING: chat rendering differs from the exported tokenizer's apply_chat_template")

    files = sorted(p.name for p in folder.iterdir())
    metrics["export"].update({"files": files, "bytes": {p.name: p.stat().st_size for p in folder.iterdir()}})
    metrics["total_seconds"] = round(time.monotonic() - T_START, 1)
    metrics = jsonable(metrics)
    mf.write_json(args.work / "metrics.json", metrics)
    write_card(folder, metrics)
    mf.write_json(folder / "training_metrics.json", metrics)
    import shutil
    shutil.copy(curve_path, folder / "training_curve.csv")
    log(f"done in {metrics['total_seconds']} s; export {folder}: {files}")


def references(folder: Path, tok, held_code, chats_held, template, mf, ev_metrics) -> dict:
    """reference.safetensors: a held-out code snippet + <|endoftext|> + a held-out chat prompt."""
    import torch
    from safetensors.torch import save_file
    from mtp_head import MTPHead

    torch.set_grad_enabled(False)
    eot = mf.token_ids(tok)["<|endoftext|>"]
    code = held_code[1000:1000 + 160].tolist() if held_code.numel() > 1200 else held_code[:160].tolist()
    q = first_question(chats_held[min(1, len(chats_held) - 1)]["messages"])
    chat_text, _ = render_chats([q], template, add_generation_prompt=True)
    chat = tok.encode(chat_text[0]).ids
    tokens = torch.tensor(code + [eot] + chat, dtype=torch.int32)
    w, config, kind = mf.read_fixture(folder)
    d = mf.Dims.from_config(config)
    hf, notes = mf.transformers_trunk(folder, kind, w, config, tokens)
    hidden64, logits64 = mf.trunk_f64(w, d, tokens.long())
    mtp64 = mf.mtp_f64(w, d, tokens.long(), hidden64)
    mtp32 = mf.mtp_transformers(w, config, tokens, hf["hidden"])
    head = MTPHead(mf.eager_text_config(config)).float().eval()
    head.load_state_dict({k[4:]: v.float() for k, v in w.items() if k.startswith("mtp.")}, strict=True)
    E = w["embed_tokens.weight"].float()
    ours = head(E, hf["hidden"][None, :-1], tokens[None, 1:].long(), 1)[0][0] @ E.T
    tensors = {"tokens": tokens, "logits": hf["logits"].contiguous(), "hidden": hf["hidden"].contiguous(),
               "mtp_logits": mtp64.float().contiguous()}
    validation = {"trunk_logits_float64_vs_transformers_fp32": mf.compare(hf["logits"], logits64),
                  "hidden_float64_vs_transformers_fp32": mf.compare(hf["hidden"], hidden64),
                  "mtp_logits_float64_vs_transformers_modules_fp32": mf.compare(mtp32, mtp64),
                  "mtp_logits_float64_vs_training_head_fp32": mf.compare(ours, mtp64)}
    statistics = {"logits": mf.stats(hf["logits"]), "mtp_logits": mf.stats(mtp64)}
    for name, s in statistics.items():
        mf.check_not_degenerate(f"{folder.name}/{name}", s)
    for name, v in validation.items():
        assert v["max_abs_diff_over_max_abs_ref"] < 1e-4, (name, v)
    save_file(tensors, str(folder / "reference.safetensors"))
    report = {
        "fixture": folder.name, "generator": "tools/train/train_default.py", "kind": kind,
        "dims": {k: v for k, v in vars(d).items()}, "validation": validation, "statistics": statistics,
        "transformers": {**notes, "functions_run": hf["functions_run"]}, "versions": mf.versions(),
        "segments": {"code": [0, len(code)], "endoftext": len(code), "chat_prompt": [len(code) + 1, len(tokens)]},
        "reference_tensors": {
            "tokens": f"I32 [T={len(tokens)}]: a held-out Python snippet (160 tokens), <|endoftext|>, then a "
                      "held-out chat question rendered with the chat template and add_generation_prompt",
            "logits": "F32 [T, V]: transformers fp32 eager, use_cache=False, from the BF16 checkpoint upcast",
            "hidden": "F32 [T, H]: transformers last_hidden_state (after the final norm), same run",
            "mtp_logits": "F32 [T-1, V]: float64 MTP head (tools/reference/make_fixtures.py mtp_f64); slot t "
                          "consumes (embed(tokens[t+1]), float64 trunk hidden[t]) at RoPE position t"},
        "chat_prompt_text": chat_text[0]}
    mf.write_json(folder / "reference.json", report)
    log("reference: " + json.dumps({k: v["max_abs_diff_over_max_abs_ref"] for k, v in validation.items()}))
    return {"tokens": len(tokens), "validation": validation, "statistics": statistics}


def write_card(folder: Path, m: dict) -> None:
    e, mod, tr = m["eval"], m["model"], m["train"]
    g, s = e["greedy"], e["sampled"]
    size = m["export"]["size_estimate_mtplx_q8_trunk_int4_mtp"]
    text = f"""# mtplx default model (BF16 export)

A small model of the real Qwen3.5 architecture (`Qwen3_5ForCausalLM`: Gated DeltaNet + gated
full attention, 3:1) with a native MTP head (`mtp.*`, one full-attention layer), trained from
scratch in {tr['seconds']:.0f} s on one {mod['gpu']} by `tools/train/train_default.py` of the mtplx
repository. It is a test-and-demo model: it writes Python-like code and answers in ChatML with
`<think>` blocks, but it knows little and is often wrong. Its corpus is the Python standard library
and the sources/docs of Python packages installed on the training machine, plus synthetic chat
samples made from their docstrings. See docs/default_model.md in the repository.

- parameters: trunk {mod['params_trunk']:,}, MTP head {mod['params_mtp']:,}
- vocabulary: {mod['config']['vocab_size']} (byte-level BPE, Qwen3.5 pre-tokenizer, Qwen special tokens)
- trained on {tr['tokens_seen']:,} tokens (sequence length {tr['seq_len']})
- held-out code perplexity: {e['heldout_code']['ppl']:.2f}
- MTP greedy acceptance (cumulative, depth 1/2/3): {', '.join(f'{v:.3f}' for v in g['cumulative'])}
- MTP acceptance at T=0.6/top-p 0.95/top-k 20 (depth 1 exact; chained estimate 1/2/3):
  {', '.join(f'{v:.3f}' for v in s['chained_estimate'])}
- estimated MTPLX artifact (8-bit g64 trunk + body-int4 MTP sidecar): {size['total_bytes'] / 1e6:.2f} MB of weights

Files: model.safetensors (BF16; `model.*` trunk, tied embeddings, top-level `mtp.*` with zero-centred
norms as Hugging Face stores them), config.json, generation_config.json, tokenizer.json,
tokenizer_config.json (real Qwen3.5 chat template), reference.safetensors/json (reference logits),
training_metrics.json, training_curve.csv.
"""
    (folder / "README.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()

"""Training corpus for the default model, built from text that is already on the machine.

Sources: the Python standard library and the installed packages (site-packages): source files
(.py), documentation (.md, .rst, .txt) and package descriptions (*.dist-info/METADATA). Files are
deduplicated by content hash and split into train / held-out by that hash, so a file and every
copy of it land on the same side. From the .py files of each side we also derive chat samples:
synthetic question/answer pairs about documented functions and classes (the user asks what X does,
the assistant thinks briefly and answers with X's signature and docstring). They are rendered with
the real Qwen3.5 chat template elsewhere (train_default.py); this module only builds the messages.

Everything here is standard library only, so it runs before torch/CUDA are touched (it forks).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import multiprocessing
import os
import random
import sysconfig
import time
from pathlib import Path

CODE_EXT = (".py",)
DOC_EXT = (".md", ".rst", ".txt")
MIN_BYTES = 200
MAX_BYTES = 256 * 1024
MAX_LINE = 1000  # skip minified / data-like files
HELDOUT_PER_MILLE = 20  # 2% of distinct files (by content hash)


@dataclasses.dataclass
class Doc:
    path: str  # relative to its root, with the root's label in front
    kind: str  # "code" or "prose"
    text: str
    sha: str

    @property
    def heldout(self) -> bool:
        return int(self.sha[:8], 16) % 1000 < HELDOUT_PER_MILLE


def source_roots() -> list[tuple[str, Path]]:
    paths = sysconfig.get_paths()
    roots = []
    for label, key in (("stdlib", "stdlib"), ("site", "purelib"), ("site", "platlib")):
        p = Path(paths[key]).resolve()
        if p.is_dir() and all(p != r for _, r in roots):
            roots.append((label, p))
    return roots


def _kind(path: Path) -> str | None:
    name = path.name
    if name.endswith(CODE_EXT):
        return "code"
    if name.endswith(DOC_EXT) or (name == "METADATA" and path.parent.name.endswith(".dist-info")):
        return "prose"
    return None


def list_files(deadline: float) -> list[tuple[str, str, str, Path]]:
    """(label, kind, relative path, path) for every candidate file, in a fixed (sorted) order."""
    out = []
    for label, root in source_roots():
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
            rel_dir = os.path.relpath(dirpath, root)
            for name in sorted(filenames):
                path = Path(dirpath) / name
                kind = _kind(path)
                if kind:
                    out.append((label, kind, f"{label}:{os.path.normpath(os.path.join(rel_dir, name))}", path))
            if time.monotonic() > deadline:
                return out
    return out


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _clean(raw: bytes) -> str | None:
    if not (MIN_BYTES <= len(raw) <= MAX_BYTES) or b"\0" in raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if max((len(line) for line in text.splitlines()), default=0) > MAX_LINE:
        return None
    return text.replace("\r\n", "\n")


def collect(code_cap: int, prose_cap: int, seconds: float, seed: int = 0) -> tuple[list[Doc], dict]:
    """Read files in a seeded random order until each kind reaches its byte cap (or time runs out)."""
    from concurrent.futures import ThreadPoolExecutor

    start = time.monotonic()
    files = list_files(start + seconds * 0.4)
    listed = len(files)
    random.Random(seed).shuffle(files)
    caps = {"code": code_cap, "prose": prose_cap}
    used = {"code": 0, "prose": 0}
    seen: set[str] = set()
    docs: list[Doc] = []
    stats = {"files_listed": listed, "read": 0, "rejected": 0, "duplicates": 0, "time_capped": False}
    batch = 256
    with ThreadPoolExecutor(16) as pool:
        for at in range(0, len(files), batch):
            if all(used[k] >= caps[k] for k in caps):
                break
            if time.monotonic() - start > seconds:
                stats["time_capped"] = True
                break
            chunk = [f for f in files[at:at + batch] if used[f[1]] < caps[f[1]]]
            for (label, kind, rel, path), raw in zip(chunk, pool.map(_read, [f[3] for f in chunk])):
                if raw is None or used[kind] >= caps[kind]:
                    continue
                stats["read"] += 1
                text = _clean(raw)
                if text is None:
                    stats["rejected"] += 1
                    continue
                sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
                if sha in seen:
                    stats["duplicates"] += 1
                    continue
                seen.add(sha)
                docs.append(Doc(rel, kind, text, sha))
                used[kind] += len(text.encode("utf-8"))
    docs.sort(key=lambda d: d.path)
    stats.update({"seconds": round(time.monotonic() - start, 2), "bytes": used,
                  "docs": {k: sum(d.kind == k for d in docs) for k in caps},
                  "heldout_docs": {k: sum(d.kind == k and d.heldout for d in docs) for k in caps}})
    return docs, stats


# ----------------------------------------------------------------------------------------------
# Chat samples from docstrings
# ----------------------------------------------------------------------------------------------

def module_name(rel: str) -> str:
    path = rel.split(":", 1)[1]
    for prefix in ("site-packages/", "dist-packages/"):
        if prefix in path:
            path = path.split(prefix, 1)[1]
    path = path[:-3] if path.endswith(".py") else path
    parts = [p for p in path.split("/") if p]
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "__main__"


def _signature(node) -> str:
    try:
        text = ast.unparse(node.args)
    except Exception:  # noqa: BLE001 - odd syntax: fall back to names
        text = ", ".join(a.arg for a in node.args.args)
    if len(text) > 160:
        names = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
        text = ", ".join(names)
    return f"({text})"


def _first_paragraphs(doc: str, max_chars: int = 700) -> str:
    doc = inspect.cleandoc(doc).strip()
    paragraphs = [p.strip() for p in doc.split("\n\n") if p.strip()]
    out = []
    for p in paragraphs:
        if out and sum(len(x) for x in out) + len(p) > max_chars:
            break
        out.append(p)
    return "\n\n".join(out)[: max_chars * 2]


def documented_items(doc_path: str, text: str) -> list[dict]:
    """Public functions / classes / methods with a docstring, from one .py file."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    module = module_name(doc_path)
    items = []

    def visit(body, owner: str | None):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if node.name.startswith("_"):
                    continue
                doc = ast.get_docstring(node, clean=False)
                qual = f"{owner}.{node.name}" if owner else node.name
                if doc and 20 <= len(doc.strip()):
                    kind = "class" if isinstance(node, ast.ClassDef) else ("method" if owner else "function")
                    sig = "" if kind == "class" else _signature(node)
                    answer = _first_paragraphs(doc)
                    if len(answer) >= 20:
                        items.append({"module": module, "qualname": qual, "kind": kind, "signature": sig,
                                      "doc": answer, "async": isinstance(node, ast.AsyncFunctionDef)})
                if isinstance(node, ast.ClassDef) and owner is None:
                    visit(node.body, node.name)

    visit(tree.body, None)
    return items


def _items_worker(args):
    path, text = args
    return documented_items(path, text)


QUESTIONS = [
    "What does `{full}` do?",
    "What does the {kind} `{name}` in `{module}` do?",
    "Explain `{full}`.",
    "Can you describe what `{name}` does in the {module} module?",
    "What is `{full}` for?",
    "I found `{name}` in `{module}`. What is it?",
    "Briefly, what is the purpose of `{full}`?",
    "How would you summarize `{full}`?",
]
SYSTEMS = ["You are a helpful assistant.", "You are a concise Python expert.",
           "Answer questions about Python libraries accurately and briefly."]


def _thinking(item: dict, rng: random.Random) -> str:
    what = {"class": "a class", "function": "a function", "method": "a method"}[item["kind"]]
    if item["async"]:
        what = "an async " + what.split(" ", 1)[1]
    parts = [f"The user asks about `{item['module']}.{item['qualname']}`. It is {what} in the "
             f"`{item['module']}` module."]
    if item["signature"] and item["signature"] != "()":
        parts.append(f"Its parameters are {item['signature']}.")
    elif item["kind"] != "class":
        parts.append("It takes no arguments.")
    parts.append(rng.choice(["Its docstring explains it, so I will summarize that.",
                             "I will answer from its docstring.",
                             "The docstring describes what it does; I will quote the key part."]))
    return " ".join(parts)


def chat_messages(item: dict, rng: random.Random) -> dict:
    """One conversation (messages + whether the assistant turn has reasoning)."""
    full = f"{item['module']}.{item['qualname']}"
    name = item["qualname"]
    question = rng.choice(QUESTIONS).format(full=full, name=name, module=item["module"], kind=item["kind"])
    header = f"`{full}{item['signature']}`" if item["signature"] else f"`{full}` ({item['kind']})"
    answer = f"{header}\n\n{item['doc']}"
    messages = []
    if rng.random() < 0.25:
        messages.append({"role": "system", "content": rng.choice(SYSTEMS)})
    messages.append({"role": "user", "content": question})
    think = rng.random() < 0.8
    messages.append({"role": "assistant", "content": answer,
                     "reasoning_content": _thinking(item, rng) if think else ""})
    return {"messages": messages, "thinking": think}


def chat_samples(docs: list[Doc], heldout: bool, max_items: int, seconds: float, seed: int) -> tuple[list, dict]:
    """Conversations about documented items of the .py files on one side of the split."""
    start = time.monotonic()
    code = [(d.path, d.text) for d in docs if d.kind == "code" and d.heldout == heldout]
    items = []
    with multiprocessing.get_context("fork").Pool(max(1, min(16, os.cpu_count() or 1))) as pool:
        for found in pool.imap(_items_worker, code, chunksize=16):
            items.extend(found)
            if len(items) >= max_items * 2 or time.monotonic() - start > seconds:
                break
        pool.terminate()
    rng = random.Random(seed)
    rng.shuffle(items)
    items = items[:max_items]
    convs = [chat_messages(it, rng) for it in items]
    # Some two-question conversations: the first answer's reasoning is dropped by the template.
    merged = []
    i = 0
    while i < len(convs):
        if i + 1 < len(convs) and rng.random() < 0.15:
            a, b = convs[i]["messages"], convs[i + 1]["messages"]
            b_turns = [m for m in b if m["role"] != "system"]
            merged.append({"messages": a + b_turns, "thinking": convs[i + 1]["thinking"]})
            i += 2
        else:
            merged.append(convs[i])
            i += 1
    return merged, {"files_parsed_from": len(code), "items_found": len(items), "conversations": len(merged),
                    "seconds": round(time.monotonic() - start, 2)}

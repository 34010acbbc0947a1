"""Synthetic queries from a local LM (InPars / Promptagator style), for training without labels.

Pipeline: token chunks of each document -> one chat prompt per chunk asking for a short claim the
passage supports (SciFact queries are claims) -> n sampled generations per chunk,
batched with left padding -> clean + dedup (normalised text, across all chunks) -> round-trip
filter: keep a query only if a dense retriever ranks its source document in the top k
(Promptagator's consistency filter) -> pairs JSONL that `ragtune.data.pairs.load_records` reads.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

SYSTEM = "You write short scientific claims."
# "supports or refutes" made SmolLM2-135M echo the instruction ("This passage supports or refutes the
# efficacy of ..."), and an example claim in the prompt was copied into most outputs: neither is used.
INSTRUCTION = ("Passage:\n{passage}\n\nWrite one short scientific claim, a single sentence, that this passage "
               "supports. Reply with the claim only.")


def chunk_tokens(text: str, tokenizer, size: int, overlap: int) -> list[str]:
    """Windows of `size` tokens, consecutive windows sharing `overlap` tokens.

    Windows start at 0, stride, 2*stride, ... (stride = size - overlap) while they still hold a token
    the previous window lacked, so the last window may be shorter and no window is all overlap.
    """
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"chunking needs size >= 1 and 0 <= overlap < size, got size={size}, overlap={overlap}")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        return []
    stride = size - overlap
    return [tokenizer.decode(ids[s:s + size]).strip() for s in range(0, max(len(ids) - overlap, 1), stride)]


def build_prompt(passage: str, tokenizer) -> str:
    """The chat-formatted prompt (with the assistant turn opened) asking for one claim."""
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": INSTRUCTION.format(passage=passage)}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@torch.inference_mode()
def generate_batch(model, tokenizer, prompts: list[str], n: int = 1, max_new_tokens: int = 32,
                   do_sample: bool = True, temperature: float = 0.7, top_p: float = 0.9,
                   seed: int | None = None) -> tuple[list[list[str]], int]:
    """n completions per prompt (left-padded batch) -> (texts (P, n), generated token count).

    Left padding keeps every prompt's last token at the end, so the first new token of each row
    comes from the same position; generate() derives position ids from the attention mask.
    """
    if seed is not None:
        torch.manual_seed(seed)  # per batch: a resumed run draws the same samples for the same batch
    if tokenizer.pad_token_id is None:  # many causal LMs ship none; padded positions are masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    device = next(model.parameters()).device
    sampling = {"temperature": temperature, "top_p": top_p} if do_sample else {}
    out = model.generate(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                         max_new_tokens=max_new_tokens, do_sample=do_sample, num_return_sequences=n,
                         pad_token_id=tokenizer.pad_token_id, **sampling)
    new = out[:, enc["input_ids"].shape[1]:].cpu()  # (P * n, T_new)
    eos = tokenizer.eos_token_id
    n_tokens = 0
    for row in new.tolist():  # tokens up to and including the first EOS; later ones are padding
        n_tokens += row.index(eos) + 1 if eos in row else len(row)
    texts = tokenizer.batch_decode(new, skip_special_tokens=True)
    return [texts[i * n:(i + 1) * n] for i in range(len(prompts))], n_tokens


# A 135M model often wraps the claim: "This passage supports the claim that X" -> "X".
_META = re.compile(r"^(?:the|this|our)\s+(?:present\s+)?(?:passage|study|article|text|paper|abstract)\s+"
                   r"(?:supports|suggests|shows|found|finds|indicates|demonstrates|states)\s+"
                   r"(?:(?:the|a|an)\s+)?(?:(?:claim|idea|hypothesis|finding|notion|conclusion|view|statement)\s+)?"
                   r"(?:that\s+)?", re.IGNORECASE)
_LABEL = re.compile(r"^\s*(?:claim|answer|query)\s*\d*\s*[:.-]\s*", re.IGNORECASE)


def clean_query(text: str, min_words: int = 3) -> str:
    """One claim from a raw generation; '' when nothing usable is left.

    Takes the first line that is not an intro ("Here's a claim:"), drops a "Claim:" label, quotes
    and a "The passage supports the claim that" wrapper, and keeps the first sentence.
    """
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.strip().endswith(":")]
    line = _LABEL.sub("", lines[0]) if lines else ""
    line = line.strip().strip("\"'“”").strip()
    line = _META.sub("", line)
    line = re.split(r"(?<=[.!?])\s+(?=[A-Z])", line)[0].strip().strip("\"'“”").strip()
    return line if len(line.split()) >= min_words else ""


def normalize(text: str) -> str:
    """Dedup key: lowercase, punctuation removed, whitespace collapsed."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def dedup(queries: Iterable[str]) -> list[int]:
    """Indices of the first occurrence of each normalised query (empty queries dropped)."""
    seen, keep = set(), []
    for i, q in enumerate(queries):
        key = normalize(q)
        if key and key not in seen:
            seen.add(key)
            keep.append(i)
    return keep


def source_ranks(q_emb: torch.Tensor, d_emb: torch.Tensor, source: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """(Q,) 1-based rank of each query's source doc: 1 + #docs scoring strictly higher.

    q_emb (Q, H), d_emb (N, H), source (Q,) indices into d_emb. Ties count in the source's favour.
    """
    ranks = []
    for s in range(0, q_emb.shape[0], chunk):
        scores = q_emb[s:s + chunk] @ d_emb.T  # (C, N)
        own = scores.gather(1, source[s:s + chunk, None])  # (C, 1)
        ranks.append(1 + (scores > own).sum(1))
    return torch.cat(ranks) if ranks else torch.empty(0, dtype=torch.long)


def round_trip_filter(q_emb: torch.Tensor, d_emb: torch.Tensor, source: torch.Tensor,
                      top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep (Q,) bool, ranks (Q,)): keep a query iff its source ranks within the top_k."""
    ranks = source_ranks(q_emb, d_emb, source)
    return ranks <= top_k, ranks


def write_pairs(path: str | Path, rows: list[dict]) -> None:
    """Atomic JSONL write (temp file + rename): a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    os.replace(tmp, path)


def generate_all(model, tokenizer, passages: list[str], scfg, partial_path: Path | None = None,
                 progress: Callable[[int], None] | None = None) -> tuple[list[list[str]], dict]:
    """Generations for every passage, in batches; resumable through a per-batch JSONL log.

    Each finished batch is appended to `partial_path` as {"start", "texts", "tokens",
    "prompt_tokens", "seconds"}; a restart reads it and generates only the batches it lacks (each
    batch is seeded by its start, so samples do not depend on where a run stopped). Throughput in
    the stats sums every batch, including those of the interrupted run.
    """
    done: dict[int, dict] = {}
    if partial_path is not None and partial_path.is_file():
        for line in partial_path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a crash: that batch is generated again
                continue
            done[row["start"]] = row
    resumed = 0
    out: list[list[str]] = []
    log = partial_path.open("a") if partial_path is not None else None
    try:
        for start in range(0, len(passages), scfg.batch_size):
            batch = passages[start:start + scfg.batch_size]
            if start in done and len(done[start]["texts"]) == len(batch):
                resumed += 1
            else:
                prompts = [build_prompt(p, tokenizer) for p in batch]
                t0 = time.perf_counter()
                texts, n_tokens = generate_batch(model, tokenizer, prompts, scfg.queries_per_chunk,
                                                 scfg.max_new_tokens, scfg.do_sample, scfg.temperature,
                                                 scfg.top_p, seed=scfg.seed + start)
                n_prompt = sum(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts)
                done[start] = {"start": start, "texts": texts, "tokens": n_tokens, "prompt_tokens": n_prompt,
                               "seconds": time.perf_counter() - t0}
                if log is not None:
                    log.write(json.dumps(done[start]) + "\n")
                    log.flush()
            out.extend(done[start]["texts"])
            if progress is not None:
                progress(len(batch))
    finally:
        if log is not None:
            log.close()
    used = [done[s] for s in range(0, len(passages), scfg.batch_size)]
    secs = sum(r.get("seconds", 0.0) for r in used)
    tokens, prompt_tokens = sum(r.get("tokens", 0) for r in used), sum(r.get("prompt_tokens", 0) for r in used)
    return out, {"generated_tokens": tokens, "prompt_tokens": prompt_tokens, "generation_seconds": secs,
                 "tokens_per_second": tokens / secs if secs else 0.0,
                 "prompt_and_generated_tokens_per_second": (tokens + prompt_tokens) / secs if secs else 0.0,
                 "resumed_batches": resumed}


def select_queries(generations: list[list[str]], min_words: int = 3) -> tuple[list[str], list[int], list[int], dict]:
    """Clean and dedup (P, n) generations -> (queries, passage index of each, sample index of each
    within its passage's n, counts)."""
    flat = [(clean_query(t, min_words), p, j) for p, texts in enumerate(generations) for j, t in enumerate(texts)]
    usable = [row for row in flat if row[0]]
    keep = dedup(q for q, _, _ in usable)
    counts = {"generated": len(flat), "empty_or_short": len(flat) - len(usable),
              "duplicates": len(usable) - len(keep), "deduped": len(keep)}
    return [usable[i][0] for i in keep], [usable[i][1] for i in keep], [usable[i][2] for i in keep], counts


def pair_rows(queries: list[str], passages: list[str], passage_idx: list[int], doc_ids: list[str],
              keep: np.ndarray, prefix: str = "synth") -> list[dict]:
    """load_records rows: the chunk as `pos`, its source document as `pos_id`; kept queries only."""
    rows = []
    for i, (q, p) in enumerate(zip(queries, passage_idx, strict=True)):
        if keep[i]:
            rows.append({"qid": f"{prefix}-{len(rows)}", "query": q, "pos": passages[p], "pos_id": doc_ids[p]})
    return rows

"""Query-side fine-tuning against a frozen index: only the query encoder trains.

The initial encoder embeds the corpus once (`cached_encode`), and those document embeddings never
change, so a deployed vector index stays valid: no re-encode of the corpus after training. A step
is one forward pass over B short queries and a (B, H) x (H, N) product with the whole corpus.

Training rows (`data.train_file`, JSONL): {"qid", "query", "cand_ids": [...], "cand_scores": [...]},
a teacher's candidate list per query in the student's units (cos / tau), written by
`ragtune adapt` (ragtune/commands/adapt.py). No row needs a positive: the loss (kind "corpus",
e.g. corpus_kl_distill) matches the student's softmax over the whole corpus to the teacher's list,
so an unlabelled query log trains as well as generated queries do. There is no dev split: nothing
label-free predicted the real queries (README, "No labels"), so the run keeps its last step
(train.select=last) after a fixed budget.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ragtune.config import ConfigError
from ragtune.data.beir import DataError, read_jsonl
from ragtune.data.folds import load_split
from ragtune.eval.dense import corpus_texts
from ragtune.eval.metrics import evaluate
from ragtune.losses import compute_loss, loss_spec
from ragtune.models.biencoder import BiEncoder
from ragtune.models.encoder import Encoder
from ragtune.models.export import export_sentence_transformers
from ragtune.retrieval.cache import cached_encode
from ragtune.retrieval.dense import dense_search
from ragtune.tasks import Task

FIELDS = ("qid", "query", "cand_ids", "cand_scores")
DOC_ENCODER_FILE = "doc_encoder.json"  # beside the exported query encoder: which model embedded the corpus


def check_query_tower(cfg) -> None:
    """Settings the task cannot run, before any loading."""
    loss_spec(cfg.loss.name, kinds=("corpus",), task="query_tower")
    if not cfg.data.train_file:
        raise ConfigError("data.train_file: the query_tower task trains on a teacher's candidate lists "
                          f"(fields {list(FIELDS)}), e.g. the pseudo_labels.jsonl of `ragtune adapt`")
    if cfg.train.select != "last":
        raise ConfigError("train.select: the query_tower task has no dev split (its rows carry no positive); "
                          "set train.select=last and size the run with train.max_steps or train.epochs")


def load_lists(path: str, doc_index: dict[str, int]) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(queries, candidates (Q, K) corpus rows, teacher scores (Q, K)); every row must list K documents."""
    rows = read_jsonl(Path(path), FIELDS)
    if not rows:
        raise DataError(f"{path}: no training rows")
    width = len(rows[0][1]["cand_ids"])
    queries, cands, scores = [], [], []
    for line, row in rows:
        ids, vals = row["cand_ids"], row["cand_scores"]
        if len(ids) != width or len(vals) != width or width == 0:
            raise DataError(f"{path}:{line}: cand_ids and cand_scores must both hold {width} entries (the first "
                            f"row's), got {len(ids)} and {len(vals)}")
        unknown = [d for d in ids if d not in doc_index]
        if unknown:
            raise DataError(f"{path}:{line}: cand_ids {unknown[:3]} are not in the corpus")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            raise DataError(f"{path}:{line}: cand_scores must be numbers, got {vals[:3]}")
        queries.append(row["query"])
        cands.append([doc_index[d] for d in ids])
        scores.append([float(v) for v in vals])
    return queries, torch.tensor(cands, dtype=torch.long), torch.tensor(scores, dtype=torch.float32)


def build(cfg, accelerator) -> Task:
    check_query_tower(cfg)
    corpus_only = load_split(cfg, "train")  # data.train_split=none: the corpus alone
    doc_ids, texts = corpus_texts(corpus_only)
    doc_index = {d: i for i, d in enumerate(doc_ids)}
    queries, candidates, teacher = load_lists(cfg.data.train_file, doc_index)

    start = time.perf_counter()
    encoder = Encoder.from_config(cfg.model).to(accelerator.device)
    # the initial weights embed the corpus, once; under N processes each embeds 1/N of it
    d_emb = cached_encode(encoder, texts, "doc", cfg.eval.cache_dir or None, cfg.eval.batch_size,
                          accelerator.is_main_process, collective=True)
    docs = torch.from_numpy(d_emb).to(accelerator.device)  # (N, H), frozen
    model = BiEncoder(encoder, cfg.loss.temperature, cfg.loss.learn_temperature)
    loader = DataLoader(range(len(queries)), batch_size=cfg.train.batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(cfg.seed),
                        collate_fn=lambda idx: {"q": encoder.tokenize([queries[i] for i in idx], "query"),
                                                "cand": candidates[idx], "teacher": teacher[idx]})

    def step_fn(model, batch):
        temperature = accelerator.unwrap_model(model).temperature
        scores = model(**batch["q"]) @ docs.T / temperature  # (B, N)
        loss = compute_loss(cfg.loss, group_size=1, scores=scores, candidates=batch["cand"],
                            teacher=batch["teacher"])
        return loss, {"temperature": float(temperature)}

    @functools.cache
    def split(name: str):
        if name != cfg.data.eval_split:
            raise ValueError(f"unknown split '{name}'; the query_tower task evaluates {cfg.data.eval_split!r} only")
        return load_split(cfg, "eval")  # first read at the first test evaluation

    def evaluate_split(model, name: str) -> dict[str, float]:
        data = split(name)
        qids = list(data.queries)
        q = model.encoder.encode([data.queries[i] for i in qids], kind="query", batch_size=cfg.eval.batch_size,
                                 show_progress=False)
        run = dense_search(q, docs.cpu(), qids, doc_ids, top_k=max(cfg.eval.top_k, *cfg.eval.k_values))
        return evaluate(run, data.qrels, cfg.eval.k_values)

    def export(model, path: Path) -> None:
        export_sentence_transformers(model.encoder, path)
        (Path(path) / DOC_ENCODER_FILE).write_text(json.dumps(
            {"doc_encoder": cfg.model.name, "why": "this folder encodes queries only; the documents keep the "
             "embeddings of doc_encoder, which training never changed"}, indent=2) + "\n")

    if accelerator.is_main_process:
        print(f"query tower: {len(queries)} training queries, {candidates.shape[1]} teacher candidates each, "
              f"{len(doc_ids)} frozen documents, {len(loader)} batches/epoch")
    return Task(model=model, evaluate=evaluate_split, eval_splits=[cfg.data.eval_split], train_loader=loader,
                step_fn=step_fn, export=export,
                timings={"embed_or_cache_seconds": time.perf_counter() - start, "corpus_docs": len(doc_ids),
                         "train_queries": len(queries)})

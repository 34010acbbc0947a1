"""BM25 first stage, evaluation only: index the corpus, search, score; timings for both.

`hybrid.bm25_k1` / `hybrid.bm25_b` set BM25's parameters (the other analyzer settings are
ragtune.bm25.BM25Config's defaults). timings.json gets bm25_index_seconds (raw text ->
index, analysis included) and bm25_query_seconds (all queries, top eval.top_k).
"""

from __future__ import annotations

import torch

from experiments.tasks import TaskParts
from ragtune.data.folds import load_split
from ragtune.first_stage import first_stage_run
from ragtune.metrics import evaluate


def build(cfg, accelerator) -> TaskParts:
    dataset = load_split(cfg, "eval")
    # No trainable model: the loop and export never run for an evaluation-only task.
    parts = TaskParts(model=torch.nn.Identity(), evaluate=None, eval_splits=[cfg.data.eval_split])

    def evaluate_split(model, split: str) -> dict[str, float]:
        if split != cfg.data.eval_split:
            raise ValueError(f"task bm25 evaluates only data.eval_split={cfg.data.eval_split!r}, not {split!r}")
        run, timings = first_stage_run("bm25", dataset, cfg)
        parts.timings.update(timings)
        parts.timings["ms_per_query"] = 1000 * timings["bm25_query_seconds"] / max(len(dataset.queries), 1)
        return evaluate(run, dataset.qrels, cfg.eval.k_values)

    parts.evaluate = evaluate_split
    return parts

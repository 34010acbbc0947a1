"""BM25 first stage, evaluation only: index the corpus, search, score; timings for both.

`bm25.k1` / `bm25.b` set BM25's parameters (the other analyzer settings are
ragtune.retrieval.bm25.BM25Config's defaults). timings.json gets bm25_index_seconds (raw text ->
index, analysis included) and bm25_query_seconds (all queries, top eval.top_k).
"""

from __future__ import annotations

from ragtune.data.folds import load_split
from ragtune.eval.metrics import evaluate
from ragtune.retrieval.first_stage import first_stage_run
from ragtune.tasks import Task


def build(cfg, accelerator) -> Task:
    dataset = load_split(cfg, "eval")
    timings: dict[str, float] = {}

    def evaluate_split(model, split: str) -> dict[str, float]:
        if split != cfg.data.eval_split:
            raise ValueError(f"task bm25 evaluates only data.eval_split={cfg.data.eval_split!r}, not {split!r}")
        run, run_timings = first_stage_run("bm25", dataset, cfg)
        timings.update(run_timings)
        timings["ms_per_query"] = 1000 * run_timings["bm25_query_seconds"] / max(len(dataset.queries), 1)
        return evaluate(run, dataset.qrels, cfg.eval.k_values)

    # No model: nothing trains, and evaluate_split ignores the model it is given.
    return Task(model=None, evaluate=evaluate_split, eval_splits=[cfg.data.eval_split], timings=timings)

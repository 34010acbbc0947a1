"""Zero-shot dense retrieval: encode the corpus (cached) and the queries, search, score."""

from __future__ import annotations

from experiments.tasks import TaskParts
from ragtune.data.folds import load_split
from ragtune.evaluation import evaluate_dense
from ragtune.models.encoder import Encoder


def build(cfg, accelerator) -> TaskParts:
    encoder = Encoder.from_config(cfg.model).to(accelerator.device)
    dataset = load_split(cfg, "eval")
    parts = TaskParts(model=encoder, evaluate=None, eval_splits=[cfg.data.eval_split])

    def evaluate(model, split: str) -> dict[str, float]:
        result = evaluate_dense(model, dataset, cfg.eval, show_progress=accelerator.is_main_process)
        parts.timings.update({
            "corpus_encode_seconds": result.corpus_seconds,
            "corpus_docs": len(dataset.corpus),
            "query_seconds": result.query_seconds,
        })
        return result.metrics

    parts.evaluate = evaluate
    return parts

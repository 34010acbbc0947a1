"""Zero-shot dense retrieval: encode the corpus (cached) and the queries, search, score."""

from __future__ import annotations

from ragtune.data.folds import load_split
from ragtune.eval.dense import evaluate_dense
from ragtune.inference.backends import for_inference
from ragtune.models.encoder import Encoder
from ragtune.tasks import Task


def build(cfg, accelerator) -> Task:
    encoder = Encoder.from_config(cfg.model).to(accelerator.device)
    dataset = load_split(cfg, "eval")
    timings: dict[str, float] = {}

    def evaluate(model, split: str) -> dict[str, float]:
        model = for_inference(model, cfg.eval.backend, cfg.eval.cache_dir or None)
        result = evaluate_dense(model, dataset, cfg.eval, show_progress=accelerator.is_main_process, index=cfg.index)
        timings.update({
            "corpus_encode_seconds": result.corpus_seconds,
            "corpus_docs": len(dataset.corpus),
            "query_seconds": result.query_seconds,
            **result.index_info,
        })
        return result.metrics

    return Task(model=encoder, evaluate=evaluate, eval_splits=[cfg.data.eval_split], timings=timings)

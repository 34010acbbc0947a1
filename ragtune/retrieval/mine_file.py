"""Mine a config's train split into a training JSONL: the library side of `ragtune mine`.

All train queries are mined, dev hold-out included: the training task drops dev queries by qid.
Settings come from `mining.*` (ragtune/retrieval/mining.py explains the window and the
false-negative filter); the dense source uses `model.*` (corpus embeddings from the cache), BM25
uses `bm25.*`. Writes <out> and <out>.stats.json (the counts).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ragtune.config import ConfigError
from ragtune.data.folds import load_split
from ragtune.retrieval.first_stage import bm25_config
from ragtune.retrieval.mining import bm25_source, dense_candidates, mine_negatives, write_training_records

SOURCES = ("dense", "bm25")


def mine(cfg, out: Path) -> dict[str, float]:
    if cfg.mining.source not in SOURCES:
        raise ConfigError(f"--mining.source must be one of {list(SOURCES)}, got {cfg.mining.source!r}")
    dataset = load_split(cfg, "train")
    start = time.perf_counter()
    if cfg.mining.source == "dense":
        # torch/transformers only when needed
        from ragtune.inference.backends import for_inference
        from ragtune.models.encoder import Encoder

        encoder = for_inference(Encoder.from_config(cfg.model), cfg.eval.backend, cfg.eval.cache_dir or None)
        candidates, scorer = dense_candidates(encoder, dataset, cfg.mining.top_k, cfg.eval.cache_dir or None,
                                              cfg.eval.batch_size, index=cfg.index)
    else:
        candidates, scorer = bm25_source(dataset, cfg.mining.top_k, bm25_config(cfg.bm25))
    retrieve_seconds = time.perf_counter() - start
    counts: dict[str, int] = {}
    start = time.perf_counter()
    negatives = mine_negatives(candidates, dataset.qrels, cfg.mining, cfg.seed, scorer,
                               corpus_ids=list(dataset.corpus), stats=counts)
    mine_seconds = time.perf_counter() - start
    lines = write_training_records(out, dataset, negatives)
    per_query = [len(n) for n in negatives.values()]
    n_q = max(counts["queries"], 1)
    stats = {
        "source": cfg.mining.source, "dataset": f"{dataset.name}/{dataset.split}", "out": str(out),
        "queries": counts["queries"], "records": lines,
        "negatives_per_query_mean": sum(per_query) / n_q,
        "negatives_per_query_min": min(per_query, default=0), "negatives_per_query_max": max(per_query, default=0),
        "queries_without_negatives": sum(n == 0 for n in per_query),
        "window_candidates": counts["window"], "dropped_false_neg": counts["dropped_false_neg"],
        "dropped_false_neg_per_query": counts["dropped_false_neg"] / n_q,
        "hard": counts["hard"], "random": counts["random"],
        "retrieve_seconds": round(retrieve_seconds, 2), "mine_seconds": round(mine_seconds, 2),
        "mining": {k: getattr(cfg.mining, k) for k in cfg.mining.__dataclass_fields__}, "seed": cfg.seed,
        "index": cfg.index.kind if cfg.mining.source == "dense" else "bm25",
    }
    Path(f"{out}.stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats

"""First-stage retrieval in one place: dense, BM25, or a BM25 + dense hybrid.

    run, timings = first_stage_run("hybrid", dataset, cfg, encoder=encoder, top_k=100)

`run` is {qid: {doc_id: score}} over `dataset.queries`; `timings` holds wall seconds for
indexing (BM25 index build / dense corpus embeddings, near 0 on an embedding-cache hit)
and for answering all queries. Settings come from `cfg.bm25` (k1, b), `cfg.hybrid` (fusion
kind, dense weight, RRF k, per-source depth), `cfg.model` and `cfg.eval`.

Hybrid fusion, with w = cfg.hybrid.weight (the dense share):
    rrf:      S(d) = (1 - w) / (k + rank_bm25(d)) + w / (k + rank_dense(d))
    weighted: S(d) = (1 - w) * minmax(bm25)(d) + w * minmax(dense)(d)
each source contributing its top `max(depth, top_k)` (see ragtune/retrieval/fusion.py for ties and
missing docs). The defaults (weighted, w=0.5) were chosen on SciFact train queries, never on
test: `python experiments/run.py --config configs/scifact_hybrid.py --hybrid.tune=true
--data.dev_fraction=1.0` (see configs/scifact_hybrid.py for the grid's numbers).
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np

from ragtune.config import BM25Settings, ConfigError, ExperimentConfig, HybridConfig
from ragtune.data.beir import BeirDataset
from ragtune.eval.metrics import Run
from ragtune.inference.backends import for_inference
from ragtune.retrieval.bm25 import BM25Config, BM25Index
from ragtune.retrieval.cache import cached_encode
from ragtune.retrieval.fusion import rrf, weighted_score_fusion
from ragtune.retrieval.index import index_search

KINDS = ("dense", "bm25", "hybrid")
FUSIONS = ("rrf", "weighted")


def bm25_config(settings: BM25Settings) -> BM25Config:
    return BM25Config(k1=settings.k1, b=settings.b)


def bm25_index(dataset: BeirDataset, settings: BM25Settings) -> tuple[BM25Index, float]:
    """BM25 index over the corpus ("title text") and the seconds it took (analysis included)."""
    start = time.perf_counter()
    index = BM25Index.from_corpus(dataset.corpus, bm25_config(settings))
    return index, time.perf_counter() - start


def dense_embeddings(encoder, dataset: BeirDataset, cfg: ExperimentConfig,
                     show_progress: bool = True) -> tuple[list[str], np.ndarray, float]:
    """(doc_ids, (D, H) corpus embeddings via the on-disk cache, seconds)."""
    doc_ids = list(dataset.corpus)
    start = time.perf_counter()
    d_emb = cached_encode(encoder, [dataset.corpus[d].full_text() for d in doc_ids], "doc",
                          cfg.eval.cache_dir or None, cfg.eval.batch_size, show_progress)
    return doc_ids, d_emb, time.perf_counter() - start


def check_hybrid(hcfg: HybridConfig) -> None:
    """Fail before any indexing or encoding on settings `fuse` would reject."""
    if hcfg.fusion not in FUSIONS:
        raise ConfigError(f"hybrid.fusion must be one of {FUSIONS}, got {hcfg.fusion!r}")
    if not 0.0 <= hcfg.weight <= 1.0:
        raise ConfigError(f"hybrid.weight must be in [0, 1] (the dense share), got {hcfg.weight}")


def fuse(bm25_run: Run, dense_run: Run, hcfg: HybridConfig, top_k: int | None = None) -> Run:
    """BM25 + dense fusion as configured (formulas in the module docstring)."""
    check_hybrid(hcfg)
    weights = [1.0 - hcfg.weight, hcfg.weight]
    if hcfg.fusion == "rrf":
        return rrf([bm25_run, dense_run], k=hcfg.rrf_k, weights=weights, top_k=top_k)
    return weighted_score_fusion([bm25_run, dense_run], weights, norm="minmax", top_k=top_k)


def first_stage_run(kind: Literal["dense", "bm25", "hybrid"], dataset: BeirDataset, cfg: ExperimentConfig,
                    encoder=None, top_k: int | None = None,
                    show_progress: bool = True) -> tuple[Run, dict[str, float]]:
    """Top-`top_k` run over dataset.queries (default: max(cfg.eval.top_k, k_values)) and its timings.

    `encoder` (an ragtune Encoder) is needed for "dense" and "hybrid"; pass the one to use
    (e.g. a fine-tuned model): nothing here loads weights behind the caller's back.
    """
    if kind not in KINDS:
        raise ValueError(f"first stage kind must be one of {KINDS}, got {kind!r}")
    if kind != "bm25" and encoder is None:
        raise ValueError(f"first stage '{kind}' needs an encoder (Encoder.from_config(cfg.model))")
    if kind == "hybrid":
        check_hybrid(cfg.hybrid)
    if encoder is not None:
        encoder = for_inference(encoder, cfg.eval.backend, cfg.eval.cache_dir or None)
    top_k = top_k or max(cfg.eval.top_k, *cfg.eval.k_values)
    depth = max(cfg.hybrid.depth, top_k) if kind == "hybrid" else top_k
    qids = list(dataset.queries)
    timings: dict[str, float] = {"queries": len(qids), "docs": len(dataset.corpus)}
    runs: dict[str, Run] = {}
    if kind in ("bm25", "hybrid"):
        index, timings["bm25_index_seconds"] = bm25_index(dataset, cfg.bm25)
        start = time.perf_counter()
        runs["bm25"] = index.search(dataset.queries, top_k=depth)
        timings["bm25_query_seconds"] = time.perf_counter() - start
    if kind in ("dense", "hybrid"):
        doc_ids, d_emb, timings["dense_corpus_seconds"] = dense_embeddings(encoder, dataset, cfg, show_progress)
        start = time.perf_counter()
        q_emb = encoder.encode([dataset.queries[q] for q in qids], kind="query",
                               batch_size=cfg.eval.batch_size, show_progress=False)  # (Q, H)
        runs["dense"], info = index_search(q_emb, d_emb, qids, doc_ids, depth, cfg.index)
        timings["dense_query_seconds"] = time.perf_counter() - start
        timings.update({f"dense_{k}" if not k.startswith("ann_") else k: v for k, v in info.items()})
    if kind != "hybrid":
        return runs[kind], timings
    start = time.perf_counter()
    run = fuse(runs["bm25"], runs["dense"], cfg.hybrid, top_k=top_k)
    timings["fusion_seconds"] = time.perf_counter() - start
    return run, timings

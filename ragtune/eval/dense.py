"""Evaluate a dense encoder on a BEIR split: encode (cached), search, score."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from ragtune.config import EvalConfig, IndexConfig
from ragtune.data.beir import BeirDataset
from ragtune.eval.metrics import Run, evaluate
from ragtune.retrieval.cache import cached_encode
from ragtune.retrieval.dense import dense_search
from ragtune.retrieval.index import index_search


@dataclass
class DenseEvalResult:
    metrics: dict[str, float]
    run: Run
    corpus_seconds: float  # wall time to obtain corpus embeddings (near 0 on a cache hit)
    query_seconds: float
    index_info: dict = dataclasses.field(default_factory=dict)  # backend, build/query seconds, ann_recall@k


def corpus_texts(dataset: BeirDataset) -> tuple[list[str], list[str]]:
    doc_ids = list(dataset.corpus)
    return doc_ids, [dataset.corpus[d].full_text() for d in doc_ids]


def candidate_pool(encoder, dataset: BeirDataset, top_k: int, cfg: EvalConfig, split: str = "") -> BeirDataset:
    """`dataset` with its corpus cut to the qrels positives + `encoder`'s top-k per query.

    A cheap stand-in for the full corpus when many models must be compared (sweeps): the
    encoder's own top-k ranking is unchanged, a later model can only rank these docs.
    """
    doc_ids, texts = corpus_texts(dataset)
    d_emb = cached_encode(encoder, texts, "doc", cfg.cache_dir or None, cfg.batch_size)
    query_ids = list(dataset.queries)
    q_emb = encoder.encode([dataset.queries[q] for q in query_ids], kind="query", batch_size=cfg.batch_size,
                           show_progress=False)
    run = dense_search(q_emb, d_emb, query_ids, doc_ids, top_k=top_k)
    pool = {d for docs in run.values() for d in docs} | {d for docs in dataset.qrels.values() for d in docs}
    corpus = {d: dataset.corpus[d] for d in doc_ids if d in pool}
    return dataclasses.replace(dataset, corpus=corpus, split=split or f"{dataset.split}-pool{top_k}")


def evaluate_dense(encoder, dataset: BeirDataset, cfg: EvalConfig, show_progress: bool = True,
                   query_transform=None, use_cache: bool = True, index: IndexConfig | None = None) -> DenseEvalResult:
    """Metrics of `encoder` on `dataset`; `query_transform` maps query embeddings (e.g. an adapter).

    `use_cache=False` for evaluations of weights that will never be seen again (mid-training dev).
    `index` picks the search backend (exact by default); an approximate one adds its `ann_recall@k`
    against exact search to the metrics.
    """
    doc_ids, texts = corpus_texts(dataset)
    start = time.perf_counter()
    if use_cache:
        d_emb = cached_encode(encoder, texts, "doc", cfg.cache_dir or None, cfg.batch_size, show_progress)
    else:
        d_emb = encoder.encode(texts, kind="doc", batch_size=cfg.batch_size, show_progress=show_progress)
    corpus_seconds = time.perf_counter() - start
    query_ids = list(dataset.queries)
    start = time.perf_counter()
    q_emb = encoder.encode([dataset.queries[q] for q in query_ids], kind="query",
                           batch_size=cfg.batch_size, show_progress=False)
    if query_transform is not None:
        q_emb = query_transform(q_emb)
    run, info = index_search(q_emb, d_emb, query_ids, doc_ids, max(cfg.top_k, *cfg.k_values), index)
    query_seconds = time.perf_counter() - start
    metrics = evaluate(run, dataset.qrels, cfg.k_values)
    metrics.update({k: v for k, v in info.items() if k.startswith("ann_recall@")})
    return DenseEvalResult(metrics, run, corpus_seconds, query_seconds, info)

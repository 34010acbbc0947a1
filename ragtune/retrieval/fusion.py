"""Fusing ranked lists from several retrievers (e.g. BM25 + dense) into one run.

A run is {qid: {doc_id: score}}. The fused run holds every query that appears in
any input run, ranked by fused score, ties by doc id descending (the order
`ragtune.eval.metrics` evaluates in), cut to `top_k` when given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from ragtune.eval.metrics import rank_docs

Run = dict[str, dict[str, float]]


def _ranks(doc_scores: dict[str, float]) -> dict[str, int]:
    """1-based ranks by score descending; tied docs share the best rank of their group
    (1, 2, 2, 4), so a fused score never depends on how a run happened to order a tie."""
    ranks: dict[str, int] = {}
    prev, rank = None, 0
    for i, (doc, score) in enumerate(sorted(doc_scores.items(), key=lambda x: -x[1]), start=1):
        if score != prev:
            prev, rank = score, i
        ranks[doc] = rank
    return ranks


def _finish(fused: dict[str, dict[str, float]], top_k: int | None) -> Run:
    return {qid: {d: scores[d] for d in rank_docs(scores, top_k)} for qid, scores in fused.items()}


def _check_weights(runs: Sequence[Run], weights: Sequence[float] | None) -> list[float]:
    if weights is None:
        return [1.0] * len(runs)
    if len(weights) != len(runs):
        raise ValueError(f"{len(weights)} weights for {len(runs)} runs")
    return list(weights)


def rrf(runs: Sequence[Run], k: float = 60, weights: Sequence[float] | None = None, top_k: int | None = None) -> Run:
    """Reciprocal rank fusion (Cormack, Clarke & Buettcher, SIGIR 2009):

        RRF(d) = sum_i w_i / (k + rank_i(d))

    rank_i(d) is d's 1-based rank in run i (tied scores share the best rank); a doc
    missing from run i contributes 0 to the sum. w_i defaults to 1; k=60 is the paper's.
    Only ranks are used, so the runs' score scales do not matter.
    """
    weights = _check_weights(runs, weights)
    fused: dict[str, dict[str, float]] = {}
    for run, w in zip(runs, weights, strict=True):
        for qid, doc_scores in run.items():
            out = fused.setdefault(qid, {})
            for doc, rank in _ranks(doc_scores).items():
                out[doc] = out.get(doc, 0.0) + w / (k + rank)
    return _finish(fused, top_k)


def _normalize(doc_scores: dict[str, float], norm: str) -> dict[str, float]:
    values = list(doc_scores.values())
    if norm == "minmax":
        lo, hi = min(values), max(values)
        # A constant list is all "best": its docs should still beat ones it did not return.
        return {d: (s - lo) / (hi - lo) if hi > lo else 1.0 for d, s in doc_scores.items()}
    if norm == "zscore":
        mean = sum(values) / len(values)
        std = math.sqrt(sum((s - mean) ** 2 for s in values) / len(values))  # population std
        return {d: (s - mean) / std if std > 0 else 0.0 for d, s in doc_scores.items()}
    raise ValueError(f"unknown norm {norm!r}; choose minmax or zscore")


def weighted_score_fusion(
    runs: Sequence[Run],
    weights: Sequence[float],
    norm: Literal["minmax", "zscore"] = "minmax",
    top_k: int | None = None,
) -> Run:
    """Convex-combination (CombSUM-style) fusion of per-query normalized scores:

        S(d) = sum_i w_i * n_i(d)
        minmax: n_i(d) = (s_i(d) - min_i) / (max_i - min_i)    (1 when max_i == min_i)
        zscore: n_i(d) = (s_i(d) - mean_i) / std_i              (0 when std_i == 0)

    min/max/mean/std are over the docs run i returned for that query (population std).
    A doc missing from run i gets run i's lowest normalized score for the query
    (0 under minmax), so being missing is never better than being ranked last. A query
    absent from run i gets nothing from run i.
    """
    weights = _check_weights(runs, weights)
    qids = list(dict.fromkeys(qid for run in runs for qid in run))
    fused: dict[str, dict[str, float]] = {}
    for qid in qids:
        normed = [_normalize(run[qid], norm) if run.get(qid) else {} for run in runs]
        docs = dict.fromkeys(d for n in normed for d in n)
        out = fused[qid] = dict.fromkeys(docs, 0.0)
        for n, w in zip(normed, weights, strict=True):
            if not n:
                continue
            floor = min(n.values())
            for d in docs:
                out[d] += w * n.get(d, floor)
    return _finish(fused, top_k)

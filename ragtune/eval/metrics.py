"""IR metrics over a run {qid: {docid: score}} and qrels {qid: {docid: grade}}.

Conventions (the same as trec_eval / pytrec_eval, so numbers are comparable with BEIR):
- Ranking: score descending; ties broken by docid descending (string order), as trec_eval does.
- A document is relevant when its grade >= 1; unjudged documents are non-relevant.
- nDCG@k uses linear gain: DCG@k = sum_{i<=k} grade_i / log2(i + 1); the ideal ranking
  sorts all judged grades (> 0) of the query. Graded qrels (e.g. Cranfield 1..4) count fully.
- Recall@k = |relevant in top k| / |relevant|;  Precision@k = |relevant in top k| / k.
- MRR@k = 1 / rank of the first relevant document in the top k (0 if none).
- MAP@k = sum over relevant docs at rank i <= k of Precision@i, divided by |relevant|
  (trec_eval's map_cut_k).
- The mean is over the queries of the qrels that have at least one relevant document; a
  query missing from the run scores 0 (pytrec_eval would silently drop it).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]

METRICS = ("ndcg", "recall", "precision", "mrr", "map")


def rank_docs(doc_scores: dict[str, float], k: int | None = None) -> list[str]:
    """Doc ids by score descending, ties by docid descending (trec_eval order)."""
    ranked = sorted(doc_scores.items(), key=lambda item: (item[1], item[0]), reverse=True)
    return [doc_id for doc_id, _ in ranked[:k]]


def _query_metrics(ranked: list[str], judged: dict[str, int], k: int) -> dict[str, float]:
    relevant = {d for d, g in judged.items() if g >= 1}
    top = ranked[:k]
    hits = [d in relevant for d in top]
    dcg = sum(max(judged.get(d, 0), 0) / math.log2(i + 2) for i, d in enumerate(top))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    first_hit = next((i for i, h in enumerate(hits) if h), None)
    precision_sum, seen = 0.0, 0
    for i, hit in enumerate(hits):
        if hit:
            seen += 1
            precision_sum += seen / (i + 1)
    return {
        "ndcg": dcg / idcg if idcg > 0 else 0.0,
        "recall": sum(hits) / len(relevant),
        "precision": sum(hits) / k,
        "mrr": 1.0 / (first_hit + 1) if first_hit is not None else 0.0,
        "map": precision_sum / len(relevant),
    }


def per_query(run: Run, qrels: Qrels, k_values=(1, 10, 100), metrics=METRICS) -> dict[str, dict[str, float]]:
    """{qid: {'ndcg@10': ..., ...}} for every qrels query with a relevant document."""
    out = {}
    max_k = max(k_values)
    for qid, judged in qrels.items():
        if not any(g >= 1 for g in judged.values()):
            continue
        ranked = rank_docs(run.get(qid, {}), max_k)
        row = {}
        for k in k_values:
            values = _query_metrics(ranked, judged, k)
            row.update({f"{m}@{k}": values[m] for m in metrics})
        out[qid] = row
    return out


def evaluate(run: Run, qrels: Qrels, k_values=(1, 10, 100), metrics=METRICS) -> dict[str, float]:
    """Mean of each metric@k over the qrels queries; keys like 'ndcg@10'."""
    rows = per_query(run, qrels, k_values, metrics)
    if not rows:
        raise ValueError("qrels hold no query with a relevant document (grade >= 1)")
    keys = next(iter(rows.values())).keys()
    means = {key: sum(r[key] for r in rows.values()) / len(rows) for key in keys}
    for calls in _recorders:
        calls.append(Evaluated(run, qrels, rows, means))
    return means


class Evaluated:
    """One `evaluate` call: the run, the qrels, its per-query metrics and their means."""

    def __init__(self, run: Run, qrels: Qrels, rows: dict[str, dict[str, float]], means: dict[str, float]):
        self.run, self.qrels, self.rows, self.means = run, qrels, rows, means

    def subset(self, qids) -> Evaluated:
        """The same evaluation restricted to `qids` (per-query metrics do not depend on other queries)."""
        keep = set(qids) & set(self.rows)
        rows = {q: r for q, r in self.rows.items() if q in keep}
        keys = next(iter(self.rows.values())).keys()
        means = {k: sum(r[k] for r in rows.values()) / len(rows) for k in keys} if rows else {}
        return Evaluated({q: d for q, d in self.run.items() if q in keep},
                         {q: j for q, j in self.qrels.items() if q in keep}, rows, means)


_recorders: list[list[Evaluated]] = []


@contextmanager
def recording() -> Iterator[list[Evaluated]]:
    """Every `evaluate` call made inside the block, in order: how a run keeps the per-query metrics
    of a task's evaluation without the task having to return them."""
    calls: list[Evaluated] = []
    _recorders.append(calls)
    try:
        yield calls
    finally:
        _recorders.remove(calls)


def evaluation_of(calls: list[Evaluated], metrics: dict[str, float]) -> Evaluated | None:
    """The last recorded call whose means are `metrics` (a task may evaluate dev before its answer)."""
    for call in reversed(calls):
        shared = set(call.means) & set(metrics)
        if shared and all(call.means[k] == metrics[k] for k in shared):
            return call
    return None

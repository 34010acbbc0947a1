"""Retrieve N -> rerank -> top K, an optional cascade, and reranker training groups.

A scorer is any `score(queries: list[str], docs: list[str]) -> (P,) array` (higher = more
relevant): a `CrossEncoder`, the query-likelihood LLM, or a test stub. Reranking runs query by
query, so the time of each query is its latency as a service would see it (one query, its N
candidates, in batches of `batch_size`); throughput is total pairs / total scoring time.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ragtune.eval.metrics import Qrels, Run, evaluate, rank_docs
from ragtune.retrieval.fusion import weighted_score_fusion

Scorer = Callable[[list[str], list[str]], np.ndarray]


@dataclass
class RerankStats:
    pairs: int = 0  # pairs actually scored (cache hits excluded)
    cached_pairs: int = 0
    seconds: float = 0.0  # scoring time, summed over queries
    query_latencies: list[float] = field(default_factory=list)  # seconds per query

    def summary(self, prefix: str = "rerank") -> dict[str, float]:
        lat = np.asarray(self.query_latencies or [0.0]) * 1000
        return {f"{prefix}_pairs": self.pairs, f"{prefix}_cached_pairs": self.cached_pairs,
                f"{prefix}_seconds": self.seconds,
                f"{prefix}_pairs_per_s": self.pairs / self.seconds if self.seconds else 0.0,
                f"{prefix}_latency_ms_mean": float(lat.mean()),
                f"{prefix}_latency_ms_p50": float(np.percentile(lat, 50)),
                f"{prefix}_latency_ms_p95": float(np.percentile(lat, 95))}


def rerank_run(score: Scorer, run: Run, queries: dict[str, str], doc_texts: dict[str, str],
               retrieve_n: int, final_k: int, cache: dict[tuple[str, str], float] | None = None,
               show_progress: bool = True, desc: str = "rerank") -> tuple[Run, RerankStats]:
    """Rerank the top `retrieve_n` of each query of `run` and keep the top `final_k`.

    `cache` maps (qid, doc_id) -> score for this scorer; hits are not rescored (two first
    stages share most candidates), new scores are added to it. Queries absent from `queries`
    are skipped; the result holds the reranker's scores only.
    """
    if final_k > retrieve_n:
        raise ValueError(f"final_k={final_k} > retrieve_n={retrieve_n}: cannot keep more than were reranked")
    cache = {} if cache is None else cache
    stats, out = RerankStats(), {}
    for qid in tqdm([q for q in run if q in queries], desc=desc, disable=not show_progress, unit="q"):
        candidates = rank_docs(run[qid], retrieve_n)
        todo = [d for d in candidates if (qid, d) not in cache]
        start = time.perf_counter()
        if todo:
            scores = score([queries[qid]] * len(todo), [doc_texts[d] for d in todo])
            cache.update({(qid, d): float(s) for d, s in zip(todo, scores, strict=True)})
        elapsed = time.perf_counter() - start
        if todo:  # latency of a query served from cache is not a reranker latency
            stats.query_latencies.append(elapsed)
            stats.seconds += elapsed
        stats.pairs += len(todo)
        stats.cached_pairs += len(candidates) - len(todo)
        reranked = {d: cache[(qid, d)] for d in candidates}
        out[qid] = {d: reranked[d] for d in rank_docs(reranked, final_k)}
    return out, stats


def interpolate(reranked: Run, first_stage: Run, weight: float) -> Run:
    """Per query, over the reranked docs: S(d) = (1 - w) z(reranker)(d) + w z(first stage)(d),
    z = z-score over those docs (their scales differ). w = 0 is the reranker alone; a weak
    reranker often still adds to the first stage rather than replacing it."""
    if weight == 0:
        return reranked
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"interpolation weight must be in [0, 1], got {weight}")
    first = {q: {d: first_stage[q][d] for d in docs} for q, docs in reranked.items()}
    return weighted_score_fusion([reranked, first], [1.0 - weight, weight], norm="zscore")


def choose_interpolation(reranked: Run, first_stage: Run, qrels: Qrels, grid: Sequence[float],
                         metric: str = "ndcg@10") -> tuple[float, dict[float, float]]:
    """The weight w of `interpolate` that maximises `metric` (e.g. 'ndcg@10') on held-out queries.

    Use queries that neither the reranker nor the first stage trained on (e.g. the dev hold-out
    both tasks draw with the same seed). Returns (w, {w: metric}); ties keep the smallest w, so
    a reranker that adds nothing on dev yields to its first stage only when that strictly wins.
    """
    if not grid:
        raise ValueError("an empty interpolation grid")
    k = metric.partition("@")[2]
    if not k.isdigit():
        raise ValueError(f"metric {metric!r} must look like 'ndcg@10'")
    scores = {w: evaluate(interpolate(reranked, first_stage, w), qrels, (int(k),))[metric] for w in sorted(grid)}
    best = max(scores.values())
    return min(w for w, v in scores.items() if v == best), scores


def load_score_cache(path: str | Path) -> dict[tuple[str, str], float]:
    """{(qid, doc_id): score} saved by save_score_cache ({} when absent). Key the file name on
    the scorer's weights and settings: the cache itself cannot tell two scorers apart."""
    path = Path(path)
    if not path.is_file():
        return {}
    return {tuple(k.split("\t", 1)): v for k, v in json.loads(path.read_text()).items()}


def save_score_cache(path: str | Path, cache: dict[tuple[str, str], float]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({f"{q}\t{d}": s for (q, d), s in cache.items()}))
    os.replace(tmp, path)  # never a half-written cache


def cascade(stages: Sequence[tuple[Scorer, int]], run: Run, queries: dict[str, str], doc_texts: dict[str, str],
            retrieve_n: int, show_progress: bool = True) -> tuple[Run, list[RerankStats]]:
    """Rerank with each (scorer, keep) in turn: cheap N -> M, then strong M -> K, ...

    Stage i reranks what stage i-1 kept (the first stage reranks the top `retrieve_n` of run).
    """
    stats, n = [], retrieve_n
    for i, (scorer, keep) in enumerate(stages):
        run, s = rerank_run(scorer, run, queries, doc_texts, n, keep, show_progress=show_progress,
                            desc=f"cascade stage {i + 1}")
        stats.append(s)
        n = keep
    return run, stats


def training_groups(run: Run, qrels: Qrels, doc_ids: list[str], group_size: int, hard_fraction: float,
                    hard_depth: int, seed: int = 0) -> list[tuple[str, str, list[str]]]:
    """(qid, pos_id, [neg_1..neg_k]) per relevant (query, doc) pair, k = group_size - 1.

    round(hard_fraction * k) negatives are sampled from the first stage's top `hard_depth`
    (judged-relevant docs removed), the rest uniformly from the corpus: pure hard negatives
    hurt rerankers (unjudged positives among them, no easy contrast; Gao et al. 2021, LCE).
    When a query has too few hard candidates, random ones fill the group.
    """
    if group_size < 2:
        raise ValueError(f"group_size={group_size}: a group needs a positive and at least one negative")
    if not 0.0 <= hard_fraction <= 1.0:
        raise ValueError(f"hard_fraction={hard_fraction} must be in [0, 1]")
    rng = random.Random(seed)
    k = group_size - 1
    if len(doc_ids) < group_size + max((len(r) for r in qrels.values()), default=0):
        raise ValueError(f"corpus of {len(doc_ids)} docs is too small for groups of {group_size}")
    groups = []
    for qid in sorted(qrels):
        relevant = {d for d, g in qrels[qid].items() if g >= 1}
        hard_pool = [d for d in rank_docs(run.get(qid, {}), hard_depth) if d not in relevant]
        for pos in sorted(relevant):
            negs = rng.sample(hard_pool, min(round(hard_fraction * k), len(hard_pool)))
            while len(negs) < k:  # random negatives; rejection keeps them distinct and non-relevant
                d = doc_ids[rng.randrange(len(doc_ids))]
                if d not in relevant and d not in negs:
                    negs.append(d)
            groups.append((qid, pos, negs))
    return groups


class EpochGroups:
    """A dataset of training groups that draws fresh negatives every epoch.

    `make_groups(seed)` builds the groups (e.g. `training_groups` with everything but the seed
    bound); epoch e uses seed + e, so a run (or a resumed run) sees the same negatives in the
    same epoch. The number of groups (one per relevant pair) does not depend on the seed, so
    the epoch length is fixed. The training loop calls `set_epoch` through accelerate's loader.
    """

    def __init__(self, make_groups: Callable[[int], list], seed: int, resample: bool = True):
        self.make_groups, self.seed, self.resample = make_groups, seed, resample
        self.epoch, self.groups = 0, make_groups(seed)

    def set_epoch(self, epoch: int) -> None:
        if self.resample and epoch != self.epoch:
            self.epoch, self.groups = epoch, self.make_groups(self.seed + epoch)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int):
        return self.groups[i]


def teacher_records(score: Scorer, groups: list[tuple[str, str, list[str]]], queries: dict[str, str],
                    doc_texts: dict[str, str]) -> list[dict]:
    """Distillation records: each group with the scorer's scores of [pos, neg_1..neg_k] as
    `teacher_scores` (the JSONL layout of ragtune/data/pairs.py). All pairs go to the scorer in
    one call, so a length-sorting scorer batches them well."""
    pairs = [(qid, d) for qid, pos, negs in groups for d in [pos, *negs]]
    scores = score([queries[q] for q, _ in pairs], [doc_texts[d] for _, d in pairs])
    records, i = [], 0
    for qid, pos, negs in groups:
        g = 1 + len(negs)
        records.append({"qid": qid, "query": queries[qid], "pos_id": pos, "pos": doc_texts[pos],
                        "neg_ids": negs, "negs": [doc_texts[d] for d in negs],
                        "teacher_scores": [float(s) for s in scores[i:i + g]]})
        i += g
    return records

"""Training records: one (query, positive, negatives) per line of a JSONL file, or from qrels.

A line looks like
    {"query": "...", "pos": "...", "negs": ["...", ...]}
with optional ids and scores, as written by experiments/mine.py:
    {"qid", "pos_id", "neg_ids": [...], "neg_scores": [...], "teacher_scores": [s_pos, s_neg1, ...]}
`teacher_scores` (a reranker's scores of [pos, negs...]) enable the distillation losses.
"""

from __future__ import annotations

import difflib
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ragtune.data.beir import BeirDataset, DataError, read_jsonl


@dataclass(frozen=True)
class TrainRecord:
    query: str
    pos: str
    negs: tuple[str, ...] = ()
    qid: str = ""
    pos_id: str = ""
    neg_ids: tuple[str, ...] = ()
    teacher_scores: tuple[float, ...] = ()  # [pos, negs...] from a teacher model, same order as negs


_FIELDS = {"query", "pos", "negs", "qid", "pos_id", "neg_ids", "neg_scores", "teacher_scores"}


def load_records(path: str | Path) -> list[TrainRecord]:
    """Read a pairs/triplets JSONL file; every problem is reported with file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"training file not found: {path} (data.train_file); write one with experiments/mine.py")
    records = []
    for line_no, row in read_jsonl(path, ("query", "pos")):
        unknown = sorted(set(row) - _FIELDS)
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(_FIELDS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise DataError(f"{path}:{line_no}: unknown field '{unknown[0]}'{hint}; known: {sorted(_FIELDS)}")
        negs = tuple(row.get("negs", ()))
        teacher = tuple(float(s) for s in row.get("teacher_scores", ()))
        if teacher and len(teacher) != 1 + len(negs):
            raise DataError(f"{path}:{line_no}: teacher_scores needs 1 + len(negs) = {1 + len(negs)} "
                            f"values, got {len(teacher)}")
        records.append(TrainRecord(query=row["query"], pos=row["pos"], negs=negs, qid=str(row.get("qid", "")),
                                   pos_id=str(row.get("pos_id", "")), neg_ids=tuple(row.get("neg_ids", ())),
                                   teacher_scores=teacher))
    if not records:
        raise DataError(f"{path}: no training records")
    return records


def records_from_qrels(dataset: BeirDataset, min_grade: int = 1) -> list[TrainRecord]:
    """One record per relevant (query, doc) pair of the split, no negatives."""
    return [
        TrainRecord(query=dataset.queries[qid], pos=dataset.corpus[doc_id].full_text(), qid=qid, pos_id=doc_id)
        for qid, docs in dataset.qrels.items()
        for doc_id, grade in docs.items()
        if grade >= min_grade
    ]


@dataclass(frozen=True)
class DevSplit:
    train_qids: frozenset[str]
    dev_qids: frozenset[str] = field(default_factory=frozenset)


def split_queries(qids: list[str], dev_fraction: float, seed: int) -> DevSplit:
    """Hold out a seeded fraction of training queries for checkpoint selection (never test)."""
    ordered = sorted(set(qids))
    random.Random(seed).shuffle(ordered)
    n_dev = round(len(ordered) * dev_fraction)
    return DevSplit(train_qids=frozenset(ordered[n_dev:]), dev_qids=frozenset(ordered[:n_dev]))


def seeded_holdout(items: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(kept, held out): a seeded `fraction` of `items` (at least one when fraction > 0), input order kept."""
    if not 0 <= fraction < 1:
        raise ValueError(f"a held-out fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return list(items), []
    order = np.random.default_rng(seed).permutation(len(items))
    n_held = max(1, round(fraction * len(items)))
    return [items[i] for i in sorted(order[n_held:])], [items[i] for i in sorted(order[:n_held])]


def split_by_positive_doc(query_ids: list[str], qrels: dict[str, dict[str, int]], dev_fraction: float,
                          seed: int) -> tuple[list[str], list[str]]:
    """(train, dev) query ids: dev = the queries of a seeded fraction of the positive documents.

    For a train file of synthetic pairs (several queries per source document) a per-query split
    would put a document's other queries in train, and dev would reward memorising those documents.
    """
    _, dev_docs = seeded_holdout(sorted({d for q in query_ids for d in qrels[q]}), dev_fraction, seed)
    dev_docs = set(dev_docs)
    return ([q for q in query_ids if not dev_docs & set(qrels[q])],
            [q for q in query_ids if dev_docs & set(qrels[q])])


def queries_from_records(records: list[TrainRecord], corpus_ids, path: str
                         ) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Train-file records -> (queries, qrels) standing in for a split's (e.g. synthetic pairs).

    `corpus_ids` is anything supporting `in` over the corpus doc ids (a dict or a set).
    """
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for n, r in enumerate(records, 1):
        if not r.qid or r.pos_id not in corpus_ids:
            raise DataError(f"{path}: record {n} needs a qid and a pos_id from the corpus (got qid={r.qid!r}, "
                            f"pos_id={r.pos_id!r}): training on it needs the positive's corpus id")
        queries[r.qid] = r.query
        qrels.setdefault(r.qid, {})[r.pos_id] = 1
    return queries, qrels

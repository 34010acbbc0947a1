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

"""Training records: one (query, positive, negatives) per line of a JSONL file, or from qrels.

A line looks like
    {"query": "...", "pos": "...", "negs": ["...", ...]}
with optional ids and scores, as written by `ragtune mine` (ragtune/retrieval/mine_file.py):
    {"qid", "pos_id", "neg_ids": [...], "neg_scores": [...], "teacher_scores": [s_pos, s_neg1, ...]}
`teacher_scores` (a reranker's scores of [pos, negs...]) enable the distillation losses.
"""

from __future__ import annotations

import difflib
import json
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
    # 1-based line in the file the record came from (0: not from a file), so later checks can
    # point at the row; not part of equality, so records compare by content.
    line: int = field(default=0, compare=False)


_FIELDS = {"query", "pos", "negs", "qid", "pos_id", "neg_ids", "neg_scores", "teacher_scores"}
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "list", dict: "object"}


def _found(value) -> str:
    """A bad value as the file spells it, e.g. `string "a string"`, so the user can find the row."""
    if value is None:
        return "null"
    shown = json.dumps(value, ensure_ascii=False)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"{_JSON_TYPES.get(type(value), type(value).__name__)} {shown}"


def _is_id(value) -> bool:
    """Ids may be JSON strings or integers (BEIR ids often look numeric); both become str."""
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_str(value) -> bool:
    return isinstance(value, str)


def _is_text(value) -> bool:
    """query and pos: an empty one would train the model toward (or from) nothing."""
    return isinstance(value, str) and bool(value.strip())


# field -> (element test or scalar test, expected type in words, is a list)
_TYPES = {
    "query": (_is_text, "a non-empty string", False),
    "pos": (_is_text, "a non-empty string", False),
    "qid": (_is_id, "a string or integer", False),
    "pos_id": (_is_id, "a string or integer", False),
    "negs": (_is_str, "a list of strings", True),
    "neg_ids": (_is_id, "a list of strings or integers", True),
    "neg_scores": (_is_number, "a list of numbers", True),
    "teacher_scores": (_is_number, "a list of numbers", True),
}


def _check_type(path: Path, line_no: int, name: str, value) -> None:
    """One field against _TYPES. Without it a string `negs` would be iterated into one-character
    negatives and train silently on garbage."""
    test, expected, is_list = _TYPES[name]
    if not is_list:
        if not test(value):
            raise DataError(f"{path}:{line_no}: field '{name}' must be {expected}, got {_found(value)}")
        return
    if not isinstance(value, list):
        raise DataError(f"{path}:{line_no}: field '{name}' must be {expected}, got {_found(value)}")
    for i, item in enumerate(value):
        if not test(item):
            raise DataError(f"{path}:{line_no}: field '{name}' must be {expected}, got {_found(item)} "
                            f"at index {i}")


def _check_lengths(path: Path, line_no: int, row: dict) -> None:
    """Per-negative fields must line up with `negs`; a shorter list would pair ids or scores with
    the wrong negative."""
    n = len(row.get("negs", ()))
    for name in ("neg_ids", "neg_scores"):
        if name in row and len(row[name]) != n:
            raise DataError(f"{path}:{line_no}: {name} needs len(negs) = {n} values, got {len(row[name])}")
    teacher = row.get("teacher_scores")
    if teacher and len(teacher) != 1 + n:
        raise DataError(f"{path}:{line_no}: teacher_scores needs 1 + len(negs) = {1 + n} values, got {len(teacher)}")


def _check_row(path: Path, line_no: int, row: dict) -> None:
    """Unknown keys first (a typo such as `neg` would otherwise drop the negatives), then types, then lengths."""
    unknown = sorted(set(row) - _FIELDS)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(_FIELDS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise DataError(f"{path}:{line_no}: unknown field '{unknown[0]}'{hint}; known: {sorted(_FIELDS)}")
    for name, value in row.items():
        _check_type(path, line_no, name, value)
    _check_lengths(path, line_no, row)


def _record(row: dict, line_no: int) -> TrainRecord:
    return TrainRecord(query=row["query"], pos=row["pos"], negs=tuple(row.get("negs", ())),
                       qid=str(row.get("qid", "")), pos_id=str(row.get("pos_id", "")),
                       neg_ids=tuple(str(i) for i in row.get("neg_ids", ())),
                       teacher_scores=tuple(float(s) for s in row.get("teacher_scores", ())), line=line_no)


def load_records(path: str | Path) -> list[TrainRecord]:
    """Read a pairs/triplets JSONL file; every problem is reported with file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"training file not found: {path} (data.train_file); write one with `ragtune mine`")
    records = []
    for line_no, row in read_jsonl(path, ("query", "pos")):
        _check_row(path, line_no, row)
        records.append(_record(row, line_no))
    if not records:
        raise DataError(f"{path}: no training records")
    return records


def check_negatives(records: list[TrainRecord], num_negatives: int, source: str) -> None:
    """Fail before training when negatives are asked for (num_negatives > 0) but some record has none.

    Without this check the run starts, and the group collator fails at the first batch holding such
    a record, possibly well into training. `source` names where the records came from (the train
    file, or e.g. 'qrels of scifact/train'), for the message.
    """
    if num_negatives <= 0:
        return
    lacking = [(n, r) for n, r in enumerate(records, 1) if not r.negs]
    if not lacking:
        return
    n, first = lacking[0]
    where = f"line {first.line}" if first.line else f"record {n}"
    qid = f" (qid '{first.qid}')" if first.qid else ""
    raise DataError(f"{source}: {len(lacking)} of {len(records)} record(s) have no negatives but "
                    f"data.num_negatives={num_negatives}; first: {where}{qid}. Add 'negs' (`ragtune mine` "
                    f"writes them) or set data.num_negatives=0")


def records_from_qrels(dataset: BeirDataset, min_grade: int = 1) -> list[TrainRecord]:
    """One record per relevant (query, doc) pair of the split, no negatives; a relevant document with
    neither title nor text (Cranfield has two) gives no record: an empty positive teaches nothing."""
    return [
        TrainRecord(query=dataset.queries[qid], pos=dataset.corpus[doc_id].full_text(), qid=qid, pos_id=doc_id)
        for qid, docs in dataset.qrels.items()
        for doc_id, grade in docs.items()
        if grade >= min_grade and dataset.corpus[doc_id].full_text()
    ]


@dataclass(frozen=True)
class DevSplit:
    train_qids: frozenset[str]
    dev_qids: frozenset[str] = field(default_factory=frozenset)


def seeded_holdout(items: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(kept, held out), input order kept: THE dev hold-out of every task (queries, or source documents).

    The distinct items, sorted, are shuffled with `seed` and the first round(fraction x n) (at least
    one when fraction > 0) are held out: the same set of ids and seed give the same dev set in
    every task, whatever order the ids come in."""
    if not 0 <= fraction < 1:
        raise ValueError(f"a held-out fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return list(items), []
    order = sorted(set(items))
    random.Random(seed).shuffle(order)
    held = set(order[:max(1, round(len(order) * fraction))])
    return [x for x in items if x not in held], [x for x in items if x in held]


def split_queries(qids: list[str], dev_fraction: float, seed: int) -> DevSplit:
    """`seeded_holdout` of the training queries as sets: dev selects checkpoints, test is never seen."""
    kept, held = seeded_holdout(list(qids), dev_fraction, seed)
    return DevSplit(train_qids=frozenset(kept), dev_qids=frozenset(held))


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

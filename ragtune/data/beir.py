"""BEIR-format datasets: corpus.jsonl, queries.jsonl, qrels/<split>.tsv under a data root.

Layout (https://github.com/beir-cellar/beir):
    <root>/<name>/corpus.jsonl     {"_id", "title", "text", ...} one per line
    <root>/<name>/queries.jsonl    {"_id", "text", ...} one per line
    <root>/<name>/qrels/<split>.tsv  header, then "query-id<TAB>corpus-id<TAB>score"

Every problem in the files is reported with the file and the line number, so a
user fixing a hand-made dataset is pointed at the exact row.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DATA_ENV = "RAGTUNE_DATA"
BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"


class DataError(ValueError):
    """Bad or missing dataset; the message names the file, line and what to do."""


@dataclass(frozen=True)
class Doc:
    title: str
    text: str

    def full_text(self) -> str:
        """Title and text joined the way BEIR's dense baselines embed them."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


@dataclass(frozen=True)
class BeirDataset:
    name: str
    split: str
    corpus: dict[str, Doc]
    queries: dict[str, str]  # only the queries that have qrels in this split
    qrels: dict[str, dict[str, int]]


def resolve_data_root(data_root: str | None = None) -> Path:
    """The explicit argument, else $RAGTUNE_DATA, else ../shared/data next to the repo."""
    if data_root:
        return Path(data_root).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def dataset_dir(name: str, data_root: str | None = None) -> Path:
    """The folder of dataset `name`; a clear error when it is missing."""
    root = resolve_data_root(data_root)
    path = root / name
    if not (path / "corpus.jsonl").is_file():
        available = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise DataError(
            f"dataset '{name}' not found: looked for {path / 'corpus.jsonl'} "
            f"(data root from {'argument/config' if data_root else DATA_ENV + ' or default'}: {root}).\n"
            f"  available here: {available or 'none'}\n"
            f"  to get it: set {DATA_ENV} (or data.data_root) to a folder holding BEIR datasets, or run\n"
            f"  `python -m ragtune.data.download {name} --root {root}` on a machine with internet "
            f"(fetches {BEIR_URL.format(name=name)})."
        )
    return path


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) per line, decoded as UTF-8 one line at a time.

    Reading bytes and decoding each line (rather than opening in text mode) is what lets a bad
    byte be reported as file:line:column instead of a bare UnicodeDecodeError; per-line decoding
    costs about the same as text mode. Line ends are kept, as in text mode.
    """
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                yield line_no, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{line_no}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column "
                                f"{e.start + 1}); re-save the file as UTF-8") from None


def read_jsonl(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict]]:
    """(line number, object) per non-empty line; malformed lines and missing fields name file:line."""
    rows = []
    for line_no, line in read_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{line_no}: malformed JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
        missing = [k for k in required if k not in row]
        if missing:
            raise DataError(f"{path}:{line_no}: missing field(s) {missing}; have {sorted(row)}")
        rows.append((line_no, row))
    return rows


def _check_unique(path: Path, rows: list[tuple[int, dict]]) -> None:
    first_seen: dict[str, int] = {}
    for line_no, row in rows:
        _id = str(row["_id"])
        if _id in first_seen:
            raise DataError(f"{path}:{line_no}: duplicate _id '{_id}' (first at line {first_seen[_id]})")
        first_seen[_id] = line_no


def load_corpus(path: Path) -> dict[str, Doc]:
    rows = read_jsonl(path, ("_id", "text"))
    _check_unique(path, rows)
    corpus = {str(r["_id"]): Doc(title=r.get("title") or "", text=r["text"] or "") for _, r in rows}
    empty = [i for i, d in corpus.items() if not (d.title.strip() or d.text.strip())]
    if empty:
        warnings.warn(f"{path}: {len(empty)} document(s) with empty title and text, e.g. {empty[:5]}", stacklevel=2)
    return corpus


def load_queries(path: Path) -> dict[str, str]:
    rows = read_jsonl(path, ("_id", "text"))
    _check_unique(path, rows)
    queries = {str(r["_id"]): r["text"] or "" for _, r in rows}
    empty = [i for i, t in queries.items() if not t.strip()]
    if empty:
        warnings.warn(f"{path}: {len(empty)} empty query text(s), e.g. {empty[:5]}", stacklevel=2)
    return queries


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    if not path.is_file():
        splits = sorted(p.stem for p in path.parent.glob("*.tsv"))
        raise DataError(f"qrels file not found: {path}; available splits: {splits or 'none'}")
    qrels: dict[str, dict[str, int]] = {}
    for line_no, line in read_lines(path):
        parts = line.rstrip("\r\n").split("\t")
        if line_no == 1 and parts[0] in ("query-id", "query_id", "qid"):
            continue  # header
        if not line.strip():
            continue
        if len(parts) != 3:
            raise DataError(f"{path}:{line_no}: expected 3 tab-separated columns, got {len(parts)}: {line!r}")
        qid, docid, score = parts
        try:
            qrels.setdefault(qid, {})[docid] = int(score)
        except ValueError:
            raise DataError(f"{path}:{line_no}: score must be an integer, got {score!r}") from None
    return qrels


def _check_qrels_ids(path: Path, qrels, queries, corpus) -> None:
    bad_q = [q for q in qrels if q not in queries]
    bad_d = sorted({d for docs in qrels.values() for d in docs if d not in corpus})
    if bad_q:
        raise DataError(f"{path}: {len(bad_q)} query id(s) not in queries.jsonl, first: {bad_q[:5]}")
    if bad_d:
        raise DataError(f"{path}: {len(bad_d)} doc id(s) not in corpus.jsonl, first: {bad_d[:5]}")


NO_LABELS = "none"  # data.train_split for a collection trained without labels: the corpus alone is read


def load_corpus_only(name: str, data_root: str | None = None) -> BeirDataset:
    """The corpus with no queries and no qrels: all a no-label pipeline (synthetic queries) may read."""
    corpus = load_corpus(dataset_dir(name, data_root) / "corpus.jsonl")
    return BeirDataset(name=name, split=NO_LABELS, corpus=corpus, queries={}, qrels={})


def load_beir(name: str, split: str, data_root: str | None = None) -> BeirDataset:
    """Load and validate one split of a BEIR dataset; queries are limited to those with qrels."""
    root = dataset_dir(name, data_root)
    corpus = load_corpus(root / "corpus.jsonl")
    all_queries = load_queries(root / "queries.jsonl")
    qrels_path = root / "qrels" / f"{split}.tsv"
    qrels = load_qrels(qrels_path)
    _check_qrels_ids(qrels_path, qrels, all_queries, corpus)
    queries = {q: all_queries[q] for q in qrels}
    return BeirDataset(name=name, split=split, corpus=corpus, queries=queries, qrels=qrels)

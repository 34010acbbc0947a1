"""Per-query metrics and TREC run files written with a run, so any two runs compare after the fact.

<output_dir>/per_query/<stage>-<split>.jsonl: one {"qid": ..., "ndcg@10": ...} line per query;
<output_dir>/trec/<stage>-<split>.trec: the ranked run (`qid Q0 docid rank score tag`).
"""

from __future__ import annotations

import json
from pathlib import Path

from ragtune.eval.metrics import Evaluated
from ragtune.retrieval.dense import write_trec_run


def per_query_path(run_dir: str | Path, stage: str, split: str) -> Path:
    return Path(run_dir) / "per_query" / f"{stage}-{split}.jsonl"


def save_evaluation(run_dir: str | Path, stage: str, split: str, evaluated: Evaluated) -> None:
    path = per_query_path(run_dir, stage, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"qid": q, **row}) + "\n" for q, row in sorted(evaluated.rows.items())))
    trec = Path(run_dir) / "trec" / f"{stage}-{split}.trec"
    trec.parent.mkdir(parents=True, exist_ok=True)
    write_trec_run(evaluated.run, trec, tag=f"{stage}-{split}")


def load_per_query(run_dir: str | Path, stage: str, split: str) -> dict[str, dict[str, float]]:
    path = per_query_path(run_dir, stage, split)
    if not path.is_file():
        raise FileNotFoundError(f"no per-query metrics at {path} (runs written before per-query saving have none)")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {row.pop("qid"): row for row in rows}

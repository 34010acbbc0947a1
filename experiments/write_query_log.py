"""Write a split's query texts as an unlabelled query log, for `ragtune adapt --adapt.queries=log`.

    python -m experiments.write_query_log --dataset scifact --split train --out runs/logs/scifact_train.jsonl

A stand-in for a deployment's query log: the split's qrels only say which queries belong to it,
and no judgment is written (rows are {"query": text}, in sorted query-id order). Never pass the
split you evaluate on: that would train on the test queries.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ragtune.data.beir import load_beir
from ragtune.training.run_dir import atomic_write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--split", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    data = load_beir(args.dataset, args.split)
    rows = [json.dumps({"query": data.queries[q]}, ensure_ascii=False) + "\n" for q in sorted(data.qrels)]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.out), "".join(rows))
    print(f"wrote {len(rows)} queries of {args.dataset}/{args.split} to {args.out}")


if __name__ == "__main__":
    main()

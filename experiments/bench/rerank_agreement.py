"""How closely int8 rerank runs reproduce fp32's scores on the same candidate lists (a report, never a choice).

    python -m experiments.bench.rerank_agreement runs/backend/rrfull_torch runs/backend/rrfull_torch_int8 ...

Each folder is a `ragtune run --task=rerank_eval` output with `rerank.final_k` = `rerank.retrieve_n`, so
its trec/final-test.trec holds every candidate's score. Per pair: |score - fp32 score| (mean, 99th
percentile, max); per query: Kendall's tau between the two orders and the overlap of the top 10.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from ragtune.retrieval.dense import read_trec_run


def top10(scores: dict[str, float]) -> set[str]:
    return set(sorted(scores, key=scores.get, reverse=True)[:10])


def agreement(reference: dict[str, dict[str, float]], other: dict[str, dict[str, float]]) -> dict[str, float]:
    diffs, taus, overlaps = [], [], []
    for qid, scores in reference.items():
        docs = sorted(scores)
        if set(other.get(qid, {})) != set(docs):
            raise ValueError(f"query {qid}: the runs rerank different candidates (final_k below retrieve_n?)")
        a = np.array([scores[d] for d in docs])
        b = np.array([other[qid][d] for d in docs])
        diffs.append(np.abs(a - b))
        taus.append(kendalltau(a, b)[0])
        overlaps.append(len(top10(scores) & top10(other[qid])) / min(10, len(docs)))
    d = np.concatenate(diffs)
    return {"pairs": len(d), "mean_abs_diff": float(d.mean()), "p99_abs_diff": float(np.quantile(d, 0.99)),
            "max_abs_diff": float(d.max()), "kendall_tau": float(np.nanmean(taus)),
            "top10_overlap": float(np.mean(overlaps))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reference", help="the fp32 run folder")
    parser.add_argument("others", nargs="+", help="run folders to compare with it")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    reference = read_trec_run(Path(args.reference) / "trec" / f"final-{args.split}.trec")
    print(f"{'run':45s} {'pairs':>6s} {'mean|d|':>8s} {'p99|d|':>7s} {'max|d|':>7s} {'tau':>7s} {'top10':>6s}")
    for folder in args.others:
        a = agreement(reference, read_trec_run(Path(folder) / "trec" / f"final-{args.split}.trec"))
        print(f"{folder:45s} {a['pairs']:6d} {a['mean_abs_diff']:8.4f} {a['p99_abs_diff']:7.3f} "
              f"{a['max_abs_diff']:7.3f} {a['kendall_tau']:7.4f} {a['top10_overlap']:6.4f}")


if __name__ == "__main__":
    main()
